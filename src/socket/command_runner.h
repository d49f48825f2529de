// One whole TPM command on a device Connection, as a socket session runs it: a blocking write, waited for on
// the session's own thread (the Connection answers from the TPM worker), then a read of the stored response.
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>

#include "device/connection.h"
#include "socket/cancel_registry.h"
#include "util/bytes.h"
#include "util/result.h"

namespace tpmrmd::socket {

// The response, or the Connection's errno: EINTR when the client cancelled it, ENODEV when the backend is
// gone, EINVAL/EPERM/... for refusals in the RM's errno mode. `registry` (may be null) lets a cancel signal
// from process `pid` of `uid` reach it.
Result<Bytes> run_command(const std::shared_ptr<device::Connection>& connection, ByteSpan command,
                          CancelRegistry* registry, pid_t pid, uid_t uid);

// What a socket client receives when the RM refused with an errno (the stream cannot carry one): a 10-byte
// response with the RM-layer rc closest to it (EINTR: TPM_RC_CANCELED; EIO and ETIME, the chip's
// failures: RM-layer TPM_RC_FAILURE). A gone backend (ENODEV) has none: the caller closes the connection.
std::optional<Bytes> errno_response(int error);

}  // namespace tpmrmd::socket
