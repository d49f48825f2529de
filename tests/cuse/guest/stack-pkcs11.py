#!/usr/bin/python3
# tpm2-pkcs11 through PyKCS11, in one process (one TCTI connection), on a store tpm2_ptool init made: the
# token initialised (C_InitToken, C_InitPIN) in the store's empty slot, 9 EC P-256 key pairs and one RSA 2048
# generated in it (more key objects than the TPM has slots) and each used to sign twice, after all exist.
# Every signature is verified outside the TPM with the public key read from the token (python3-cryptography).
# Usage: stack-pkcs11.py MODULE TARGET COUNT_FILE   (writes the number of key pairs made to COUNT_FILE)
#   tpmrmd: all 10 are made and sign. kernel: the library keeps the token's objects loaded in its one connection
#   and the kernel's space holds 3 objects, so generating fails early (TPM_RC_OBJECT_MEMORY in the library's
#   log, CKR_GENERAL_ERROR here; after C_InitToken and the logins in the same process, at the first key pair);
#   that refusal is asserted, and any keys made before it must sign.
import hashlib
import sys

try:
    import PyKCS11
    from PyKCS11 import LowLevel as LL  # noqa: F401  (a missing C extension fails here)
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
    from cryptography.exceptions import InvalidSignature
except ImportError as e:
    print(f"FAIL: {e} (python3-pykcs11 and python3-cryptography: tools/install-deps.sh)")
    sys.exit(1)

module, target, count_file = sys.argv[1:4]
pin, so_pin = "1234", "5678"
N_EC = 9
P256_OID = bytes.fromhex("06082a8648ce3d030107")
msg = b"message signed through PKCS#11 by the TPM"
digest = hashlib.sha256(msg).digest()


def fail(m):
    print(f"FAIL [{target}]: {m}", flush=True)
    sys.exit(1)


lib = PyKCS11.PyKCS11Lib()
lib.load(module)
slots = lib.getSlotList(tokenPresent=True)
if len(slots) != 1 or lib.getTokenInfo(slots[0]).flags & PyKCS11.CKF_TOKEN_INITIALIZED:
    fail(f"expected the one empty slot of a new store, found {len(slots)} slots")
lib.initToken(slots[0], so_pin, "stack".ljust(32))
session = lib.openSession(slots[0], PyKCS11.CKF_SERIAL_SESSION | PyKCS11.CKF_RW_SESSION)
session.login(so_pin, user_type=PyKCS11.CKU_SO)
session.initPin(pin)
session.logout()
session.login(pin)


def public_of(pub):
    ktype = session.getAttributeValue(pub, [PyKCS11.CKA_KEY_TYPE])[0]
    if ktype == PyKCS11.CKK_EC:
        point = bytes(session.getAttributeValue(pub, [PyKCS11.CKA_EC_POINT], allAsBinary=True)[0])
        if point[0] == 0x04 and len(point) == 67:  # DER OCTET STRING around the uncompressed point
            point = point[2:]
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    n, e = session.getAttributeValue(pub, [PyKCS11.CKA_MODULUS, PyKCS11.CKA_PUBLIC_EXPONENT], allAsBinary=True)
    return rsa.RSAPublicNumbers(int.from_bytes(bytes(e), "big"), int.from_bytes(bytes(n), "big")).public_key()


def sign_and_verify(label, priv, pub):
    key = public_of(pub)
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            raw = bytes(session.sign(priv, digest, PyKCS11.Mechanism(PyKCS11.CKM_ECDSA)))
            r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
            key.verify(utils.encode_dss_signature(r, s), msg, ec.ECDSA(hashes.SHA256()))
        else:
            sig = bytes(session.sign(priv, msg, PyKCS11.Mechanism(PyKCS11.CKM_SHA256_RSA_PKCS)))
            key.verify(sig, msg, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        fail(f"{label}: the signature does not verify with the token's public key")


def find(cls, label):
    objs = session.findObjects([(PyKCS11.CKA_CLASS, cls), (PyKCS11.CKA_LABEL, label)])
    if len(objs) != 1:
        fail(f"{label}: {len(objs)} objects of class {cls} in the store")
    return objs[0]


labels = [f"ec{i}" for i in range(N_EC)] + ["rsa0"]
keys = []
for i, label in enumerate(labels):
    common = [(PyKCS11.CKA_TOKEN, PyKCS11.CK_TRUE), (PyKCS11.CKA_LABEL, label), (PyKCS11.CKA_ID, (i + 1,))]
    if label.startswith("ec"):
        pub_t = common + [(PyKCS11.CKA_CLASS, PyKCS11.CKO_PUBLIC_KEY), (PyKCS11.CKA_KEY_TYPE, PyKCS11.CKK_EC),
                          (PyKCS11.CKA_VERIFY, PyKCS11.CK_TRUE), (PyKCS11.CKA_EC_PARAMS, P256_OID)]
        mech = PyKCS11.MechanismECGENERATEKEYPAIR
    else:
        pub_t = common + [(PyKCS11.CKA_CLASS, PyKCS11.CKO_PUBLIC_KEY), (PyKCS11.CKA_KEY_TYPE, PyKCS11.CKK_RSA),
                          (PyKCS11.CKA_VERIFY, PyKCS11.CK_TRUE), (PyKCS11.CKA_MODULUS_BITS, 2048),
                          (PyKCS11.CKA_PUBLIC_EXPONENT, (1, 0, 1))]
        mech = PyKCS11.MechanismRSAGENERATEKEYPAIR
    priv_t = common + [(PyKCS11.CKA_CLASS, PyKCS11.CKO_PRIVATE_KEY), (PyKCS11.CKA_SIGN, PyKCS11.CK_TRUE),
                       (PyKCS11.CKA_PRIVATE, PyKCS11.CK_TRUE), (PyKCS11.CKA_SENSITIVE, PyKCS11.CK_TRUE)]
    try:
        pub, priv = session.generateKeyPair(pub_t, priv_t, mecha=mech)
    except PyKCS11.PyKCS11Error as e:
        if target != "kernel":
            fail(f"generating key pair {i + 1}: {e}")
        print(f"    kernel: key pair {i + 1} refused as expected ({e}): the kernel's space is full", flush=True)
        break
    keys.append((label, priv, pub))
if target == "kernel" and len(keys) == len(labels):
    fail("kernel: all 10 key pairs were made; the kernel's 3-object space should have refused one")
if not keys and target != "kernel":
    fail("no key pair could be made")
open(count_file, "w").write(f"{len(keys)}\n")
# Every key used after all of them exist, twice round: each sign needs its key in the TPM.
for _ in range(2):
    for label, priv, pub in keys:
        sign_and_verify(label, priv, pub)
# Found again by label, as another process would.
for label, _, _ in keys:
    find(PyKCS11.CKO_PRIVATE_KEY, label)
    find(PyKCS11.CKO_PUBLIC_KEY, label)
print(f"    token initialised; {len(keys)} key pair(s) generated in one session, each signed twice, all verified "
      "outside the TPM", flush=True)
session.logout()
session.closeSession()
