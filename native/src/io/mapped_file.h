// A read-only memory map of a whole file (the safetensors weights are used in place, never copied).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace tunekit {

// Tells the OS that a mapped range will not be read again (its pages leave the resident set and come
// back from the file if they ever are). Only whole pages inside the range are released.
void release_pages(const void* address, size_t bytes);

class MappedFile {
 public:
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
#ifdef _WIN32
  void* file_ = nullptr;
  void* mapping_ = nullptr;
#endif
};

}  // namespace tunekit
