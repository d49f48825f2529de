// The CUSE character device: libfuse's lowlevel CUSE session mapped onto Connections. Lean by design: every
// handler does its bookkeeping and returns; blocking writes and reads are answered from the completion.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "device/connection.h"
#include "util/result.h"

namespace tpmrmd::cuse {

struct CuseDeviceOptions {
  std::string name = "tpmrm0";  // the node is /dev/<name>
  mode_t mode = 0660;
  std::optional<uid_t> owner;
  std::optional<gid_t> group;
  // A fixed device number (cuse_info's dev_major/dev_minor); major 0: the kernel allocates one.
  unsigned dev_major = 0;
  unsigned dev_minor = 0;
  device::ConnectionOptions connection;
  bool debug = false;  // libfuse request tracing
};

// Opens connections on whatever backend is current; ENODEV while there is none.
using ConnectionOpener = std::function<Result<std::shared_ptr<device::Connection>>(const rm::ClientInfo&)>;

class CuseDevice {
 public:
  CuseDevice(CuseDeviceOptions options, ConnectionOpener opener);
  ~CuseDevice();

  // Checks what can be checked before starting: /dev/cuse usable (else names the `cuse` module), no node of
  // our name exists yet (else suggests --name).
  static Result<void> check_environment(const std::string& name);

  // Runs the CUSE session until SIGTERM/SIGINT/SIGHUP (libfuse's handlers) or stop(). `on_ready` runs once the
  // node exists with its mode and owner set. Returns after the node is gone.
  Result<void> run(std::function<void()> on_ready);

  // Ends run() from any thread.
  void stop();

  struct OpenFile;  // per-open state, in fuse_file_info::fh

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tpmrmd::cuse
