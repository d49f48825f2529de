// The command policy file (JSON): a profile to start from, the group of the group class, and per class the
// commands to allow or deny, by TPM2_CC name ("Clear", "TPM2_CC_Clear") or number (4711, "0x20000001").
//
//   {
//     "profile": "strict",
//     "group": "tss",
//     "classes": {
//       "group": { "allow": ["NV_DefineSpace", "NV_UndefineSpace"] },
//       "other": { "deny": ["EvictControl"] },
//       "root":  { "deny": ["FieldUpgradeStart", "FieldUpgradeData"] }
//     }
//   }
//
// "allow" is a list, or "all" for every command code; an allow entry lifts an earlier deny of the profile's,
// and "deny" wins over both. Unknown keys, names and values are errors that say where they are.
#pragma once

#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "rm/command_policy.h"
#include "util/result.h"

namespace tpmrmd::rm {

// A group name (or a decimal gid) to its gid; nullopt if there is no such group.
using GroupResolver = std::function<std::optional<gid_t>(std::string_view)>;
std::optional<gid_t> resolve_group(std::string_view name);  // getgrnam_r, then a decimal gid

// `source` names the text in error messages (the file's path).
Result<CommandPolicy> parse_command_policy(std::string_view text, std::string_view source,
                                           const GroupResolver& groups = resolve_group);
Result<CommandPolicy> load_command_policy(const std::string& path, const GroupResolver& groups = resolve_group);

// One command as a policy names it: a TPM2_CC name or a number (decimal or 0x hex).
std::optional<TPM2_CC> parse_command_code(std::string_view text);

}  // namespace tpmrmd::rm
