// Command codes as names, both ways: for audit lines and for policy files that name commands. libtss2-rc
// decodes response codes only, so the table is ours (the codes tss2_tpm2_types.h defines).
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace tpmrmd::tpm {

// "Clear" for TPM2_CC_Clear; nullopt for a code the specification does not define (vendor codes included).
std::optional<std::string_view> cc_name(TPM2_CC code);
// cc_name, or "0x%08x" for a code without one: always printable.
std::string cc_label(TPM2_CC code);
// The code for "Clear" or "TPM2_CC_Clear" (either case); nullopt for a name the table does not know.
std::optional<TPM2_CC> cc_from_name(std::string_view name);
// Every code the table names, ascending.
std::span<const TPM2_CC> known_command_codes();

}  // namespace tpmrmd::tpm
