// Backend spec strings, after the TCTI convention "kind:options": `swtpm:host=H,port=P`,
// `swtpm:path=SOCK[,ctrl=CTRLSOCK]`, `device:/dev/tpm0`, ... Errors name the part that is wrong.
#pragma once

#include <map>
#include <set>
#include <string>
#include <string_view>

#include "util/result.h"

namespace tpmrmd::chip {

struct BackendSpec {
  std::string kind;     // "swtpm", "device", ...
  std::string options;  // everything after the first ':'
  std::string text;     // the whole spec, for messages
};

Result<BackendSpec> split_backend_spec(std::string_view spec);

// Parses "k=v,k=v" where every key must be in `allowed`. Repeated keys and empty values are errors.
Result<std::map<std::string, std::string>> parse_key_values(const BackendSpec& spec,
                                                            const std::set<std::string>& allowed);

// A decimal or 0x-hex unsigned number no larger than `max`; `what` names it in the error.
Result<unsigned long long> parse_number(const BackendSpec& spec, std::string_view what, std::string_view text,
                                        unsigned long long max);

}  // namespace tpmrmd::chip
