#!/bin/bash
# tpm2-tools, unmodified, against a real `tpmrmd --no-cuse` through tpm2-tss's swtpm: and mssim: TCTIs (unix
# sockets and mssim on loopback TCP): multi-process chains (transient objects in context files, a policy
# session in a session file, a persistent handle, an NV index), isolation between two clients, flush on exit,
# an unprivileged user in a user namespace reaching only the socket, and a clean SIGTERM.
# Usage: tpm2-tools-over-sockets.sh TPMRMD
set -euo pipefail
source "$(dirname "$0")/../support/tpmrmd-ready.sh"
tpmrmd=$1
[[ $(id -u) == 0 ]] || { echo "FAIL: needs root (it starts tpmrmd and switches users)"; exit 1; }
work=$(mktemp -d /tmp/tpmrmd-sockets-XXXXXX)
chmod 0755 "$work"
daemon=
cleanup() {
  [[ -n $daemon ]] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; echo "--- tpmrmd log:"; tail -n 40 "$work/tpmrmd.log"; exit 1; }
step() { echo "== $*"; }

# A port pair for mssim over TCP, not the simulator's well-known 2321/2322.
port=$(python3 -c 'import socket
for p in range(24100, 24400, 2):
    ok = True
    for q in (p, p + 1):
        s = socket.socket()
        try: s.bind(("127.0.0.1", q))
        except OSError: ok = False
        s.close()
    if ok: print(p); break')
user_gid=4242

"$tpmrmd" --config /dev/null --foreground --no-cuse --state-dir "$work/state" --lock-dir "$work/lock" \
  --control-socket "" --platform-auth empty --profile strict --group "$user_gid" \
  --socket "$work/swtpm.sock" --mssim "$work/mssim.sock" >"$work/tpmrmd.log" 2>&1 &
daemon=$!
why=$(tpmrmd_ready "$work/tpmrmd.log" "$daemon") || fail "$why"
for s in swtpm.sock swtpm.sock.ctrl mssim.sock mssim.sock.ctrl; do
  [[ -S $work/$s ]] || fail "$s missing"
  [[ $(stat -c %a:%g "$work/$s") == "660:$user_gid" ]] || fail "$s is $(stat -c %a:%g "$work/$s")"
done
[[ ! -e /dev/cuse ]] || echo "(this host has /dev/cuse; --no-cuse did not use it)"

# A second tpmrmd on a TCP mssim port on the same backend is not possible (one daemon per TPM): TCP is
# exercised by a second daemon with its own embedded swtpm.
"$tpmrmd" --config /dev/null --foreground --no-cuse --state-dir "$work/state-tcp" --lock-dir "$work/lock-tcp" \
  --control-socket "" --platform-auth empty --profile strict --mssim "$port" >"$work/tpmrmd-tcp.log" 2>&1 &
tcp_daemon=$!
why=$(tpmrmd_ready "$work/tpmrmd-tcp.log" "$tcp_daemon") ||
  fail "TCP $why: $(tail -5 "$work/tpmrmd-tcp.log")"
grep -q 'event=socket-tcp .*no peer credentials' "$work/tpmrmd-tcp.log" || fail "no TCP warning at start"

# The chain: every step its own process; objects travel in context files.
chain() {
  local tcti=$1 dir=$work/chain-$2 nv=$3 persistent=$4
  export TPM2TOOLS_TCTI=$tcti
  mkdir -p "$dir" && cd "$dir"
  step "chain over $tcti"
  tpm2_createprimary -Q -C o -G ecc -c primary.ctx || fail "createprimary ($tcti)"
  for i in 1 2 3 4 5; do
    tpm2_create -Q -C primary.ctx -G ecc -u k$i.pub -r k$i.priv || fail "create k$i ($tcti)"
    tpm2_load -Q -C primary.ctx -u k$i.pub -r k$i.priv -c k$i.ctx || fail "load k$i ($tcti)"
  done
  echo "message" > msg
  for i in 1 2 3 4 5; do
    tpm2_sign -Q -c k$i.ctx -g sha256 -o sig$i msg || fail "sign with k$i ($tcti)"
    tpm2_verifysignature -Q -c k$i.ctx -g sha256 -m msg -s sig$i || fail "verify k$i ($tcti)"
  done
  # A PCR policy: the sealed object opens only through a policy session carried in a session file.
  tpm2_pcrread -Q -o pcr.bin sha256:0
  tpm2_createpolicy -Q --policy-pcr -l sha256:0 -f pcr.bin -L pcr.policy
  echo "sealed secret" > secret
  tpm2_create -Q -C primary.ctx -L pcr.policy -i secret -u s.pub -r s.priv -a 'fixedtpm|fixedparent' \
    || fail "create sealed ($tcti)"
  tpm2_load -Q -C primary.ctx -u s.pub -r s.priv -c s.ctx || fail "load sealed ($tcti)"
  tpm2_startauthsession --policy-session -S session.ctx || fail "startauthsession ($tcti)"
  tpm2_policypcr -Q -S session.ctx -l sha256:0 -f pcr.bin || fail "policypcr ($tcti)"
  tpm2_unseal -p session:session.ctx -c s.ctx > unsealed || fail "unseal through the session ($tcti)"
  cmp -s secret unsealed || fail "unsealed data differs ($tcti)"
  tpm2_flushcontext session.ctx || fail "flush session ($tcti)"
  # Persistent handle
  tpm2_evictcontrol -Q -C o -c primary.ctx "$persistent" || fail "evictcontrol ($tcti)"
  tpm2_readpublic -Q -c "$persistent" || fail "readpublic persistent ($tcti)"
  tpm2_evictcontrol -Q -C o -c "$persistent" || fail "evictcontrol remove ($tcti)"
  # NV
  tpm2_nvdefine -Q "$nv" -C o -s 32 -a "ownerread|ownerwrite|authread|authwrite" || fail "nvdefine ($tcti)"
  echo -n "hello nv" | tpm2_nvwrite -Q "$nv" -C o -i - || fail "nvwrite ($tcti)"
  [[ $(tpm2_nvread "$nv" -C o -s 8) == "hello nv" ]] || fail "nvread ($tcti)"
  tpm2_nvundefine -Q "$nv" -C o || fail "nvundefine ($tcti)"
  # Every process's objects were flushed when it exited: a new client sees no transient handle.
  [[ -z $(tpm2_getcap handles-transient) ]] || fail "transient handles left after the chain ($tcti)"
  unset TPM2TOOLS_TCTI
  cd "$work"
}
chain "swtpm:path=$work/swtpm.sock" swtpm 0x1500016 0x81000100
chain "mssim:path=$work/mssim.sock" mssim-unix 0x1500017 0x81000101

# Isolation: a client holding an object (raw mssim, a CreatePrimary, then waiting) is invisible to another.
step "isolation between two clients"
mkfifo "$work/hold"
python3 - "$work/mssim.sock" "$work/hold" > "$work/holder.out" <<'PY' &
import socket, struct, sys
cmd = bytes.fromhex("80020000004300000131" "40000001" "00000009" "400000090000000000" "000400000000"
                    "001a" "0023000b000300720000" "000600800043" "0010" "0003" "0010" "00000000" "0000" "00000000")
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(struct.pack(">IBI", 8, 0, len(cmd)) + cmd)
def recv(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c: raise SystemExit("closed")
        b += c
    return b
size = struct.unpack(">I", recv(4))[0]; rsp = recv(size); recv(4)
rc, handle = struct.unpack(">I", rsp[6:10])[0], struct.unpack(">I", rsp[10:14])[0]
print("rc=%08x handle=%08x" % (rc, handle), flush=True)
open(sys.argv[2]).read()  # until the test lets go
PY
holder=$!
for _ in $(seq 300); do grep -q handle= "$work/holder.out" && break; sleep 0.1; done
grep -q 'rc=00000000 handle=80' "$work/holder.out" || fail "holder: $(cat "$work/holder.out")"
for tcti in "swtpm:path=$work/swtpm.sock" "mssim:path=$work/mssim.sock"; do
  seen=$(TPM2TOOLS_TCTI=$tcti tpm2_getcap handles-transient)
  [[ -z $seen ]] || fail "another client's handles are visible over $tcti: $seen"
done
echo > "$work/hold"
wait "$holder"

# mssim over TCP: the same chain's essentials; every TCP client is uid 65534, which --profile strict holds
# to the "everyone" class: DictionaryAttackLockReset is refused there (and allowed to root over a unix socket).
step "mssim over TCP"
(chain "mssim:host=127.0.0.1,port=$port" mssim-tcp 0x1500018 0x81000102) || exit 1
if TPM2TOOLS_TCTI="mssim:host=127.0.0.1,port=$port" tpm2_dictionarylockout -Q -c 2>/dev/null; then
  fail "a TCP client ran DictionaryAttackLockReset: it is not anonymous"
fi
TPM2TOOLS_TCTI="swtpm:path=$work/swtpm.sock" tpm2_dictionarylockout -Q -c || fail "root over unix refused"
kill "$tcp_daemon"; wait "$tcp_daemon" || true

# Container style: uid 4242 (the sockets' group), in a user namespace where it is root, reaches only the socket.
step "unprivileged user in a user namespace"
mkdir -p "$work/user" && chown "$user_gid:$user_gid" "$work/user"
as_user() {
  setpriv --reuid "$user_gid" --regid "$user_gid" --clear-groups -- \
    unshare --user --map-root-user -- env -i PATH="$PATH" HOME="$work/user" TPM2TOOLS_TCTI="$1" \
    bash -c "cd '$work/user' && $2"
}
[[ $(as_user "swtpm:path=$work/swtpm.sock" 'id -u') == 0 ]] || fail "the user namespace does not map root"
as_user "swtpm:path=$work/swtpm.sock" \
  'tpm2_createprimary -Q -C o -c p.ctx && tpm2_create -Q -C p.ctx -u k.pub -r k.priv && tpm2_load -Q -C p.ctx -u k.pub -r k.priv -c k.ctx && tpm2_getrandom 8 >/dev/null' \
  || fail "tpm2-tools as uid $user_gid in a user namespace (swtpm:)"
as_user "mssim:path=$work/mssim.sock" 'tpm2_getrandom 8 >/dev/null' || fail "uid $user_gid in a user namespace (mssim:)"
# Root inside the namespace is uid 4242 to the daemon: the strict profile's privileged commands stay refused.
if as_user "swtpm:path=$work/swtpm.sock" 'tpm2_dictionarylockout -Q -c' 2>/dev/null; then
  fail "namespace root was taken for the daemon's root"
fi
# Without the sockets' group, the socket is closed to the same user.
if setpriv --reuid 4343 --regid 4343 --clear-groups -- env TPM2TOOLS_TCTI="swtpm:path=$work/swtpm.sock" \
  tpm2_getrandom 8 --hex 2>/dev/null; then
  fail "uid 4343 outside the group reached the 0660 socket"
fi

# SIGTERM: the sockets go away, the daemon exits 0.
step "SIGTERM"
kill -TERM "$daemon"
wait "$daemon" || fail "tpmrmd exited with $? on SIGTERM"
daemon=
for s in swtpm.sock swtpm.sock.ctrl mssim.sock mssim.sock.ctrl; do
  [[ ! -e $work/$s ]] || fail "$s left after SIGTERM"
done
grep -q 'event=stopped' "$work/tpmrmd.log" || fail "no event=stopped"
echo "PASS"
