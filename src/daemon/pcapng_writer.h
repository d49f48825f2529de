// A capture of TPM traffic in pcapng, for debugging a client in Wireshark (the idea of swtpm's --pcap and
// tpm2-tss's pcap TCTI): every TPM command and response becomes the payload of a made-up TCP segment to or from
// port 2321, the port of the TPM simulator protocol, so Wireshark's TPM 2.0 dissector ("tpm20") decodes it.
//
// Two kinds of flow share one file, told apart by address:
//   client connection N <-> the RM:  10.1.H.L:50000  <-> 10.0.0.1:2321   (H.L = N mod 65536; virtual handles)
//   the RM <-> the TPM:              10.0.0.1:50000  <-> 10.0.0.2:2321   (physical handles, the RM's own traffic)
// so `ip.addr == 10.0.0.2` shows what reached the TPM and `ip.src == 10.1.0.7` what connection 7 sent.
//
// The file: a Section Header Block, one Interface Description Block (LINKTYPE_ETHERNET, microsecond
// timestamps), then one Enhanced Packet Block per message: Ethernet II + IPv4 + TCP (PSH|ACK, sequence numbers
// kept per flow and direction, checksums filled in) + the message. Each block is written with one write(2)
// under a mutex, so the writer may be called from any thread (the TPM worker and front-end threads). The first
// failed write ends the capture (logged once); the daemon carries on without it.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "util/bytes.h"
#include "util/result.h"
#include "util/unique_fd.h"

namespace tpmrmd::daemon {

namespace pcapng {

inline constexpr std::uint32_t kSectionHeader = 0x0A0D0D0A;
inline constexpr std::uint32_t kInterfaceDescription = 0x00000001;
inline constexpr std::uint32_t kEnhancedPacket = 0x00000006;
inline constexpr std::uint32_t kByteOrderMagic = 0x1A2B3C4D;
inline constexpr std::uint16_t kLinktypeEthernet = 1;
inline constexpr std::uint16_t kTpmPort = 2321;
inline constexpr std::uint16_t kHostPort = 50000;
inline constexpr std::uint32_t kRmAddress = 0x0A000001;      // 10.0.0.1
inline constexpr std::uint32_t kTpmAddress = 0x0A000002;     // 10.0.0.2
inline constexpr std::uint32_t kClientNetwork = 0x0A010000;  // 10.1.0.0/16

// The blocks, in host byte order (pcapng readers detect the order from the byte-order magic).
Bytes section_header_block();
Bytes interface_description_block(std::uint16_t linktype, std::uint32_t snaplen);
Bytes enhanced_packet_block(std::uint32_t interface, std::uint64_t timestamp_us, ByteSpan packet);

struct Endpoint {
  std::uint32_t address = 0;  // IPv4, host order
  std::uint16_t port = 0;
};
// An Ethernet II frame holding an IPv4 packet holding a TCP segment with `payload` (flags PSH|ACK).
Bytes tcp_frame(Endpoint from, Endpoint to, std::uint32_t seq, std::uint32_t ack, ByteSpan payload);

}  // namespace pcapng

class PcapngWriter {
 public:
  // Connection 0 is not a client's: it names the RM <-> TPM flow.
  static constexpr std::uint64_t kTpmFlow = 0;

  // Creates `path` for the capture: a new file only (O_EXCL, never through a symlink: O_NOFOLLOW), mode 0600,
  // close-on-exec; then writes the file's header.
  static Result<std::shared_ptr<PcapngWriter>> create(const std::string& path);
  // Over an open descriptor (tests: a pipe or a memfd); writes the file's header.
  static Result<std::shared_ptr<PcapngWriter>> over(UniqueFd fd);

  // One TPM message on `flow`: a command (to the TPM side) or a response (from it). Any thread.
  void command(std::uint64_t flow, ByteSpan bytes) { record(flow, true, bytes); }
  void response(std::uint64_t flow, ByteSpan bytes) { record(flow, false, bytes); }

  // The connection closed: its sequence numbers are dropped (a later connection with the same low 16 bits of
  // id starts its flow afresh).
  void forget(std::uint64_t flow);

  // Messages written, and whether the capture is still being written.
  std::uint64_t packets() const;
  bool failed() const;

 private:
  explicit PcapngWriter(UniqueFd fd) : fd_(std::move(fd)) {}
  Result<void> write_locked(const Bytes& block);
  void record(std::uint64_t flow, bool to_tpm, ByteSpan bytes);

  struct Sequence {
    std::uint32_t host = 1;  // next sequence number of the side that sends commands
    std::uint32_t tpm = 1;   // of the side that answers
  };

  mutable std::mutex mutex_;
  UniqueFd fd_;
  bool failed_ = false;
  std::uint64_t packets_ = 0;
  std::map<std::uint64_t, Sequence> flows_;
};

}  // namespace tpmrmd::daemon
