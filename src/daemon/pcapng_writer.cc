#include "daemon/pcapng_writer.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "rm/audit_log.h"

namespace tpmrmd::daemon {
namespace pcapng {
namespace {

void put_u16(Bytes& out, std::uint16_t v) {  // host order: the pcapng block fields
  const auto* p = reinterpret_cast<const std::uint8_t*>(&v);
  out.insert(out.end(), p, p + sizeof v);
}
void put_u32(Bytes& out, std::uint32_t v) {
  const auto* p = reinterpret_cast<const std::uint8_t*>(&v);
  out.insert(out.end(), p, p + sizeof v);
}
void put_be16(Bytes& out, std::uint16_t v) {  // network order: the packet headers
  out.push_back(static_cast<std::uint8_t>(v >> 8));
  out.push_back(static_cast<std::uint8_t>(v));
}
void put_be32(Bytes& out, std::uint32_t v) {
  put_be16(out, static_cast<std::uint16_t>(v >> 16));
  put_be16(out, static_cast<std::uint16_t>(v));
}
void set_be16(Bytes& out, std::size_t at, std::uint16_t v) {
  out[at] = static_cast<std::uint8_t>(v >> 8);
  out[at + 1] = static_cast<std::uint8_t>(v);
}

// A block: type, total length, body (padded to 32 bits), total length again.
Bytes block(std::uint32_t type, const Bytes& body) {
  const std::size_t padded = (body.size() + 3) & ~std::size_t{3};
  const auto total = static_cast<std::uint32_t>(12 + padded);
  Bytes out;
  out.reserve(total);
  put_u32(out, type);
  put_u32(out, total);
  out.insert(out.end(), body.begin(), body.end());
  out.resize(8 + padded, 0);
  put_u32(out, total);
  return out;
}

// The Internet checksum (RFC 1071) over `data`, folded into `sum` first.
std::uint16_t checksum(ByteSpan data, std::uint32_t sum = 0) {
  for (std::size_t i = 0; i + 1 < data.size(); i += 2) sum += static_cast<std::uint32_t>(data[i] << 8 | data[i + 1]);
  if (data.size() % 2) sum += static_cast<std::uint32_t>(data.back() << 8);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(~sum);
}

}  // namespace

Bytes section_header_block() {
  Bytes body;
  put_u32(body, kByteOrderMagic);
  put_u16(body, 1);  // major version
  put_u16(body, 0);  // minor version
  put_u32(body, 0xffffffff);  // section length: unspecified (-1, 64 bits)
  put_u32(body, 0xffffffff);
  return block(kSectionHeader, body);
}

Bytes interface_description_block(std::uint16_t linktype, std::uint32_t snaplen) {
  Bytes body;
  put_u16(body, linktype);
  put_u16(body, 0);  // reserved
  put_u32(body, snaplen);
  // No options: if_tsresol defaults to microseconds.
  return block(kInterfaceDescription, body);
}

Bytes enhanced_packet_block(std::uint32_t interface, std::uint64_t timestamp_us, ByteSpan packet) {
  Bytes body;
  body.reserve(20 + packet.size());
  put_u32(body, interface);
  put_u32(body, static_cast<std::uint32_t>(timestamp_us >> 32));
  put_u32(body, static_cast<std::uint32_t>(timestamp_us));
  put_u32(body, static_cast<std::uint32_t>(packet.size()));  // captured
  put_u32(body, static_cast<std::uint32_t>(packet.size()));  // original
  body.insert(body.end(), packet.begin(), packet.end());
  return block(kEnhancedPacket, body);
}

Bytes tcp_frame(Endpoint from, Endpoint to, std::uint32_t seq, std::uint32_t ack, ByteSpan payload) {
  constexpr std::size_t kEthernet = 14, kIp = 20, kTcp = 20;
  Bytes out;
  out.reserve(kEthernet + kIp + kTcp + payload.size());
  // Ethernet II: locally administered MACs made of the IPv4 addresses.
  for (std::uint32_t address : {to.address, from.address}) {
    out.push_back(0x02);
    out.push_back(0x00);
    put_be32(out, address);
  }
  put_be16(out, 0x0800);  // IPv4
  const std::size_t ip = out.size();
  out.push_back(0x45);  // version 4, 5 words of header
  out.push_back(0);     // DSCP/ECN
  put_be16(out, static_cast<std::uint16_t>(kIp + kTcp + payload.size()));
  put_be16(out, 0);       // identification
  put_be16(out, 0x4000);  // don't fragment
  out.push_back(64);      // TTL
  out.push_back(6);       // TCP
  put_be16(out, 0);       // header checksum, below
  put_be32(out, from.address);
  put_be32(out, to.address);
  set_be16(out, ip + 10, checksum(ByteSpan(out).subspan(ip, kIp)));
  const std::size_t tcp = out.size();
  put_be16(out, from.port);
  put_be16(out, to.port);
  put_be32(out, seq);
  put_be32(out, ack);
  out.push_back(0x50);  // 5 words of header
  out.push_back(0x18);  // PSH|ACK
  put_be16(out, 0xffff);  // window
  put_be16(out, 0);       // checksum, below
  put_be16(out, 0);       // urgent pointer
  out.insert(out.end(), payload.begin(), payload.end());
  // The TCP checksum covers a pseudo-header: both addresses, the protocol and the segment's length.
  const auto length = static_cast<std::uint32_t>(kTcp + payload.size());
  std::uint32_t pseudo = (from.address >> 16) + (from.address & 0xffff) + (to.address >> 16) + (to.address & 0xffff) +
                         6 + (length >> 16) + (length & 0xffff);
  set_be16(out, tcp + 16, checksum(ByteSpan(out).subspan(tcp), pseudo));
  return out;
}

}  // namespace pcapng

Result<std::shared_ptr<PcapngWriter>> PcapngWriter::create(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd) {
    const int e = errno;
    return make_error(e, "cannot create the capture file " + path + ": " + std::strerror(e) +
                             (e == EEXIST ? " (it exists; the capture never overwrites a file)" : ""));
  }
  // The mode asked for is cut by the umask, never widened: make sure nobody else can read what clients sent.
  if (::fchmod(fd.get(), 0600) != 0) {
    const int e = errno;
    return make_error(e, "cannot set the mode of " + path + ": " + std::strerror(e));
  }
  return over(std::move(fd));
}

Result<std::shared_ptr<PcapngWriter>> PcapngWriter::over(UniqueFd fd) {
  std::shared_ptr<PcapngWriter> writer(new PcapngWriter(std::move(fd)));
  std::lock_guard lock(writer->mutex_);
  if (auto r = writer->write_locked(pcapng::section_header_block()); !r) return r.error();
  if (auto r = writer->write_locked(pcapng::interface_description_block(pcapng::kLinktypeEthernet, 0)); !r) {
    return r.error();
  }
  return writer;
}

Result<void> PcapngWriter::write_locked(const Bytes& block) {
  std::size_t done = 0;
  while (done < block.size()) {
    const ssize_t n = ::write(fd_.get(), block.data() + done, block.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return make_error(n < 0 ? errno : EIO, std::string("write: ") + std::strerror(n < 0 ? errno : EIO));
    done += static_cast<std::size_t>(n);
  }
  return {};
}

void PcapngWriter::record(std::uint64_t flow, bool to_tpm, ByteSpan bytes) {
  using namespace pcapng;
  const Endpoint host = flow == kTpmFlow
                            ? Endpoint{kRmAddress, kHostPort}
                            : Endpoint{kClientNetwork | static_cast<std::uint32_t>(flow & 0xffff), kHostPort};
  const Endpoint tpm{flow == kTpmFlow ? kTpmAddress : kRmAddress, kTpmPort};
  const auto now = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::system_clock::now().time_since_epoch());
  std::lock_guard lock(mutex_);
  if (failed_) return;
  Sequence& seq = flows_[flow];
  const auto length = static_cast<std::uint32_t>(bytes.size());
  Bytes frame = to_tpm ? tcp_frame(host, tpm, seq.host, seq.tpm, bytes) : tcp_frame(tpm, host, seq.tpm, seq.host, bytes);
  (to_tpm ? seq.host : seq.tpm) += length;
  auto written = write_locked(enhanced_packet_block(0, static_cast<std::uint64_t>(now.count()), frame));
  if (!written) {
    failed_ = true;
    spdlog::error("event=capture-failed packets={} error=\"{}\" action=\"capture stopped\"", packets_,
                  rm::log_quoted(written.error().message));
    return;
  }
  ++packets_;
}

void PcapngWriter::forget(std::uint64_t flow) {
  std::lock_guard lock(mutex_);
  flows_.erase(flow);
}

std::uint64_t PcapngWriter::packets() const {
  std::lock_guard lock(mutex_);
  return packets_;
}

bool PcapngWriter::failed() const {
  std::lock_guard lock(mutex_);
  return failed_;
}

}  // namespace tpmrmd::daemon
