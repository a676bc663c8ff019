#pragma once
// The readers under fuzzing take a path. Each input goes into one anonymous in-memory file per
// process (memfd), truncated and rewritten for every input, and the reader opens it as
// /proc/self/fd/N: no disk I/O and nothing left behind.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace syncbn::fuzz {

class InputFile {
 public:
  InputFile() {
    fd_ = memfd_create("syncbn-fuzz-input", MFD_CLOEXEC);
    if (fd_ < 0) {
      std::perror("memfd_create");
      std::abort();
    }
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }

  // Replaces the file's contents with the input and returns the path to open.
  const std::string& hold(const uint8_t* data, std::size_t size) {
    if (ftruncate(fd_, 0) != 0) fail("ftruncate");
    std::size_t written = 0;
    while (written < size) {
      const ssize_t n = pwrite(fd_, data + written, size - written, static_cast<off_t>(written));
      if (n <= 0) fail("pwrite");
      written += static_cast<std::size_t>(n);
    }
    return path_;
  }

 private:
  [[noreturn]] static void fail(const char* call) {
    std::perror(call);
    std::abort();
  }

  int fd_ = -1;
  std::string path_;
};

}  // namespace syncbn::fuzz
