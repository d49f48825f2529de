// The Microsoft TPM 2.0 simulator's socket protocol (its TpmTcpProtocol.h), as tpm2-tss's mssim: TCTI speaks
// it: a command socket and a platform socket (the next TCP port, or PATH.ctrl for a unix path). Every request
// starts with a big-endian 32-bit code.
#pragma once

#include <cstdint>

namespace tpmrmd::socket::mssim {

inline constexpr std::uint32_t kPowerOn = 1;
inline constexpr std::uint32_t kPowerOff = 2;
inline constexpr std::uint32_t kPhysPresOn = 3;
inline constexpr std::uint32_t kPhysPresOff = 4;
inline constexpr std::uint32_t kHashStart = 5;
inline constexpr std::uint32_t kHashData = 6;
inline constexpr std::uint32_t kHashEnd = 7;
inline constexpr std::uint32_t kSendCommand = 8;  // locality (1 byte), size (4), command -> size, response, 0 (4)
inline constexpr std::uint32_t kCancelOn = 9;
inline constexpr std::uint32_t kCancelOff = 10;
inline constexpr std::uint32_t kNvOn = 11;
inline constexpr std::uint32_t kNvOff = 12;
inline constexpr std::uint32_t kKeyCacheOn = 13;
inline constexpr std::uint32_t kKeyCacheOff = 14;
inline constexpr std::uint32_t kRemoteHandshake = 15;
inline constexpr std::uint32_t kSetAlternativeResult = 16;
inline constexpr std::uint32_t kReset = 17;
inline constexpr std::uint32_t kRestart = 18;
inline constexpr std::uint32_t kSessionEnd = 20;
inline constexpr std::uint32_t kStop = 21;
inline constexpr std::uint32_t kTestFailureMode = 30;

// A platform request's answer: 0 done; anything else is an error to the TCTI.
inline constexpr std::uint32_t kDone = 0;
inline constexpr std::uint32_t kRefused = 1;

}  // namespace tpmrmd::socket::mssim
