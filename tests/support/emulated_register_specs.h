// Makes "tis:emulated,...,backend=SPEC" and "crb:emulated,...,backend=SPEC" backend specs work in the process
// that calls it (tests, benches): the driver factory then builds an emulated device around the backend.
#pragma once

namespace tpmrmd::chip {

void install_emulated_register_specs();

}  // namespace tpmrmd::chip
