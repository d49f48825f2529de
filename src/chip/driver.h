// The `ops` of a Chip: one transport to one TPM (swtpm socket, /dev/tpmN, TIS/CRB registers, a TCTI).
//
// Kept deliberately small: a driver moves one whole command to the TPM and one whole response back, within a
// deadline. Everything transport-independent (size checks, retries, durations, start-up, locking, lifetime)
// lives in Chip. Register drivers (TIS FIFO, CRB) implement exchange() with their own state machines
// (locality, cmdReady, burst writes, status polling, goIdle).
//
// A driver is only ever called by its Chip, under the Chip's locks, one call at a time, so it needs no
// locking of its own.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "util/bytes.h"
#include "util/result.h"

namespace tpmrmd::chip {

class Driver {
 public:
  virtual ~Driver() = default;

  // Short human-readable description of the backend, e.g. "swtpm unix:/run/x.sock".
  virtual std::string description() const = 0;

  // Identity of the underlying TPM, for "one daemon per TPM" locks: the same TPM gives the same string
  // however it is named (e.g. the sysfs device behind /dev/tpm0, the swtpm endpoint, the MMIO base).
  virtual std::string identity() const = 0;

  // Powers the TPM on / initialises it where the transport can (swtpm: CMD_INIT on the control channel).
  // Chip::startup() calls it only when the TPM answers the first probe with TPM_RC_FAILURE, the answer of an
  // emulator that was never initialised: an initialised TPM is never reset behind its users' backs.
  virtual Result<void> power_on() { return make_error(EOPNOTSUPP, "backend cannot power the TPM on"); }

  // Sends `command` (a whole, already validated TPM command) and returns the whole response.
  // On `timeout` the driver cancels the command the way its transport allows, makes sure no stale response
  // can be read by the next exchange, and returns ETIME. Transport failures return EIO/EPIPE/ECONNRESET/...;
  // after such a failure alive() may turn false.
  virtual Result<Bytes> exchange(ByteSpan command, std::chrono::milliseconds timeout) = 0;

  // Selects the locality for following commands. Drivers without localities return EOPNOTSUPP.
  virtual Result<void> set_locality(std::uint8_t locality) {
    (void)locality;
    return make_error(EOPNOTSUPP, "backend has no localities");
  }

  // After exchange() returned ETIME: the response the TPM produced for the cancelled command, if the driver
  // drained one (cancel came too late). The Chip uses it to flush a transient object that would otherwise
  // leak. Cleared by the call.
  virtual std::optional<Bytes> take_late_response() { return std::nullopt; }

  // False once the transport is known to be broken beyond repair (peer closed, device gone). The Chip then
  // unregisters itself.
  virtual bool alive() const = 0;
};

}  // namespace tpmrmd::chip
