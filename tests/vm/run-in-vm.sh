#!/usr/bin/env bash
# Runs a command inside a throw-away QEMU guest whose kernel has CUSE (and, on request, a TPM device in front
# of a fresh swtpm), with the host's / mounted read-only over 9p, and exits with the command's status.
#
#   run-in-vm.sh [--tpm none|tis|crb] [--no-tpm-driver] [--cache DIR] [--timeout S] [--mem MB]
#                [--env NAME=VALUE]... -- COMMAND [ARGS...]
#
# Writable places in the guest: /tmp and /run (tmpfs) and $TPMRMD_VM_RESULTS (a directory shared with the host,
# removed afterwards). See docs/vm-harness.md.
set -euo pipefail

tpm=none no_driver=0 timeout=600 mem=1024
cache=${TPMRMD_VM_CACHE:-${HOME:-/root}/.cache/tpmrmd-vm}
envs=()
usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
while (($#)); do
  case $1 in
    --tpm) tpm=$2; shift 2 ;;
    --no-tpm-driver) no_driver=1; shift ;;
    --cache) cache=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    --mem) mem=$2; shift 2 ;;
    --env) envs+=("$2"); shift 2 ;;
    -h|--help) usage 0 ;;
    --) shift; break ;;
    *) echo "run-in-vm: unknown option '$1'" >&2; usage ;;
  esac
done
(($#)) || { echo "run-in-vm: no command given" >&2; usage; }
case $tpm in none|tis|crb) ;; *) echo "run-in-vm: --tpm takes none, tis or crb, not '$tpm'" >&2; exit 2 ;; esac

if [[ $tpm == none && -c /dev/cuse && -z ${TPMRMD_VM_FORCE:-} ]]; then
  echo "run-in-vm: this host has /dev/cuse; running the command directly, without a VM" >&2
  export TPMRMD_VM_RESULTS=$(mktemp -d) HOME=${HOME:-/tmp}
  for e in "${envs[@]}"; do export "${e?}"; done
  "$@"; rc=$?
  rm -rf "$TPMRMD_VM_RESULTS"
  exit $rc
fi

for tool in qemu-system-x86_64 busybox cpio depmod dpkg-deb apt-get; do
  command -v "$tool" >/dev/null || {
    echo "run-in-vm: '$tool' not found; install qemu-system-x86 busybox-static cpio kmod (tools/install-deps.sh)" >&2
    exit 1
  }
done
[[ $tpm == none ]] || command -v swtpm >/dev/null || { echo "run-in-vm: swtpm not found" >&2; exit 1; }

# --- the guest kernel and initramfs, prepared once per kernel version -------------------------------------
modules=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci netfs fscache 9pnet
         9pnet_virtio 9p fuse cuse
         # dm-crypt over a loop device and the kernel's crypto API for userspace: LUKS images (cryptenroll test)
         loop dm-mod dm-crypt ecb xts af_alg algif_skcipher)
mkdir -p "$cache"
prepare() {
  local pkg
  pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/.*Depends: \(linux-image-[0-9].*\)$/\1/p' | head -1)
  if [[ -z $pkg ]]; then
    apt-get update -qq >&2 || true
    pkg=$(apt-cache depends linux-image-amd64 | sed -n 's/.*Depends: \(linux-image-[0-9].*\)$/\1/p' | head -1)
  fi
  [[ -n $pkg ]] || { echo "run-in-vm: cannot resolve the Debian kernel package (apt-cache depends linux-image-amd64)" >&2; return 1; }
  local kdir=$cache/$pkg stamp
  # Rebuilt whenever this script (which writes the guest's init) changes.
  stamp=$(sha256sum "$0" | cut -c1-16)
  if [[ -f $kdir/ready && $(cat "$kdir/ready") == "$stamp" ]]; then echo "$kdir"; return; fi
  echo "run-in-vm: preparing $pkg in $kdir (once)" >&2
  rm -rf "$kdir" && mkdir -p "$kdir/dl" "$kdir/initramfs"/{bin,lib/modules,proc,sys,dev,newroot,mnt}
  (cd "$kdir/dl" && { apt-get download "$pkg" >/dev/null 2>&1 || { apt-get update -qq && apt-get download "$pkg"; }; } >&2)
  dpkg-deb -x "$kdir"/dl/*.deb "$kdir/dl/x"
  cp "$kdir"/dl/x/boot/vmlinuz-* "$kdir/vmlinuz"
  local m path
  for m in "${modules[@]}"; do
    path=$(find "$kdir/dl/x/lib/modules" -name "$m.ko" | head -1)
    [[ -n $path ]] || { echo "run-in-vm: module $m missing from $pkg" >&2; return 1; }
    cp "$path" "$kdir/initramfs/lib/modules/"
  done
  cp "$(command -v busybox)" "$kdir/initramfs/bin/busybox"
  cat > "$kdir/initramfs/init" <<INIT
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in ${modules[*]}; do insmod /lib/modules/\$m.ko || echo "vm-init: insmod \$m failed"; done
r=/newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 hostroot \$r || { echo "vm-init: cannot mount host root"; poweroff -f; }
# The guest's /tmp is a private tmpfs; host directories under /tmp that the command needs (its working
# directory, its arguments) are bound back into it, read-only like the rest of the host.
mkdir -p /hosttmp; mount --bind \$r/tmp /hosttmp
mount -t tmpfs tmpfs \$r/tmp; mount -t tmpfs tmpfs \$r/run
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 results /mnt 2>/dev/null || mkdir -p /mnt
if [ -f /mnt/tmp-binds ]; then
  while read -r name; do mkdir -p "\$r/tmp/\$name"; mount --bind "/hosttmp/\$name" "\$r/tmp/\$name"; done < /mnt/tmp-binds
fi
umount /mnt 2>/dev/null
mount -t proc proc \$r/proc; mount -t sysfs sys \$r/sys; mount -t devtmpfs dev \$r/dev
mkdir -p \$r/dev/pts \$r/dev/shm \$r/tmp/vm-results; mount -t devpts devpts \$r/dev/pts; mount -t tmpfs tmpfs \$r/dev/shm
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 results \$r/tmp/vm-results || { echo "vm-init: cannot mount results"; poweroff -f; }
ip link set lo up
chroot \$r /bin/bash /tmp/vm-results/run.sh
echo \$? > \$r/tmp/vm-results/status
sync
poweroff -f
INIT
  chmod +x "$kdir/initramfs/init"
  (cd "$kdir/initramfs" && find . | cpio -o -H newc --quiet | gzip -1 > "$kdir/initrd.gz")
  rm -rf "$kdir/dl"
  echo "$stamp" > "$kdir/ready"
  echo "$kdir"
}
kdir=$(
  exec 9>"$cache/.lock"
  flock 9
  prepare
)

# --- one run ------------------------------------------------------------------------------------------------
work=$(mktemp -d)
results=$work/results
mkdir -p "$results"
swtpm_pid=
cleanup() {
  [[ -n $swtpm_pid ]] && kill "$swtpm_pid" 2>/dev/null && wait "$swtpm_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

{
  printf 'cd %q || exit 127\n' "$PWD"
  printf 'export PATH=%q HOME=/tmp TPMRMD_VM_RESULTS=/tmp/vm-results TPMRMD_IN_VM=1\n' "$PATH"
  for e in "${envs[@]}"; do printf 'export %q\n' "$e"; done
  printf 'exec'; printf ' %q' "$@"; printf '\n'
} > "$results/run.sh"
# Host paths under /tmp that the guest must see (its private /tmp hides the host's).
for p in "$PWD" "$@"; do
  [[ $p == /tmp/?* ]] || continue
  top=${p#/tmp/}; top=${top%%/*}
  [[ -e /tmp/$top ]] && echo "$top"
done | sort -u > "$results/tmp-binds"

append="console=ttyS0 quiet loglevel=3 panic=-1"
qemu_tpm=()
if [[ $tpm != none ]]; then
  mkdir -p "$work/swtpm"
  swtpm socket --tpm2 --ctrl type=unixio,path="$work/swtpm/ctrl.sock" --tpmstate dir="$work/swtpm" \
    --log file="$work/swtpm/log" &
  swtpm_pid=$!
  for _ in $(seq 200); do [[ -S $work/swtpm/ctrl.sock ]] && break; sleep 0.05; done
  device=tpm-tis; [[ $tpm == crb ]] && device=tpm-crb
  qemu_tpm=(-chardev "socket,id=chrtpm,path=$work/swtpm/ctrl.sock" -tpmdev emulator,id=tpm0,chardev=chrtpm
            -device "$device,tpmdev=tpm0")
  if ((no_driver)); then
    [[ $tpm == tis ]] && append+=" initcall_blacklist=init_tis"
    [[ $tpm == crb ]] && append+=" initcall_blacklist=crb_acpi_driver_init"
  fi
fi

SECONDS=0
set +e
timeout -k 5 "$timeout" qemu-system-x86_64 -accel tcg -cpu max -m "$mem" -smp 2 \
  -display none -monitor none -serial stdio -no-reboot -net none \
  -kernel "$kdir/vmlinuz" -initrd "$kdir/initrd.gz" -append "$append" \
  -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
  -virtfs "local,path=$results,mount_tag=results,security_model=none,multidevs=remap" \
  "${qemu_tpm[@]}" </dev/null
qemu_rc=$?
set -e
elapsed=$SECONDS
if ((qemu_rc == 124 || qemu_rc == 137)); then
  echo "run-in-vm: the guest did not finish within ${timeout}s; killed" >&2
  exit 124
fi
if [[ ! -s $results/status ]]; then
  echo "run-in-vm: the guest ended without a command status (qemu exit $qemu_rc): boot or init failed" >&2
  exit 125
fi
status=$(cat "$results/status")
echo "run-in-vm: command exited $status; guest run took ${elapsed}s" >&2
exit "$status"
