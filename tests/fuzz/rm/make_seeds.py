#!/usr/bin/env python3
"""Writes the seed corpora of rm_clients_fuzzer and rm_hostile_tpm_fuzzer.

Each seed is a program in the targets' input format (tests/fuzz/rm/fuzz_input.h): three configuration bytes,
then steps. The workloads are the ones the RM suites run (keys and sessions on a few connections, eviction,
client context saves and loads across connections, sequences, capabilities, hierarchy control), written as
raw-bytes steps built here from the TPM 2.0 wire format, plus a few programs of structured steps. Handles are
the ones the RM hands out (virtual handles ascend from 0x80000000 per connection; the fake TPM's sessions
take the lowest free index), so the programs replay meaningfully. Hostile seeds prefix a mutation script.

Usage: make_seeds.py [corpus-root]   (default: tests/fuzz/corpus next to this file's directory)
"""
import os
import struct
import sys

OPEN, CLOSE, COMMAND, RAW, MUTATE, FAULT = 0, 1, 2, 5, 6, 7

RH_OWNER, RH_NULL, RH_PLATFORM, RS_PW = 0x40000001, 0x40000007, 0x4000000C, 0x40000009
V0 = 0x80000000
HMAC0, POLICY0 = 0x02000000, 0x03000000


def cmd(code, handles=(), auths=(), params=b""):
    body = b"".join(struct.pack(">I", h) for h in handles)
    if auths:
        area = b"".join(struct.pack(">IHBH", h, 0, attrs, 0) for h, attrs in auths)
        body += struct.pack(">I", len(area)) + area
    body += params
    tag = 0x8002 if auths else 0x8001
    return struct.pack(">HII", tag, 10 + len(body), code) + body


def tpm2b(b):
    return struct.pack(">H", len(b)) + b


def ecc_public(unique):
    # TPMT_PUBLIC: ECC, SHA-256, sign|fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth, NULL symmetric,
    # ECDSA/SHA-256, P-256, NULL kdf, unique x = one byte, y empty.
    area = struct.pack(">HHI", 0x0023, 0x000B, 0x00040072) + tpm2b(b"")
    area += struct.pack(">HHHHH", 0x0010, 0x0018, 0x000B, 0x0003, 0x0010)
    area += tpm2b(bytes([unique])) + tpm2b(b"")
    return tpm2b(area)


def creation_params(unique):
    return tpm2b(struct.pack(">HH", 0, 0)) + ecc_public(unique) + tpm2b(b"") + struct.pack(">I", 0)


def create_primary(unique=0, hierarchy=RH_OWNER):
    return cmd(0x131, [hierarchy], [(RS_PW, 1)], creation_params(unique))


def create(parent, unique=0):
    return cmd(0x153, [parent], [(RS_PW, 1)], creation_params(unique))


def read_public(h):
    return cmd(0x173, [h])


def start_session(policy=True):
    return cmd(0x176, [RH_NULL, RH_NULL], (),
               tpm2b(b"\x5a" * 16) + tpm2b(b"") + bytes([1 if policy else 0]) + struct.pack(">HH", 0x0010, 0x000B))


def policy_get_digest(s):
    return cmd(0x189, [s])


def policy_auth_value(s):
    return cmd(0x16B, [s])


def context_save(h):
    return cmd(0x162, [h])


def flush(h):
    return cmd(0x165, (), (), struct.pack(">I", h))


def get_capability(cap, prop, count, auths=()):
    return cmd(0x17A, (), auths, struct.pack(">III", cap, prop, count))


def hash_sequence_start():
    return cmd(0x186, (), (), tpm2b(b"") + struct.pack(">H", 0x000B))


def sequence_update(h, data=b"abc"):
    return cmd(0x15C, [h], [(RS_PW, 1)], tpm2b(data))


def sequence_complete(h):
    return cmd(0x13E, [h], [(RS_PW, 1)], tpm2b(b"xyz") + struct.pack(">I", RH_NULL))


def hierarchy_control(auth, enable, state):
    return cmd(0x121, [auth], [(RS_PW, 1)], struct.pack(">IB", enable, state))


def get_random(n, auths=()):
    return cmd(0x17B, (), auths, struct.pack(">H", n))


def raw(conn, command, fix_size=False):
    return bytes([RAW, conn]) + struct.pack(">H", len(command)) + command + bytes([1 if fix_size else 0])


def program(config, steps):
    return bytes(config) + b"".join(steps)


O = bytes([OPEN])


def seeds():
    # Config: byte 0 = fake TPM (slots, gap, ...), byte 1 = RM options, byte 2 = gap / rc mode.
    three = (0x0A, 0x00, 0x00)  # 3 objects, 3 sessions
    small = (0x15, 0x00, 0x04)  # 2 objects, 2 sessions, gap 8
    tight = (0x10, 0x55, 0x03)  # 1 object, 1 session, gap 7, per-connection limits 1/1, 0 abandoned...
    yield "keys_evicted_lru", program(three, [O, O] + [raw(i % 2, create_primary(i)) for i in range(5)] +
                                      [raw(0, read_public(V0)), raw(1, read_public(V0 + 1)), raw(0, read_public(V0 + 2))])
    yield "sessions_evicted", program(three, [O, O] + [raw(i % 2, start_session(i % 2 == 0)) for i in range(5)] +
                                      [raw(0, policy_get_digest(POLICY0)), raw(1, policy_auth_value(POLICY0 + 2))])
    yield "client_save_load_across", program(three, [O, raw(0, start_session()), raw(0, policy_auth_value(POLICY0)),
                                                     raw(0, context_save(POLICY0)), bytes([CLOSE, 0]), O,
                                                     bytes([COMMAND, 0, 9, 0, 0])])
    yield "object_blob_shared", program(three, [O, O, raw(0, create_primary(1)), raw(0, context_save(V0)),
                                                bytes([COMMAND, 1, 9, 0, 0]), raw(1, read_public(V0))])
    yield "create_load", program(three, [O, raw(0, create_primary(2)), raw(0, create(V0, 3)),
                                         bytes([COMMAND, 0, 3, 0, 0, 0, 0, 0])])
    yield "sequence", program(small, [O, raw(0, hash_sequence_start()), raw(0, sequence_update(V0)),
                                      raw(0, create_primary(4)), raw(0, create_primary(5)),
                                      raw(0, sequence_update(V0, b"more")), raw(0, sequence_complete(V0))])
    yield "capabilities", program(three, [O, raw(0, create_primary(6)), raw(0, start_session()),
                                          raw(0, get_capability(1, V0, 1)), raw(0, get_capability(1, V0 + 1, 1)),
                                          raw(0, get_capability(1, HMAC0, 8)), raw(0, get_capability(1, POLICY0, 8)),
                                          raw(0, get_capability(1, 0x40000000, 8)),
                                          raw(0, get_capability(6, 0x100, 64)),
                                          raw(0, get_capability(6, 0x20E, 8, [(POLICY0, 1)]))])
    yield "hierarchy_disable_enable", program(three, [O, O, raw(0, create_primary(7)), raw(1, create_primary(8)),
                                                      raw(1, hierarchy_control(RH_OWNER, RH_OWNER, 0)),
                                                      raw(0, read_public(V0)),
                                                      raw(1, hierarchy_control(RH_PLATFORM, RH_OWNER, 1)),
                                                      raw(0, read_public(V0))])
    yield "flushes", program(three, [O, raw(0, create_primary(9)), raw(0, start_session(False)),
                                     raw(0, context_save(HMAC0)), raw(0, flush(HMAC0)), raw(0, flush(V0)),
                                     raw(0, flush(V0)), raw(0, flush(0x81000000))])
    yield "gap_small", program(small, [O, O] + [raw(i % 2, start_session()) for i in range(3)] +
                               [raw(i % 2, policy_get_digest(POLICY0 + (i % 3))) for i in range(12)])
    yield "limits_tight", program(tight, [O, raw(0, create_primary(10)), raw(0, create_primary(11)),
                                          raw(0, start_session()), raw(0, start_session()),
                                          raw(0, context_save(POLICY0)), bytes([CLOSE, 0]), O, O,
                                          bytes([COMMAND, 0, 9, 0, 0]), bytes([COMMAND, 1, 9, 0, 0])])
    yield "end_session_in_auth", program(three, [O, raw(0, start_session(False)),
                                                 raw(0, get_random(8, [(HMAC0, 0)])),
                                                 raw(0, start_session(False)),
                                                 raw(0, get_capability(6, 0x20E, 4, [(HMAC0, 0)]))])
    yield "faults", program(three, [O, raw(0, create_primary(12)), bytes([FAULT, 2]), raw(0, read_public(V0)),
                                    bytes([FAULT, 3]), raw(0, read_public(V0)), raw(0, create_primary(13)),
                                    bytes([FAULT, 0, 0, 0]), raw(0, create_primary(14)), bytes([FAULT, 4, 1, 1]),
                                    raw(0, create_primary(15)), raw(0, start_session())])
    yield "garbage", program(three, [O, raw(0, b"\x80\x01\x00\x00\x00\x0a\x00\x00\x01\xfe"),
                                     raw(0, b"\x80\x02\x00\x00\x00\x0e\x00\x00\x01\x7b\x00\x00\x00\x00", True),
                                     raw(0, create_primary(16)[:20], True), bytes([MUTATE, 0, 0, 3, 0, 0, 1])])


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "corpus")
    clients = os.path.join(root, "rm_clients_fuzzer")
    hostile = os.path.join(root, "rm_hostile_tpm_fuzzer")
    os.makedirs(clients, exist_ok=True)
    os.makedirs(hostile, exist_ok=True)
    # Mutation scripts: one byte per TPM command (0 passes it through; 1..9 pick a mutation, see the target).
    scripts = {
        "pass": b"",
        "truncate": bytes([0, 0, 1, 5, 0, 1, 0]),
        "handles": bytes([0, 5, 0, 0, 5, 1, 0, 5, 2, 0, 0, 5, 3, 1]),
        "rc": bytes([0, 4, 1, 0, 4, 2, 0, 4, 0, 0, 4, 7]),
        "transport": bytes([0, 0, 7, 0, 0, 0, 7, 1]),
        "blobs": bytes([0, 9, 0, 9, 0, 6, 3, 1, 8, 4, 0, 2, 3, 1, 2, 3, 1]),
    }
    for name, data in seeds():
        with open(os.path.join(clients, name), "wb") as f:
            f.write(data)
    for i, (name, data) in enumerate(seeds()):
        script_name = list(scripts)[i % len(scripts)]
        script = scripts[script_name]
        script += bytes((-len(script)) % 4)
        with open(os.path.join(hostile, f"{name}_{script_name}"), "wb") as f:
            f.write(bytes([len(script) // 4]) + script + data)


if __name__ == "__main__":
    main()
