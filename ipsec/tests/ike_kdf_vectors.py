#!/usr/bin/env python3
"""Independent IKEv2 key-derivation vectors for tests/ike.rs (known-answer test).

Written from RFC 7296 §2.13 (prf+), §2.14 (SKEYSEED, SK_*), §2.15 (PSK AUTH) and
§2.17 (child KEYMAT) on Python's standard `hmac`/`hashlib` only; it shares no code
with the Rust implementation. Run: python3 ipsec/tests/ike_kdf_vectors.py
"""
import hashlib
import hmac


def prf(h, key, data):
    return hmac.new(key, data, h).digest()


def prf_plus(h, key, seed, n):
    out, t, i = b"", b"", 1
    while len(out) < n:
        t = prf(h, key, t + seed + bytes([i]))
        out += t
        i += 1
    return out[:n]


NI = bytes(range(0x00, 0x20))
NR = bytes(range(0x20, 0x40))
GIR = bytes([0xA5]) * 32
SPI_I = bytes.fromhex("0102030405060708")
SPI_R = bytes.fromhex("1112131415161718")
PSK = b"test-psk"
MSG1 = bytes(range(0x40, 0x80))
ID_BODY = bytes([2, 0, 0, 0]) + b"initiator.example"


def suite(name, h, enc_keymat_len, child_keymat_len):
    plen = h().digest_size
    skeyseed = prf(h, NI + NR, GIR)
    km = prf_plus(h, skeyseed, NI + NR + SPI_I + SPI_R, 3 * plen + 2 * enc_keymat_len)
    sk_d = km[:plen]
    sk_ei = km[plen:plen + enc_keymat_len]
    sk_er = km[plen + enc_keymat_len:plen + 2 * enc_keymat_len]
    sk_pi = km[plen + 2 * enc_keymat_len:2 * plen + 2 * enc_keymat_len]
    sk_pr = km[2 * plen + 2 * enc_keymat_len:]
    child = prf_plus(h, sk_d, NI + NR, 2 * child_keymat_len)
    signed = MSG1 + NR + prf(h, sk_pi, ID_BODY)
    auth = prf(h, prf(h, PSK, b"Key Pad for IKEv2"), signed)
    print(f"// {name}")
    for k, v in [("skeyseed", skeyseed), ("sk_d", sk_d), ("sk_ei", sk_ei), ("sk_er", sk_er),
                 ("sk_pi", sk_pi), ("sk_pr", sk_pr), ("child", child), ("auth", auth)]:
        print(f'{k}: "{v.hex()}",')


# SHA2-256 PRF, AES-256-GCM IKE SA (36-byte SK_e), AES-128-GCM child (20 bytes each way).
suite("PRF_HMAC_SHA2_256, ENCR_AES_GCM_16-256, child AES-GCM-16-128", hashlib.sha256, 36, 20)
# SHA2-384 PRF, AES-128-GCM IKE SA (20-byte SK_e), AES-256-GCM child (36 bytes each way).
suite("PRF_HMAC_SHA2_384, ENCR_AES_GCM_16-128, child AES-GCM-16-256", hashlib.sha384, 20, 36)
# NAT detection hash (§2.23): SHA-1(SPIi | SPIr | 192.0.2.1 | 500).
print('nat: "' + hashlib.sha1(SPI_I + SPI_R + bytes([192, 0, 2, 1]) + (500).to_bytes(2, "big")).hexdigest() + '",')

# Diffie-Hellman group 14 (RFC 3526 §3): the prime from its formula, 2^x mod p for
# the private exponents 0x01..0x20 and 0x21..0x40 (256-bit, big-endian), and the
# shared value; printed as SHA-256 of the 256-byte big-endian values.
def pi_fixed(bits):
    """floor(pi * 2^bits) by Machin's formula in integers."""
    guard = 64
    one = 1 << (bits + guard)

    def arctan_inv(x):
        total = term = one // x
        n, sign = 1, -1
        while term:
            term //= x * x
            total += sign * (term // (2 * n + 1))
            sign, n = -sign, n + 1
        return total

    return (4 * (4 * arctan_inv(5) - arctan_inv(239))) >> guard


P = 2**2048 - 2**1984 - 1 + 2**64 * (pi_fixed(1918) + 124476)
X1 = int.from_bytes(bytes(range(0x01, 0x21)), "big")
X2 = int.from_bytes(bytes(range(0x21, 0x41)), "big")
Y1, Y2 = pow(2, X1, P), pow(2, X2, P)
Z = pow(Y2, X1, P)
assert Z == pow(Y1, X2, P)
b = lambda v: v.to_bytes(256, "big")
print('modp_p_sha256: "' + hashlib.sha256(b(P)).hexdigest() + '",')
print('modp_y1_sha256: "' + hashlib.sha256(b(Y1)).hexdigest() + '",')
print('modp_y2_sha256: "' + hashlib.sha256(b(Y2)).hexdigest() + '",')
print('modp_z_sha256: "' + hashlib.sha256(b(Z)).hexdigest() + '",')
