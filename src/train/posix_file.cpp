#include "train/posix_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "syncbn/error.h"

namespace syncbn::train {

namespace {

[[noreturn]] void fail_io(const std::string& path, const std::string& action) {
  SYNCBN_FAIL(path, ": cannot ", action, ": ", std::strerror(errno));
}

}  // namespace

TempFile::TempFile(std::string path) : path_(std::move(path)) {
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) fail_io(path_, "create the file");
}

TempFile::~TempFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(path_.c_str());
}

void TempFile::write(const void* data, std::size_t bytes) {
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t written = ::write(fd_, p, bytes);
    if (written < 0) {
      if (errno == EINTR) continue;
      fail_io(path_, "write");
    }
    p += written;
    bytes -= static_cast<std::size_t>(written);
  }
}

void TempFile::commit(const std::string& target) {
  if (::fsync(fd_) != 0) fail_io(path_, "fsync");
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail_io(path_, "close");
  if (::rename(path_.c_str(), target.c_str()) != 0) {
    SYNCBN_FAIL(target, ": cannot replace it with ", path_, ": ", std::strerror(errno));
  }
  committed_ = true;
  const std::size_t slash = target.find_last_of('/');
  const std::string directory = slash == std::string::npos ? "." : target.substr(0, slash + 1);
  const int dir_fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);  // best effort: some file systems do not support it on directories
    ::close(dir_fd);
  }
}

InputFile::InputFile(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) fail_io(path_, "open checkpoint");
  struct stat info;
  if (::fstat(fd_, &info) != 0) {
    const int error = errno;
    ::close(fd_);  // the destructor does not run for a constructor that throws
    errno = error;
    fail_io(path_, "stat");
  }
  size_ = static_cast<uint64_t>(info.st_size);
}

InputFile::~InputFile() { ::close(fd_); }

void InputFile::read_at(uint64_t offset, void* data, std::size_t bytes) {
  char* p = static_cast<char*>(data);
  while (bytes > 0) {
    const ssize_t got = ::pread(fd_, p, bytes, static_cast<off_t>(offset));
    if (got < 0) {
      if (errno == EINTR) continue;
      fail_io(path_, "read");
    }
    SYNCBN_CHECK(got > 0, path_, ": file ended while reading (truncated?)");
    p += got;
    offset += static_cast<uint64_t>(got);
    bytes -= static_cast<std::size_t>(got);
  }
}

}  // namespace syncbn::train
