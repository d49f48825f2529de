#include "rm/tpm_handles.h"

#include <fmt/format.h>

#include "rm/handles.h"
#include "tpm/commands.h"
#include "tpm/responses.h"

namespace tpmrmd::rm {
namespace {

// More than any TPM has slots for, so a longer list means the TPM is not answering sensibly.
constexpr std::size_t kMaxHandlesPerRange = 4096;

// Calls `add` with every handle of the range that starts at `first`; returns how many there were.
template <typename Add>
RmResult<void> read_range(TpmPort& tpm, TPM2_HANDLE first, Add add) {
  std::size_t total = 0;
  TPM2_HANDLE next = first;
  const std::uint8_t type = handle_type(first);
  for (;;) {
    auto resp = tpm.transmit(tpm::make_get_capability(TPM2_CAP_HANDLES, next, TPM2_MAX_CAP_HANDLES));
    if (!resp) return RmError::transport(resp.error());
    auto page = tpm::parse_get_capability(*resp);
    if (!page || page->data.capability != TPM2_CAP_HANDLES) {
      return RmError::transport(make_error(EIO, fmt::format("GetCapability(HANDLES, 0x{:08x}) answered {}", next,
                                                            page ? "another capability" : describe(page.error()))));
    }
    const TPML_HANDLE& list = page->data.data.handles;
    TPM2_HANDLE last = next;
    bool progressed = false;
    for (std::uint32_t i = 0; i < list.count && i < TPM2_MAX_CAP_HANDLES; ++i) {
      const TPM2_HANDLE h = list.handle[i];
      // Session ranges list HMAC and policy handles alike; anything else is not what was asked for.
      const bool wanted = type == TPM2_HT_TRANSIENT ? is_transient(h) : is_session(h);
      if (!wanted) continue;
      add(h);
      ++total;
      if (session_index(h) >= session_index(last)) {
        last = h;
        progressed = true;
      }
    }
    if (total > kMaxHandlesPerRange) {
      return RmError::transport(make_error(EIO, fmt::format("the TPM lists more than {} handles", kMaxHandlesPerRange)));
    }
    if (!page->more_data) return {};
    if (!progressed || session_index(last) == 0x00FFFFFFu) {
      return RmError::transport(make_error(EIO, "the TPM answers moreData without listing further handles"));
    }
    next = (first & 0xFF000000u) | (session_index(last) + 1);
  }
}

}  // namespace

bool TpmHandles::has_session(TPM2_HANDLE h) const {
  return loaded_sessions.count(session_index(h)) || saved_sessions.count(session_index(h));
}

RmResult<TpmHandles> read_tpm_handles(TpmPort& tpm) {
  TpmHandles out;
  auto into = [](auto& sessions) { return [&sessions](TPM2_HANDLE h) { sessions.emplace(session_index(h), h); }; };
  if (auto r = read_range(tpm, TPM2_TRANSIENT_FIRST, [&](TPM2_HANDLE h) { out.objects.insert(h); }); !r) {
    return r.error();
  }
  if (auto r = read_range(tpm, TPM2_HT_LOADED_SESSION << 24, into(out.loaded_sessions)); !r) return r.error();
  if (auto r = read_range(tpm, TPM2_HT_SAVED_SESSION << 24, into(out.saved_sessions)); !r) return r.error();
  return out;
}

}  // namespace tpmrmd::rm
