// Hostile clients: a program of connections, structured and garbage commands and TPM faults runs on the RM
// over the fake TPM, and the RM's invariants (tests/support/rm_invariants.h) are checked after every step.
#include <spdlog/spdlog.h>

#include <cstdint>
#include <cstdlib>

#include "client_program.h"

namespace {
bool trace = false;
}

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  setenv("TSS2_LOG", "all+NONE", 1);  // tss2-mu logs every malformed buffer it is given
  trace = std::getenv("RM_FUZZ_TRACE") != nullptr;  // every step to stderr, the RM's log at debug
  spdlog::set_level(trace ? spdlog::level::debug : spdlog::level::off);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  tpmrmd::fuzz::FuzzInput in(data, size);
  tpmrmd::fuzz::ProgramLimits limits;
  limits.trace = trace;
  tpmrmd::fuzz::ClientProgram program(in, limits);
  program.run();
  return 0;
}
