#include "chip/registers/mmio_bus.h"

#include <endian.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "util/unique_fd.h"

namespace tpmrmd::chip {
namespace {

std::string hex(std::uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

Result<std::unique_ptr<MmioBus>> MmioBus::open(std::uint64_t base, std::uint32_t size, const char* path) {
  const long page = ::sysconf(_SC_PAGESIZE);
  if (page <= 0 || base % static_cast<std::uint64_t>(page) != 0) {
    return make_error(EINVAL, "MMIO base " + hex(base) + " is not page-aligned");
  }
  if (size == 0) return make_error(EINVAL, "empty MMIO window");
  UniqueFd fd(::open(path, O_RDWR | O_SYNC | O_CLOEXEC));
  if (!fd) {
    const int e = errno;
    return make_error(e, std::string("open ") + path + ": " + std::strerror(e) +
                             (e == EACCES || e == EPERM ? " (needs root and CAP_SYS_RAWIO)" : ""));
  }
  void* map = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), static_cast<off_t>(base));
  if (map == MAP_FAILED) {
    const int e = errno;
    return make_error(e, "mmap " + std::string(path) + " at " + hex(base) + "+" + hex(size) + ": " +
                             std::strerror(e) + (e == EPERM ? " (is a kernel driver bound to the range?)" : ""));
  }
  return std::unique_ptr<MmioBus>(new MmioBus(base, size, static_cast<volatile std::uint8_t*>(map)));
}

MmioBus::~MmioBus() { ::munmap(const_cast<std::uint8_t*>(map_), size_); }

std::string MmioBus::description() const { return "MMIO " + hex(base_) + "+" + hex(size_); }
std::string MmioBus::identity() const { return "mmio:" + hex(base_); }

std::uint8_t MmioBus::read8(std::uint32_t offset) { return in_range(offset, 1) ? map_[offset] : 0xFF; }

std::uint32_t MmioBus::read32(std::uint32_t offset) {
  if (!in_range(offset, 4) || offset % 4) return 0xFFFFFFFF;
  return le32toh(*reinterpret_cast<volatile std::uint32_t*>(map_ + offset));  // one 32-bit load
}

void MmioBus::write8(std::uint32_t offset, std::uint8_t value) {
  if (in_range(offset, 1)) map_[offset] = value;
}

void MmioBus::write32(std::uint32_t offset, std::uint32_t value) {
  if (in_range(offset, 4) && offset % 4 == 0) *reinterpret_cast<volatile std::uint32_t*>(map_ + offset) = htole32(value);
}

}  // namespace tpmrmd::chip
