#!/usr/bin/env bash
# Installs what tpmrmd needs to build, run and test on Debian 12. Idempotent: packages already present are
# skipped without touching the network.
set -euo pipefail

packages=(
  # build
  meson ninja-build pkg-config g++ python3
  libfuse3-dev libtss2-dev libssl-dev libspdlog-dev libfmt-dev libcli11-dev nlohmann-json3-dev
  libsystemd-dev libgtest-dev libgmock-dev libbenchmark-dev
  # the man page (man/*.scd)
  scdoc
  # run: the embedded TPM, the CUSE helper programs, TPM client tools
  swtpm swtpm-tools fuse3 tpm2-tools
  # the VM test harness (tests/vm): a guest kernel with CUSE, booted under TCG
  qemu-system-x86 busybox-static cpio kmod procps iproute2
  # the side-by-side benchmark (tools/vm-bench.sh): tpm2-abrmd on a session bus, its client TCTI, per-command
  # syscall counts, the plot
  tpm2-abrmd libtss2-tcti-tabrmd0 dbus strace gnuplot-nox
  # the --capture test: Wireshark's TPM 2.0 dissector reads the daemon's pcapng
  tshark
  # guest tests: JSON checks of tpmrmctl's output; systemd-cryptenroll and libcryptsetup's TPM2 token on a LUKS image
  jq systemd cryptsetup-bin
  # client stacks through the node and the sockets (tests/cuse/guest/stack-*.sh, docs/client-stacks.md): the
  # OpenSSL 3 provider, PKCS#11 (token, its tool, OpenSC's pkcs11-tool, PyKCS11), clevis's tpm2 pin, tpm2-pytss
  tpm2-openssl libtpm2-pkcs11-1 libtpm2-pkcs11-tools opensc python3-pykcs11 clevis clevis-tpm2
  python3-tpm2-pytss python3-cryptography
  # fuzzing (tools/run-fuzz.sh): clang with libFuzzer and the sanitizer runtimes, llvm-profdata/llvm-cov
  clang libclang-rt-14-dev llvm
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

sudo=""
if ((EUID != 0)); then
  command -v sudo >/dev/null || { echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo=sudo
fi
echo "install-deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
