// Where a socket front-end listens: a unix socket path or a TCP host and port, and its protocol's second
// socket beside it (the swtpm control channel, the mssim platform socket): PATH.ctrl for a unix path, the
// next port for TCP — where tpm2-tss's swtpm: and mssim: TCTIs look for it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "util/result.h"

namespace tpmrmd::socket {

struct Endpoint {
  enum class Kind { kUnix, kTcp };
  Kind kind = Kind::kUnix;
  std::string path;                // kUnix
  std::string host = "127.0.0.1";  // kTcp
  std::uint16_t port = 0;          // kTcp

  // PATH.ctrl, or PORT+1 on the same host.
  Endpoint companion() const;
  // "unix:PATH" or "tcp:HOST:PORT", for log lines.
  std::string describe() const;
  // TCP bound to a loopback address only (127.0.0.0/8, ::1, localhost).
  bool loopback() const;
};

// A value containing '/' is a unix socket path; otherwise HOST:PORT, [V6HOST]:PORT, or PORT alone (loopback).
// The port must leave room for the companion's (at most 65534).
Result<Endpoint> parse_endpoint(std::string_view text);

}  // namespace tpmrmd::socket
