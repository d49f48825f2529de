// The mssim protocol's platform socket: the simulator's power, NV and cancel signals. tpm2-tss's mssim: TCTI
// sends TPM_SIGNAL_POWER_ON and TPM_SIGNAL_NV_ON at initialisation, TPM_SIGNAL_CANCEL_ON/OFF around a cancel
// and TPM_SESSION_END at finalisation.
//
// The TPM behind the RM is shared and always on: power and NV signals (and the key cache's) are answered done
// and do nothing; CANCEL_ON interrupts the commands the same process (and uid) is waiting on, which needs a
// unix socket (a TCP peer has no process we could name: there it does nothing); CANCEL_OFF is done.
// Reset, restart, physical presence, hashing, failure mode and alternative results would act on everyone's
// TPM: refused (a non-zero answer). TPM_SESSION_END and TPM_STOP end the connection, as does a code we do not
// know (its parameters cannot be framed).
#pragma once

#include "socket/cancel_registry.h"

namespace tpmrmd::socket {

void serve_mssim_platform(int fd, CancelRegistry& cancels, bool unix_socket);

}  // namespace tpmrmd::socket
