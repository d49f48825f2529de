#!/usr/bin/python3
# tpm2-pytss (ESAPI) through one TCTI, in one process (one RM connection): a salted, encrypted HMAC session
# (parameter encryption both ways through the RM), a PCR policy session held across many other commands, and
# more loaded objects than the TPM has slots. Signatures are verified outside the TPM (python3-cryptography).
# Usage: stack-pytss.py [--ctl DIR] TARGET=TCTI...   (TARGET: kernel or tpmrmd)
#   kernel: the kernel's /dev/tpmrm0 keeps at most 3 objects per connection; loading a 4th must fail and does.
#   tpmrmd: no such limit; 8 keys and the primary are loaded at once and each signs.
# The targets run one after the other in this one interpreter (its start is the expensive part in the VM). With
# --ctl, before each target but the first it writes a line to the fifo DIR/ask and waits (at most 120 s) for one
# on DIR/go: the caller starts that target's RM in between, so no two RMs use the TPM at once.
import hashlib
import os
import select
import sys

try:
    from tpm2_pytss import ESAPI, TSS2_Exception
    from tpm2_pytss.constants import ESYS_TR, TPM2_ALG, TPM2_SE, TPMA_SESSION, TPM2_ST, TPM2_RH, TPM2_RC
    from tpm2_pytss.types import (TPM2B_PUBLIC, TPM2B_SENSITIVE_CREATE, TPM2B_SENSITIVE_DATA, TPMT_SYM_DEF,
                                  TPMT_SIG_SCHEME, TPMT_TK_HASHCHECK, TPML_PCR_SELECTION, TPML_DIGEST_VALUES,
                                  TPMT_HA, TPMA_OBJECT)
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, utils
    from cryptography.exceptions import InvalidSignature
except ImportError as e:
    print(f"FAIL: {e} (python3-tpm2-pytss and python3-cryptography: tools/install-deps.sh)")
    sys.exit(1)

args = sys.argv[1:]
ctl = None
if args[:1] == ["--ctl"]:
    ctl, args = args[1], args[2:]
target = "setup"
PCR = 23  # resettable by nobody else here; its current value is what the policy binds to


def fail(msg):
    print(f"FAIL [{target}]: {msg}", flush=True)
    sys.exit(1)


def step(msg):
    print(f"--- [{target}] {msg}", flush=True)


aes128cfb = TPMT_SYM_DEF(algorithm=TPM2_ALG.AES)
aes128cfb.keyBits.aes = 128
aes128cfb.mode.aes = TPM2_ALG.CFB
ecdsa = TPMT_SIG_SCHEME(scheme=TPM2_ALG.ECDSA)
ecdsa.details.any.hashAlg = TPM2_ALG.SHA256
null_ticket = TPMT_TK_HASHCHECK(tag=TPM2_ST.HASHCHECK, hierarchy=TPM2_RH.NULL)
pcr_sel = TPML_PCR_SELECTION.parse(f"sha256:{PCR}")


def verify(pub, sig, msg):
    """The TPM's ECDSA signature checked with the public key alone, outside the TPM."""
    key = serialization.load_pem_public_key(pub.publicArea.to_pem())
    der = utils.encode_dss_signature(int.from_bytes(bytes(sig.signature.ecdsa.signatureR), "big"),
                                     int.from_bytes(bytes(sig.signature.ecdsa.signatureS), "big"))
    try:
        key.verify(der, msg, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def pcr_policy(ectx, session_type):
    s = ectx.start_auth_session(ESYS_TR.NONE, ESYS_TR.NONE, session_type, TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL),
                                TPM2_ALG.SHA256)
    _, _, values = ectx.pcr_read(pcr_sel)
    ectx.policy_pcr(s, hashlib.sha256(b"".join(bytes(d) for d in values)).digest(), pcr_sel)
    return s


def run(tcti):
    with ESAPI(tcti) as ectx:
        step("salt key: an ECC P-256 storage primary")
        primary, _, _, _, _ = ectx.create_primary(TPM2B_SENSITIVE_CREATE(), "ecc256:aes128cfb")

        step("salted HMAC session, encrypt + decrypt: parameters cross the RM encrypted both ways")
        hmac = ectx.start_auth_session(primary, ESYS_TR.NONE, TPM2_SE.HMAC, aes128cfb, TPM2_ALG.SHA256)
        ectx.trsess_set_attributes(hmac, TPMA_SESSION.CONTINUESESSION | TPMA_SESSION.DECRYPT | TPMA_SESSION.ENCRYPT)
        secret = b"sealed through an encrypted session"
        sens = TPM2B_SENSITIVE_CREATE()
        sens.sensitive.data = TPM2B_SENSITIVE_DATA(secret)
        sens.sensitive.userAuth = b"object-auth"
        spub = TPM2B_PUBLIC.parse("keyedhash", objectAttributes=TPMA_OBJECT.FIXEDTPM | TPMA_OBJECT.FIXEDPARENT
                                  | TPMA_OBJECT.USERWITHAUTH)
        priv, pub, _, _, _ = ectx.create(primary, sens, spub, session1=hmac)  # inSensitive encrypted
        sealed = ectx.load(primary, priv, pub, session1=hmac)
        ectx.tr_set_auth(sealed, b"object-auth")
        if bytes(ectx.unseal(sealed, session1=hmac)) != secret:  # outData encrypted, HMAC-checked by ESYS
            fail("unseal through the salted session returned other data")
        ectx.flush_context(sealed)
        randoms = {bytes(ectx.get_random(32, session1=hmac)) for _ in range(4)}
        if len(randoms) != 4 or any(len(r) != 32 for r in randoms):
            fail("encrypted GetRandom answers are not 4 distinct 32-byte strings")

        step(f"a PCR {PCR} policy session held across many other commands")
        trial = pcr_policy(ectx, TPM2_SE.TRIAL)
        policy = bytes(ectx.policy_get_digest(trial))
        ectx.flush_context(trial)
        sens = TPM2B_SENSITIVE_CREATE()
        sens.sensitive.data = TPM2B_SENSITIVE_DATA(b"policy secret")
        ppub = TPM2B_PUBLIC.parse("keyedhash", objectAttributes=TPMA_OBJECT.FIXEDTPM | TPMA_OBJECT.FIXEDPARENT,
                                  authPolicy=policy)
        ppriv, ppub, _, _, _ = ectx.create(primary, sens, ppub, session1=hmac)
        psealed = ectx.load(primary, ppriv, ppub, session1=hmac)
        psession = pcr_policy(ectx, TPM2_SE.POLICY)

        # Meanwhile: signing keys, each created and used through the HMAC session, verified outside the TPM.
        msg = b"message signed in the TPM"
        digest = hashlib.sha256(msg).digest()
        keys = []
        ktempl = TPM2B_PUBLIC.parse("ecc256:ecdsa-sha256", objectAttributes=TPMA_OBJECT.FIXEDTPM
                                    | TPMA_OBJECT.FIXEDPARENT | TPMA_OBJECT.SENSITIVEDATAORIGIN
                                    | TPMA_OBJECT.USERWITHAUTH | TPMA_OBJECT.SIGN_ENCRYPT)
        for i in range(8):
            kpriv, kpub, _, _, _ = ectx.create(primary, TPM2B_SENSITIVE_CREATE(), ktempl, session1=hmac)
            keys.append((kpriv, kpub))
        if bytes(ectx.policy_get_digest(psession)) != policy:
            fail("the policy session's digest changed while other commands ran")
        if bytes(ectx.unseal(psealed, session1=psession)) != b"policy secret":
            fail("unseal with the held policy session")
        ectx.flush_context(psession)
        ectx.flush_context(psealed)

        step(f"PCR {PCR} extended: a new policy session no longer unseals")
        psealed = ectx.load(primary, ppriv, ppub, session1=hmac)
        ha = TPMT_HA(hashAlg=TPM2_ALG.SHA256)
        ha.digest.sha256 = b"\x01" * 32
        ectx.pcr_extend(getattr(ESYS_TR, f"PCR{PCR}"), TPML_DIGEST_VALUES([ha]))
        psession = pcr_policy(ectx, TPM2_SE.POLICY)
        try:
            ectx.unseal(psealed, session1=psession)
            fail("unsealed after the PCR changed")
        except TSS2_Exception as e:
            if e.error != TPM2_RC.POLICY_FAIL:
                fail(f"unseal after the PCR changed: {e} (expected TPM_RC_POLICY_FAIL)")
        ectx.flush_context(psession)
        ectx.flush_context(psealed)

        step("8 signing keys loaded at once beside the primary, one connection")
        loaded = []
        refused = None
        for kpriv, kpub in keys:
            try:
                loaded.append((ectx.load(primary, kpriv, kpub, session1=hmac), kpub))
            except TSS2_Exception as e:
                refused = e
                break
        if target == "kernel":
            # The kernel's space holds 3 objects: the primary and two keys; the third key must be refused.
            if refused is None or len(loaded) != 2:
                fail(f"kernel: expected the 4th object refused, loaded {len(loaded) + 1} objects (refused: {refused})")
            print(f"    kernel refused object 4 as expected: {refused} (rc 0x{refused.error:x})")
        elif refused is not None:
            fail(f"tpmrmd refused object {len(loaded) + 2}: {refused}")
        for i, (handle, kpub) in enumerate(loaded):
            sig = ectx.sign(handle, digest, ecdsa, null_ticket, session1=hmac)
            if not verify(kpub, sig, msg):
                fail(f"key {i}: the signature does not verify with its public key")
            if verify(kpub, sig, msg + b"!"):
                fail(f"key {i}: the signature verifies a tampered message")
        print(f"    {len(loaded)} keys signed; every signature verified outside the TPM")
        for handle, _ in loaded:
            ectx.flush_context(handle)
        ectx.flush_context(hmac)
        ectx.flush_context(primary)


def wait_for_go():
    with open(os.path.join(ctl, "ask"), "w") as ask:
        ask.write(f"{target}\n")
    fd = os.open(os.path.join(ctl, "go"), os.O_RDWR)  # a fifo opened read-write never blocks in open()
    if not select.select([fd], [], [], 120)[0]:
        fail("no go from the caller within 120 s")
    os.close(fd)


for n, spec in enumerate(args):
    target, tcti = spec.split("=", 1)
    if n and ctl:
        wait_for_go()
    run(tcti)
    print(f"PASS [{target}]: tpm2-pytss over {tcti}", flush=True)
