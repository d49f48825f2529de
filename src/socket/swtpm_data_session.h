// The swtpm protocol's data channel: raw TPM commands and responses on a stream socket. A frame is a command
// whose header's commandSize says how long it is (10 bytes at least, --max-command at most); the whole
// response goes back. Commands run in the client process's RM space (process_spaces.h), so tpm2-tss's
// swtpm: TCTI, which connects once per command, keeps its objects between commands.
//
// A frame that cannot be a command (size below 10 or above the limit) or that ends early closes the
// connection; a refusal the RM expresses as an errno reaches the client as an RM-layer rc response
// (command_runner.h); a gone backend closes the connection.
#pragma once

#include <cstddef>

#include "socket/cancel_registry.h"
#include "socket/process_spaces.h"

namespace tpmrmd::socket {

struct SwtpmDataContext {
  ProcessSpaces& spaces;
  CancelRegistry& cancels;
  std::size_t max_command;
};

// Serves one accepted unix connection until the client closes it or it breaks the framing.
void serve_swtpm_data(int fd, SwtpmDataContext& context);

}  // namespace tpmrmd::socket
