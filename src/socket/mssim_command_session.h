// The mssim protocol's command socket. tpm2-tss's mssim: TCTI keeps it connected for the TCTI context's whole
// life, so one connection is one Connection — one RM space, exactly as one open() of the device node is —
// opened at accept (the RM's connection limits refuse it there) and closed, its TPM resources flushed, when
// the socket closes or the client sends TPM_SESSION_END.
//
// TPM_SEND_COMMAND runs the command in that space: locality 0 only (another gets a TPM_RC_LOCALITY response),
// size from 10 to --max-command (else the connection is closed), a refusal the RM expresses as an errno becomes
// an RM-layer rc response, a gone backend closes the connection. TPM_STOP is refused by closing the connection
// (the daemon is not the client's to stop); every other code has no framing we could follow and closes it too.
#pragma once

#include <cstddef>

#include "socket/cancel_registry.h"
#include "socket/process_spaces.h"

namespace tpmrmd::socket {

struct MssimContext {
  ConnectionOpener opener;
  CancelRegistry& cancels;
  std::size_t max_command;
  bool unix_socket;  // peer credentials (else the anonymous TCP identity)
};

void serve_mssim_command(int fd, MssimContext& context);

}  // namespace tpmrmd::socket
