#include "util/result.h"

#include <string.h>

namespace tpmrmd {

std::string describe(const Error& error) {
  const char* name = strerrorname_np(error.code);
  std::string out = name ? name : ("errno " + std::to_string(error.code));
  if (!error.message.empty()) out += ": " + error.message;
  return out;
}

}  // namespace tpmrmd
