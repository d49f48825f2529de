// A fuzzer-driven client workload on a ResourceManager over a FakeTpm, with the invariant checker between
// them: the part both RM targets share. The input is a program (fuzz_input.h): configuration bytes, then steps
// that open and close connections, run structured commands built from fuzzer choices (handles taken from the
// connection's own, another connection's, or raw values; context blobs any connection saved, old copies
// included), raw or mutated command bytes, and faults of the fake TPM.
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include <memory>
#include <optional>
#include <vector>

#include "fuzz_input.h"
#include "rm/resource_manager.h"
#include "tpm/commands.h"
#include "support/fake_tpm.h"
#include "support/rm_invariants.h"
#include "util/bytes.h"

namespace tpmrmd::fuzz {

struct ProgramLimits {
  std::size_t max_steps = 24;
  std::size_t max_connections = 4;
  bool faults = true;  // kFault steps act
  // restart() among the faults. Off under the hostile TPM: a reset the RM is not told of empties slots
  // behind it, and a creation answer a lie then hides reuses one (docs/fuzzing.md, known and not fixed).
  bool restarts = true;
  bool trace = false;  // print every step to stderr (reproducing a finding)
};

class ClientProgram {
 public:
  // Reads the configuration bytes from `in` and builds the fake and the RM.
  ClientProgram(FuzzInput& in, ProgramLimits limits);
  ~ClientProgram();

  testing::FakeTpm& tpm() { return *tpm_; }
  testing::RmInvariants& invariants() { return *invariants_; }
  // The client command being executed and its connection, while execute() runs.
  const Bytes* executing_command() const { return executing_command_; }
  rm::ConnectionId executing_connection() const { return executing_connection_; }

  // Runs the steps, checking the invariants after each; then finish().
  void run();
  void run_steps();
  // Clears the armed faults, closes every connection and shuts the RM down, checking what must hold then.
  void finish();

 private:
  struct Connection {
    rm::ConnectionId id = 0;
    std::vector<TPM2_HANDLE> handles;   // virtual handles its responses returned
    std::vector<TPM2_HANDLE> sessions;  // sessions its responses returned
  };
  struct Key {  // a Create output another Load can use
    Bytes private_area;  // TPM2B_PRIVATE, marshalled
    Bytes public_area;   // TPM2B_PUBLIC, marshalled
  };

  void step();
  void open();
  void close(std::size_t index);
  void execute(std::size_t index, const Bytes& command);
  void learn(Connection& c, const Bytes& command, const Bytes& response);
  Bytes structured(std::size_t index);
  Bytes raw();
  Bytes mutated();
  void fault();

  std::size_t pick_connection();
  TPM2_HANDLE pick_handle(std::size_t index);
  std::vector<tpm::Auth> pick_auths(std::size_t index, std::size_t min, std::size_t max);

  FuzzInput& in_;
  ProgramLimits limits_;
  std::unique_ptr<testing::FakeTpm> tpm_;
  std::unique_ptr<testing::RmInvariants> invariants_;
  std::unique_ptr<rm::ResourceManager> rm_;
  std::vector<Connection> connections_;
  std::vector<Bytes> blobs_;    // contexts any connection got from ContextSave, old copies too
  std::vector<Key> keys_;
  std::vector<Bytes> recent_;   // commands sent, for mutation
  std::vector<TPM2_HANDLE> all_sessions_;  // sessions any connection got
  const Bytes* executing_command_ = nullptr;
  rm::ConnectionId executing_connection_ = 0;
};

}  // namespace tpmrmd::fuzz
