#include "io/mapped_file.h"

#include <cstring>
#include <stdexcept>

#include "util/error.h"

#ifdef _WIN32
#include <windows.h>
#else
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cerrno>
#endif

namespace tunekit {

void release_pages(const void* address, size_t bytes) {
#ifdef _WIN32
  (void)address;
  (void)bytes;
#else
  const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (uintptr_t(address) + page - 1) / page * page;
  const uintptr_t end = (uintptr_t(address) + bytes) / page * page;
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
#endif
}

#ifdef _WIN32
MappedFile::MappedFile(const std::string& path) : path_(path) {
  file_ = CreateFileA(path.c_str(), GENERIC_READ, FILE_SHARE_READ, nullptr, OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, nullptr);
  if (file_ == INVALID_HANDLE_VALUE)
    throw Error(GetLastError() == ERROR_FILE_NOT_FOUND ? ErrorCode::FileNotFound : ErrorCode::ReadFailed, path + ": cannot open");
  LARGE_INTEGER size;
  GetFileSizeEx(file_, &size);
  size_ = size_t(size.QuadPart);
  if (size_ == 0) return;
  mapping_ = CreateFileMappingA(file_, nullptr, PAGE_READONLY, 0, 0, nullptr);
  if (!mapping_) throw Error(ErrorCode::ReadFailed, path + ": cannot map");
  data_ = static_cast<const uint8_t*>(MapViewOfFile(mapping_, FILE_MAP_READ, 0, 0, 0));
  if (!data_) throw Error(ErrorCode::ReadFailed, path + ": cannot map");
}

MappedFile::~MappedFile() {
  if (data_) UnmapViewOfFile(data_);
  if (mapping_) CloseHandle(mapping_);
  if (file_ && file_ != INVALID_HANDLE_VALUE) CloseHandle(file_);
}
#else
MappedFile::MappedFile(const std::string& path) : path_(path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    throw Error(errno == ENOENT ? ErrorCode::FileNotFound : ErrorCode::ReadFailed,
                path + ": cannot open (" + std::strerror(errno) + ")");
  struct stat info;
  if (fstat(fd, &info) != 0) {
    close(fd);
    throw Error(ErrorCode::ReadFailed, path + ": cannot stat (" + std::strerror(errno) + ")");
  }
  size_ = size_t(info.st_size);
  if (size_ > 0) {
    void* address = mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (address == MAP_FAILED) {
      close(fd);
      throw Error(ErrorCode::ReadFailed, path + ": cannot map (" + std::strerror(errno) + ")");
    }
    data_ = static_cast<const uint8_t*>(address);
  }
  close(fd);
}

MappedFile::~MappedFile() {
  if (data_) munmap(const_cast<uint8_t*>(data_), size_);
}
#endif

}  // namespace tunekit
