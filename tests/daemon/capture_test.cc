// --capture: the pcapng encoder read back block by block, the capture file's creation rules, and the two
// capture points (the TPM side and the client side) around the RM on the fake TPM. With TPMRMD_TSHARK set (the
// suite registers the tshark test only when tshark is installed) Wireshark's TPM 2.0 dissector reads it too.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "daemon/capturing_port.h"
#include "daemon/pcapng_writer.h"
#include "rm/worker_dispatcher.h"
#include "support/fake_tpm.h"
#include "support/tpm_commands.h"
#include "tpm/endian.h"

namespace tpmrmd::daemon {
namespace {

namespace fs = std::filesystem;

std::uint32_t u32(const Bytes& b, std::size_t at) {
  std::uint32_t v;
  std::memcpy(&v, b.data() + at, sizeof v);
  return v;
}
std::uint16_t u16(const Bytes& b, std::size_t at) {
  std::uint16_t v;
  std::memcpy(&v, b.data() + at, sizeof v);
  return v;
}

struct Block {
  std::uint32_t type = 0;
  Bytes body;  // between the two length fields, padding included
};

// Splits a pcapng file into blocks, checking every framing rule on the way.
std::vector<Block> parse_blocks(const Bytes& file) {
  std::vector<Block> blocks;
  std::size_t at = 0;
  while (at < file.size()) {
    EXPECT_GE(file.size() - at, 12u) << "truncated block at " << at;
    if (file.size() - at < 12) break;
    const std::uint32_t type = u32(file, at);
    const std::uint32_t length = u32(file, at + 4);
    EXPECT_EQ(length % 4, 0u) << "block at " << at << " is not 32-bit aligned";
    EXPECT_GE(length, 12u);
    EXPECT_LE(at + length, file.size());
    if (length < 12 || at + length > file.size()) break;
    EXPECT_EQ(u32(file, at + length - 4), length) << "trailing length of the block at " << at;
    blocks.push_back(Block{type, Bytes(file.begin() + static_cast<std::ptrdiff_t>(at + 8),
                                       file.begin() + static_cast<std::ptrdiff_t>(at + length - 4))});
    at += length;
  }
  return blocks;
}

std::uint16_t internet_checksum(const std::uint8_t* p, std::size_t n, std::uint32_t sum = 0) {
  for (std::size_t i = 0; i + 1 < n; i += 2) sum += static_cast<std::uint32_t>(p[i] << 8 | p[i + 1]);
  if (n % 2) sum += static_cast<std::uint32_t>(p[n - 1] << 8);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(~sum);
}

struct Packet {
  std::uint32_t src = 0, dst = 0;
  std::uint16_t sport = 0, dport = 0;
  std::uint32_t seq = 0, ack = 0;
  Bytes payload;
};

// An EPB's frame: Ethernet II, IPv4 and TCP, with their checksums verified.
Packet parse_epb(const Block& epb) {
  Packet p;
  EXPECT_EQ(epb.type, pcapng::kEnhancedPacket);
  const std::uint32_t captured = u32(epb.body, 12);
  EXPECT_EQ(u32(epb.body, 16), captured);
  EXPECT_EQ(epb.body.size(), 20 + ((captured + 3) & ~3u));
  const Bytes frame(epb.body.begin() + 20, epb.body.begin() + 20 + captured);
  EXPECT_GE(frame.size(), 54u);
  if (frame.size() < 54) return p;
  EXPECT_EQ(tpm::load_u16(frame, 12), 0x0800);
  const std::uint8_t* ip = frame.data() + 14;
  EXPECT_EQ(ip[0], 0x45);
  EXPECT_EQ(ip[9], 6);
  EXPECT_EQ(tpm::load_u16(frame, 16), frame.size() - 14);
  EXPECT_EQ(internet_checksum(ip, 20), 0) << "IPv4 header checksum";
  p.src = tpm::load_u32(frame, 26);
  p.dst = tpm::load_u32(frame, 30);
  p.sport = tpm::load_u16(frame, 34);
  p.dport = tpm::load_u16(frame, 36);
  p.seq = tpm::load_u32(frame, 38);
  p.ack = tpm::load_u32(frame, 42);
  EXPECT_EQ(frame[46], 0x50);
  EXPECT_EQ(frame[47], 0x18);  // PSH|ACK
  const auto tcp_length = static_cast<std::uint32_t>(frame.size() - 34);
  const std::uint32_t pseudo = (p.src >> 16) + (p.src & 0xffff) + (p.dst >> 16) + (p.dst & 0xffff) + 6 + tcp_length;
  EXPECT_EQ(internet_checksum(frame.data() + 34, tcp_length, pseudo), 0) << "TCP checksum";
  p.payload.assign(frame.begin() + 54, frame.end());
  return p;
}

Bytes read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

class CaptureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/tpmrmd-capture-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(CaptureTest, TheFileIsHeaderBlocksThenOneEnhancedPacketPerMessage) {
  const fs::path path = dir_ / "c.pcapng";
  auto writer = PcapngWriter::create(path);
  ASSERT_TRUE(writer) << describe(writer.error());
  const Bytes command = from_hex("8001 0000000c 0000017b 0008");          // GetRandom(8)
  const Bytes response = from_hex("8001 00000014 00000000 0008 0102030405060708");
  const Bytes odd = from_hex("8001 0000000b 00000144 00");                // 11 bytes: the block needs padding
  (*writer)->command(PcapngWriter::kTpmFlow, command);
  (*writer)->response(PcapngWriter::kTpmFlow, response);
  (*writer)->command(7, odd);
  (*writer)->command(PcapngWriter::kTpmFlow, command);
  EXPECT_EQ((*writer)->packets(), 4u);
  EXPECT_FALSE((*writer)->failed());
  writer->reset();

  const auto blocks = parse_blocks(read_file(path));
  ASSERT_EQ(blocks.size(), 6u);
  EXPECT_EQ(blocks[0].type, pcapng::kSectionHeader);
  EXPECT_EQ(u32(blocks[0].body, 0), pcapng::kByteOrderMagic);
  EXPECT_EQ(u16(blocks[0].body, 4), 1);  // version 1.0
  EXPECT_EQ(u16(blocks[0].body, 6), 0);
  EXPECT_EQ(blocks[1].type, pcapng::kInterfaceDescription);
  EXPECT_EQ(u16(blocks[1].body, 0), pcapng::kLinktypeEthernet);

  const Packet p0 = parse_epb(blocks[2]), p1 = parse_epb(blocks[3]), p2 = parse_epb(blocks[4]),
               p3 = parse_epb(blocks[5]);
  EXPECT_EQ(p0.payload, command);
  EXPECT_EQ(p1.payload, response);
  EXPECT_EQ(p2.payload, odd);
  EXPECT_EQ(p3.payload, command);
  // The RM <-> TPM flow: commands to 10.0.0.2:2321, responses back; sequence numbers count the bytes.
  EXPECT_EQ(p0.src, pcapng::kRmAddress);
  EXPECT_EQ(p0.dst, pcapng::kTpmAddress);
  EXPECT_EQ(p0.dport, pcapng::kTpmPort);
  EXPECT_EQ(p1.src, pcapng::kTpmAddress);
  EXPECT_EQ(p1.sport, pcapng::kTpmPort);
  EXPECT_EQ(p1.seq, p0.ack);
  EXPECT_EQ(p1.ack, p0.seq + command.size());
  EXPECT_EQ(p3.seq, p0.seq + command.size());
  EXPECT_EQ(p3.ack, p1.seq + response.size());
  // A client's flow: its own address, to the RM playing the TPM.
  EXPECT_EQ(p2.src, pcapng::kClientNetwork | 7);
  EXPECT_EQ(p2.dst, pcapng::kRmAddress);
  EXPECT_EQ(p2.dport, pcapng::kTpmPort);
}

TEST_F(CaptureTest, TheFileIsNewPrivateAndNeverReachedThroughASymlink) {
  const fs::path path = dir_ / "c.pcapng";
  const mode_t old_umask = ::umask(0);
  auto writer = PcapngWriter::create(path);
  ::umask(old_umask);
  ASSERT_TRUE(writer);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);

  auto again = PcapngWriter::create(path);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, EEXIST);

  const fs::path target = dir_ / "target";
  { std::ofstream(target) << "keep"; }
  const fs::path link = dir_ / "link.pcapng";
  fs::create_symlink(target, link);
  auto through_link = PcapngWriter::create(link);
  ASSERT_FALSE(through_link);
  EXPECT_EQ(read_file(target), (Bytes{'k', 'e', 'e', 'p'}));
  const fs::path dangling = dir_ / "dangling.pcapng";
  fs::create_symlink(dir_ / "nowhere", dangling);
  EXPECT_FALSE(PcapngWriter::create(dangling));
  EXPECT_FALSE(fs::exists(dir_ / "nowhere"));
}

TEST_F(CaptureTest, AFailedWriteEndsTheCaptureAndNothingElse) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  auto writer = PcapngWriter::over(UniqueFd(fds[1]));
  ASSERT_TRUE(writer);
  ::close(fds[0]);  // the reader is gone: the next write fails with EPIPE
  ::signal(SIGPIPE, SIG_IGN);
  (*writer)->command(1, from_hex("8001 0000000c 0000017b 0008"));
  EXPECT_TRUE((*writer)->failed());
  (*writer)->command(1, from_hex("8001 0000000c 0000017b 0008"));
  EXPECT_EQ((*writer)->packets(), 0u);
}

TEST_F(CaptureTest, ConcurrentWritersLeaveWholeBlocks) {
  const fs::path path = dir_ / "c.pcapng";
  auto writer = PcapngWriter::create(path);
  ASSERT_TRUE(writer);
  std::vector<std::thread> threads;
  for (std::uint64_t t = 1; t <= 4; ++t) {
    threads.emplace_back([w = *writer, t] {
      for (int i = 0; i < 250; ++i) w->command(t, Bytes(10 + t, static_cast<std::uint8_t>(t)));
    });
  }
  for (auto& t : threads) t.join();
  writer->reset();
  const auto blocks = parse_blocks(read_file(path));
  ASSERT_EQ(blocks.size(), 2u + 1000u);
  for (std::size_t i = 2; i < blocks.size(); ++i) {
    const Packet p = parse_epb(blocks[i]);
    const std::uint8_t flow = static_cast<std::uint8_t>(p.src & 0xff);
    EXPECT_EQ(p.payload, Bytes(10 + flow, flow));
  }
}

// The two capture points around the RM: what the client sent (virtual handles) and what reached the TPM.
Bytes capture_rm_traffic(const fs::path& path, Bytes* client_command, Bytes* client_response) {
  auto writer = PcapngWriter::create(path);
  EXPECT_TRUE(writer);
  CapturingTpmPort port(std::make_unique<testing::FakeTpm>(), *writer);
  {
    rm::WorkerDispatcher worker(port);
    CapturingDispatcher dispatcher(worker, *writer);
    auto id = dispatcher.open(rm::ClientInfo{1000, 1000, 42});
    EXPECT_TRUE(id);
    *client_command = testing::create_primary(TPM2_RH_OWNER, 1);
    auto created = dispatcher.execute(*id, *client_command);
    EXPECT_TRUE(created);
    *client_response = created ? *created : Bytes{};
    EXPECT_TRUE(dispatcher.execute(*id, testing::get_random(8)));
    dispatcher.close(*id);
    worker.stop();
  }
  writer->reset();
  return read_file(path);
}

TEST_F(CaptureTest, ClientAndTpmTrafficAreCapturedOnTheirOwnFlows) {
  Bytes command, response;
  const auto blocks = parse_blocks(capture_rm_traffic(dir_ / "rm.pcapng", &command, &response));
  ASSERT_GE(blocks.size(), 2u + 8u);
  std::vector<Packet> client, tpm;
  for (std::size_t i = 2; i < blocks.size(); ++i) {
    Packet p = parse_epb(blocks[i]);
    (p.src == pcapng::kTpmAddress || p.dst == pcapng::kTpmAddress ? tpm : client).push_back(std::move(p));
  }
  ASSERT_EQ(client.size(), 4u);  // two commands, two responses
  EXPECT_EQ(client[0].src, pcapng::kClientNetwork | 1);
  EXPECT_EQ(client[0].payload, command);
  EXPECT_EQ(client[1].payload, response);
  EXPECT_EQ(tpm::load_u32(client[1].payload, 10), 0x80000000u);  // the connection's first virtual handle
  // Every client command reached the TPM, and the RM's flush of the key when the connection closed did too.
  ASSERT_GE(tpm.size(), 6u);
  EXPECT_EQ(tpm.size() % 2, 0u);
  bool flushed = false;
  for (std::size_t i = 0; i < tpm.size(); i += 2) {
    EXPECT_EQ(tpm[i].dst, pcapng::kTpmAddress);
    EXPECT_EQ(tpm[i + 1].src, pcapng::kTpmAddress);
    flushed |= tpm::load_u32(tpm[i].payload, 6) == TPM2_CC_FlushContext;
  }
  EXPECT_TRUE(flushed);
}

// Wireshark's TPM 2.0 dissector decodes both flows: command codes on the way in, response codes on the way out.
TEST_F(CaptureTest, TsharkDecodesTheTpmTraffic) {
  const char* tshark = std::getenv("TPMRMD_TSHARK");
  if (!tshark || !*tshark) GTEST_SKIP() << "TPMRMD_TSHARK is not set (the suite registers this test with tshark)";
  Bytes command, response;
  const fs::path path = dir_ / "rm.pcapng";
  capture_rm_traffic(path, &command, &response);
  const fs::path out = dir_ / "tshark.txt";
  const std::string cmd = std::string(tshark) + " -n -r " + path.string() +
                          " -T fields -E separator=, -e ip.src -e ip.dst -e tpm.req.cc -e tpm.resp.rc > " +
                          out.string() + " 2>" + (dir_ / "tshark.err").string();
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::ifstream in(out);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_GE(lines.size(), 10u) << ::testing::PrintToString(lines);
  EXPECT_EQ(lines[1], "10.0.0.1,10.0.0.2,0x00000131,");  // sent on to the TPM
  EXPECT_EQ(lines[2], "10.0.0.2,10.0.0.1,,0x00000000");   // the TPM's answer
  EXPECT_EQ(lines[3], "10.0.0.1,10.1.0.1,,0x00000000");   // and the client's
  // The client's CreatePrimary (0x131) and its answer, as the dissector read them.
  EXPECT_EQ(lines[0], "10.1.0.1,10.0.0.1,0x00000131,") << ::testing::PrintToString(lines);
  std::size_t tpm_commands = 0, tpm_responses = 0;
  for (const auto& line : lines) {
    if (line.starts_with("10.0.0.1,10.0.0.2,0x")) ++tpm_commands;
    if (line.starts_with("10.0.0.2,10.0.0.1,,0x")) ++tpm_responses;
  }
  EXPECT_GE(tpm_commands, 3u) << ::testing::PrintToString(lines);
  EXPECT_EQ(tpm_commands, tpm_responses) << ::testing::PrintToString(lines);
}

}  // namespace
}  // namespace tpmrmd::daemon
