// One spelling for a path that may not exist yet: the longest existing prefix resolved by realpath(3), the
// rest appended as given ("/run/../run/x/new" and "/run/x/new" agree). Relative paths are made absolute first.
#pragma once

#include <string>

namespace tpmrmd::daemon {

std::string canonical_path(const std::string& path);

// `identity` with its path part (from the first '/') canonicalised, so two spellings of one TPM's endpoint
// name one lock: "swtpm:unix:/tmp//a/../b/swtpm.sock" -> "swtpm:unix:/tmp/b/swtpm.sock".
std::string canonical_identity(const std::string& identity);

}  // namespace tpmrmd::daemon
