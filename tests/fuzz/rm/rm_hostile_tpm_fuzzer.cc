// A hostile TPM: the client workload of rm_clients_fuzzer runs while the fake TPM's response hook rewrites
// responses as the input says (to the RM's own ContextSave / ContextLoad / FlushContext and to client
// commands alike): truncated, extended, a wrong size field or rc, a returned handle of the wrong type or one
// that is already occupied, garbled capability data or context blobs, a transport error after the TPM ran
// the command. Checked: no crash or sanitizer report, every client response well-formed, no object or session
// reachable from a connection that did not create or load it, and no leak at shutdown beyond what the lies
// hid from the RM (docs/fuzzing.md, rm).
//
// Input: one byte n, then 4n bytes of mutation script (one byte per TPM command decides what happens to its
// response, more bytes as the mutation needs; an exhausted script passes responses through), then the client
// program.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>

#include "client_program.h"
#include "rm/command.h"
#include "tpm/endian.h"
#include "tpm/header.h"
#include "tpm/responses.h"

namespace {

using tpmrmd::Bytes;
using tpmrmd::ByteSpan;
using tpmrmd::Result;
using tpmrmd::fuzz::FuzzInput;

bool trace = false;
bool strict_handles = false;

constexpr TPM2_RC kLies[] = {
    TPM2_RC_SUCCESS,       TPM2_RC_HANDLE | TPM2_RC_P | TPM2_RC_1, TPM2_RC_REFERENCE_H0,
    TPM2_RC_INTEGRITY | TPM2_RC_P | TPM2_RC_1, TPM2_RC_OBJECT_MEMORY, TPM2_RC_SESSION_MEMORY,
    TPM2_RC_SESSION_HANDLES, TPM2_RC_CONTEXT_GAP, TPM2_RC_HIERARCHY | TPM2_RC_P | TPM2_RC_1,
    TPM2_RC_RETRY,         TPM2_RC_FAILURE,  TPM2_RC_MEMORY,
};

class HostileTpm {
 public:
  HostileTpm(FuzzInput& script, tpmrmd::fuzz::ClientProgram& program) : script_(script), program_(program) {}

  Result<Bytes> operator()(ByteSpan command, Bytes response) {
    const std::uint8_t how = script_.u8();
    if (how % 16 == 0 || how % 16 > 9) {
      if (trace) {
        std::fprintf(stderr, "  tpm: %s -> %s\n", tpmrmd::to_hex(command).c_str(), tpmrmd::to_hex(response).c_str());
      }
      return response;
    }
    auto& tpm = program_.tpm();
    auto header = tpmrmd::tpm::parse_command_header(command);
    auto attributes = header ? tpm.info().commands.find(header->code) : std::nullopt;
    const bool returns_handle = attributes && attributes->returns_handle();
    auto rc = tpmrmd::tpm::response_code(response);
    const bool created = returns_handle && rc && *rc == TPM2_RC_SUCCESS && response.size() >= 14;
    const TPM2_HANDLE original = created ? tpmrmd::tpm::load_u32(response, 10) : 0;

    Result<Bytes> out = mutate(how % 16, header ? header->code : 0, response);
    if (trace) {
      std::fprintf(stderr, "  hostile %u: %s -> %s\n", how % 16, tpmrmd::to_hex(response).c_str(),
                   out ? tpmrmd::to_hex(*out).c_str() : tpmrmd::describe(out.error()).c_str());
    }
    const bool changed = !out || *out != response;
    if (!changed) return out;
    auto& invariants = program_.invariants();
    invariants.set_slots_trusted(false);
    // What the TPM created, and what the command named (a lie such as "gone" makes the RM forget a context
    // the TPM still holds), stay there whatever the RM was told.
    if (created) invariants.excuse(original);
    // The RM's own commands that return a handle are ContextLoads; anything else, or a ContextLoad sent as the
    // client wrote it, is the executing client's, so what it created is that connection's.
    const tpmrmd::Bytes* client = program_.executing_command();
    if (client && header) {
      auto client_header = tpmrmd::tpm::parse_command_header(*client);
      if (client_header && client_header->code == header->code) invariants.distrust_response();
    }
    if (created && client &&
        (header->code != TPM2_CC_ContextLoad || std::equal(command.begin(), command.end(), client->begin(), client->end()))) {
      invariants.grant(program_.executing_connection(), original);
    }
    const tpmrmd::Bytes* running = program_.executing_command();
    const bool rms_own = !running || !std::equal(command.begin(), command.end(), running->begin(), running->end());
    if (header && header->code == TPM2_CC_GetCapability && rms_own) {
      // The RM's own handle lists (reconciliation, start-up): a lie there may make it forget, or flush, any
      // handle the TPM holds.
      for (TPM2_HANDLE h : tpm.loaded_objects()) invariants.excuse(h);
      for (TPM2_HANDLE h : tpm.loaded_sessions()) invariants.excuse(h);
      for (TPM2_HANDLE h : tpm.saved_sessions()) invariants.excuse(h);
    }
    if (auto parsed = tpmrmd::rm::parse_command(command, tpm.info().commands)) {
      for (TPM2_HANDLE h : parsed->handles) invariants.excuse(h);
      // A success made of a failure ends, for the RM, sessions the TPM kept (continueSession clear).
      for (const auto& auth : parsed->auths) invariants.excuse(auth.handle);
      // A FlushContext whose answer is rewritten may have emptied the slot the RM still maps (an error rc for a
      // flush that happened): what the TPM later puts there is the same lie as a rewritten returned handle.
      if (parsed->code == TPM2_CC_FlushContext && !strict_handles) {
        for (TPM2_HANDLE h : parsed->handles) invariants.lied_about(h);
      }
      if (parsed->code == TPM2_CC_ContextLoad) {
        auto context = tpmrmd::tpm::parse_context(command.subspan(parsed->parameter_offset));
        if (context) invariants.excuse(context->saved_handle);
      }
    }
    if (out && returns_handle && out->size() >= 14 && tpmrmd::tpm::response_code(*out) &&
        *tpmrmd::tpm::response_code(*out) == TPM2_RC_SUCCESS) {
      const TPM2_HANDLE claimed = tpmrmd::tpm::load_u32(*out, 10);
      if ((!created || claimed != original) && !strict_handles) invariants.lied_about(claimed);
    }
    return out;
  }

 private:
  Result<Bytes> mutate(unsigned kind, TPM2_CC code, Bytes r) {
    auto& tpm = program_.tpm();
    switch (kind) {
      case 1:  // truncated
        r.resize(script_.pick(r.size() + 1));
        return r;
      case 2: {  // extended
        Bytes more = script_.bytes(1 + script_.u8() % 8);
        r.insert(r.end(), more.begin(), more.end());
        if (script_.u8() & 1) tpmrmd::tpm::patch_size_field(r);
        return r;
      }
      case 3:  // size field
        if (r.size() >= 6) tpmrmd::tpm::store_u32(r, 2, script_.u8() & 1 ? script_.u32() : r.size() + script_.u8() % 5 - 2);
        return r;
      case 4:  // rc
        if (r.size() >= 10) tpmrmd::tpm::store_u32(r, 6, kLies[script_.pick(std::size(kLies))]);
        return r;
      case 5: {  // the returned handle
        if (r.size() < 14) return r;
        const std::uint8_t which = script_.u8();
        TPM2_HANDLE h = tpmrmd::tpm::load_u32(r, 10);
        switch (which % 6) {
          case 0: {  // an object slot that is occupied (another connection's, or one the RM maps already)
            auto loaded = tpm.loaded_objects();
            if (!loaded.empty()) h = loaded[script_.pick(loaded.size())];
            break;
          }
          case 1: {  // a session that exists
            auto loaded = tpm.loaded_sessions();
            auto saved = tpm.saved_sessions();
            loaded.insert(loaded.end(), saved.begin(), saved.end());
            if (!loaded.empty()) h = loaded[script_.pick(loaded.size())];
            break;
          }
          case 2: {  // the wrong type
            constexpr TPM2_HANDLE kWrong[] = {TPM2_RH_OWNER, 0x01000000u, 0x81000001u, 0x03000000u, 0x02000000u,
                                              0x80000000u};
            h = kWrong[script_.pick(std::size(kWrong))];
            break;
          }
          case 3:
            h += 1 + script_.u8() % 3;
            break;
          default:
            h = script_.u32();
            break;
        }
        tpmrmd::tpm::store_u32(r, 10, h);
        return r;
      }
      case 6:  // capability data (or any body): a byte set
        if (r.size() > 10) {
          const std::size_t at = 10 + script_.pick(r.size() - 10);
          r[at] = code == TPM2_CC_GetCapability && script_.u8() & 1 ? 0xFF : script_.u8();
        }
        return r;
      case 7: {  // the TPM ran it, the transport lost the answer
        constexpr int kErrors[] = {EIO, ETIME, ENODEV};
        return tpmrmd::make_error(kErrors[script_.pick(std::size(kErrors))], "hostile transport");
      }
      case 8:  // a bit anywhere
        if (!r.empty()) r[script_.pick(r.size())] ^= static_cast<std::uint8_t>(1u << (script_.u8() % 8));
        return r;
      default:  // a context blob garbled (its integrity check is the TPM's; the RM must survive its failure)
        if (code == TPM2_CC_ContextSave && r.size() > 28) r[28 + script_.pick(r.size() - 28)] ^= 0x5A;
        return r;
    }
  }

  FuzzInput& script_;
  tpmrmd::fuzz::ClientProgram& program_;
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  setenv("TSS2_LOG", "all+NONE", 1);  // tss2-mu logs every malformed buffer it is given
  trace = std::getenv("RM_FUZZ_TRACE") != nullptr;
  // Checks also the reach of objects a lying TPM pointed the RM at (known to fail: docs/fuzzing.md).
  strict_handles = std::getenv("RM_FUZZ_STRICT_HANDLES") != nullptr;
  spdlog::set_level(trace ? spdlog::level::debug : spdlog::level::off);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::size_t script_size = std::min<std::size_t>(std::size_t{data[0]} * 4, size - 1);
  FuzzInput script(data + 1, script_size);
  FuzzInput in(data + 1 + script_size, size - 1 - script_size);
  tpmrmd::fuzz::ProgramLimits limits;
  limits.trace = trace;
  limits.restarts = false;
  tpmrmd::fuzz::ClientProgram program(in, limits);
  program.tpm().set_response_hook(HostileTpm(script, program));
  program.run_steps();
  // The end is honest: what remains in the TPM is then the RM's doing or hidden by an earlier lie.
  program.tpm().set_response_hook({});
  program.finish();
  return 0;
}
