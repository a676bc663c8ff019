#pragma once
// POSIX files with RAII and errors that name the path: TempFile (write, then atomically replace
// the target) and InputFile (positioned reads). Internal to the checkpoint code.
#include <cstddef>
#include <cstdint>
#include <string>

namespace syncbn::train {

// Closes the descriptor and removes the temporary file unless committed: no stray .tmp files.
class TempFile {
 public:
  explicit TempFile(std::string path);
  ~TempFile();
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  void write(const void* data, std::size_t bytes);
  // fsync, close and rename over `target`; then fsync the directory so the rename is durable.
  void commit(const std::string& target);

 private:
  std::string path_;
  int fd_ = -1;
  bool committed_ = false;
};

class InputFile {
 public:
  explicit InputFile(const std::string& path);
  ~InputFile();
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  uint64_t size() const { return size_; }
  // Reads exactly `bytes` at `offset`; a file that ends first is an error.
  void read_at(uint64_t offset, void* data, std::size_t bytes);

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

}  // namespace syncbn::train
