// The subset of swtpm's control channel that tpm2-tss's swtpm: TCTI uses, on PATH.ctrl beside the data socket.
//
// A request is a big-endian 32-bit command code and its parameters; a response is a 32-bit result (TPM 1.2
// style codes, 0 for success) and its payload. The TCTI connects anew for each request. It sends
// CMD_SET_LOCALITY(0) at initialisation and whenever locality changes, and CMD_INIT only when its user asks for
// a TPM reset. Answered here:
//   CMD_GET_CAPABILITY   success and the capabilities answered here (set locality, cancel)
//   CMD_SET_LOCALITY     locality 0 succeeds; any other is TPM_BAD_LOCALITY (the RM has one locality for all)
//   CMD_CANCEL_TPM_CMD   interrupts the commands the same process (and uid) is waiting on; success
//   CMD_INIT, CMD_SHUTDOWN, CMD_STOP and the other TPM-wide controls (state blobs, established bit, hashing,
//                        buffer size...): TPM_DISABLED_CMD — they would reset or stop the TPM every client shares
//   anything else        TPM_BAD_ORDINAL, and the connection is closed (its parameters cannot be framed)
#pragma once

#include "socket/cancel_registry.h"

namespace tpmrmd::socket {

// swtpm's control command codes, TPM 1.2 result codes and capability bits (its tpm_ioctl.h).
namespace swtpm_ctrl {
inline constexpr std::uint32_t kGetCapability = 0x01;
inline constexpr std::uint32_t kInit = 0x02;
inline constexpr std::uint32_t kShutdown = 0x03;
inline constexpr std::uint32_t kGetTpmEstablished = 0x04;
inline constexpr std::uint32_t kSetLocality = 0x05;
inline constexpr std::uint32_t kHashStart = 0x06;
inline constexpr std::uint32_t kHashData = 0x07;
inline constexpr std::uint32_t kHashEnd = 0x08;
inline constexpr std::uint32_t kCancelTpmCmd = 0x09;
inline constexpr std::uint32_t kStoreVolatile = 0x0a;
inline constexpr std::uint32_t kResetTpmEstablished = 0x0b;
inline constexpr std::uint32_t kGetStateBlob = 0x0c;
inline constexpr std::uint32_t kSetStateBlob = 0x0d;
inline constexpr std::uint32_t kStop = 0x0e;
inline constexpr std::uint32_t kGetConfig = 0x0f;
inline constexpr std::uint32_t kSetDataFd = 0x10;
inline constexpr std::uint32_t kSetBufferSize = 0x11;
inline constexpr std::uint32_t kGetInfo = 0x12;
inline constexpr std::uint32_t kLockStorage = 0x13;

inline constexpr std::uint32_t kSuccess = 0;
inline constexpr std::uint32_t kBadParameter = 0x03;
inline constexpr std::uint32_t kBadOrdinal = 0x0a;
inline constexpr std::uint32_t kDisabledCmd = 0x20;
inline constexpr std::uint32_t kBadLocality = 0x3d;

inline constexpr std::uint32_t kCapSetLocality = 1u << 3;
inline constexpr std::uint32_t kCapCancelTpmCmd = 1u << 5;
}  // namespace swtpm_ctrl

// Serves one accepted control connection until the client closes it.
void serve_swtpm_control(int fd, CancelRegistry& cancels);

}  // namespace tpmrmd::socket
