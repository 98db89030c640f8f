#!/usr/bin/env python3
"""Independent ESP (RFC 4303) + AES-GCM (RFC 4106) peer for interop tests.

Written from the RFCs with Python `cryptography`'s AESGCM; shares no code with the
Rust crate. Reads one JSON request on stdin, writes one JSON answer on stdout.

  {"op": "seal", "sas": [SA...], "packets": [{"sa": i, "seq": n, "inner": hex}]}
      -> ["<hex of the whole IP packet>", ...]   (random explicit IVs)
  {"op": "open", "sas": [SA...], "packets": [{"sa": i, "seq": n, "wire": hex}]}
      -> [{"ok": bool, "nh": int, "payload": hex, "error": str}, ...]

SA: {"spi": int, "keymat": hex (key + 4-byte salt), "esn": bool,
     "mode": "tunnel4" | "tunnel6" | "transport", "udp": bool,
     "src": "addr", "dst": "addr"}   (outer addresses for tunnel mode)
"""
import ipaddress
import json
import os
import struct
import sys

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def inet_csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4_header(src, dst, proto, payload_len, tos=0):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, tos, 20 + payload_len, 0, 0, 64, proto, 0,
                    ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    return h[:10] + struct.pack("!H", inet_csum(h)) + h[12:]


def ipv6_header(src, dst, nh, payload_len):
    return struct.pack("!IHBB16s16s", 6 << 28, payload_len, nh, 64,
                       ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed)


def aad(sa, seq):
    if sa["esn"]:
        return struct.pack("!III", sa["spi"], seq >> 32, seq & 0xFFFFFFFF)
    return struct.pack("!II", sa["spi"], seq & 0xFFFFFFFF)


def key_salt(sa):
    km = bytes.fromhex(sa["keymat"])
    return km[:-4], km[-4:]


def esp_seal(sa, seq, nh, payload):
    key, salt = key_salt(sa)
    pad = (4 - (len(payload) + 2) % 4) % 4
    pt = payload + bytes(range(1, pad + 1)) + bytes([pad, nh])
    iv = os.urandom(8)
    ct = AESGCM(key).encrypt(salt + iv, pt, aad(sa, seq))
    return struct.pack("!II", sa["spi"], seq & 0xFFFFFFFF) + iv + ct


def seal(sa, seq, inner):
    if sa["mode"] == "transport":
        ver = inner[0] >> 4
        assert ver == 4, "transport mode peer supports IPv4 only"
        ihl = (inner[0] & 0x0F) * 4
        hdr, body = inner[:ihl], inner[ihl:]
        esp = esp_seal(sa, seq, hdr[9], body)
        if sa["udp"]:
            esp = struct.pack("!HHHH", 4500, 4500, 8 + len(esp), 0) + esp
        src, dst = hdr[12:16], hdr[16:20]
        h = ipv4_header(ipaddress.IPv4Address(src), ipaddress.IPv4Address(dst),
                        17 if sa["udp"] else 50, len(esp), hdr[1])
        return h + esp
    nh = 4 if inner[0] >> 4 == 4 else 41
    esp = esp_seal(sa, seq, nh, inner)
    if sa["mode"] == "tunnel4":
        if sa["udp"]:
            esp = struct.pack("!HHHH", 4500, 4500, 8 + len(esp), 0) + esp
        return ipv4_header(sa["src"], sa["dst"], 17 if sa["udp"] else 50, len(esp)) + esp
    if sa["udp"]:
        ulen = 8 + len(esp)
        pseudo = (ipaddress.IPv6Address(sa["src"]).packed + ipaddress.IPv6Address(sa["dst"]).packed
                  + struct.pack("!IxxxB", ulen, 17))
        c = inet_csum(pseudo + struct.pack("!HHHH", 4500, 4500, ulen, 0) + esp) or 0xFFFF
        esp = struct.pack("!HHHH", 4500, 4500, ulen, c) + esp
    return ipv6_header(sa["src"], sa["dst"], 17 if sa["udp"] else 50, len(esp)) + esp


def open_(sa, seq, wire):
    ver = wire[0] >> 4
    if ver == 4:
        off, proto = (wire[0] & 0x0F) * 4, wire[9]
        total = struct.unpack("!H", wire[2:4])[0]
    else:
        off, proto = 40, wire[6]
        total = 40 + struct.unpack("!H", wire[4:6])[0]
    wire = wire[:total]
    if proto == 17:
        off += 8
    spi, seq_lo = struct.unpack("!II", wire[off:off + 8])
    if spi != sa["spi"] or seq_lo != seq & 0xFFFFFFFF:
        return {"ok": False, "error": "spi/seq mismatch"}
    iv = wire[off + 8:off + 16]
    key, salt = key_salt(sa)
    try:
        pt = AESGCM(key).decrypt(salt + iv, wire[off + 16:], aad(sa, seq))
    except InvalidTag:
        return {"ok": False, "error": "InvalidTag"}
    pad, nh = pt[-2], pt[-1]
    if pt[-2 - pad:-2] != bytes(range(1, pad + 1)):
        return {"ok": False, "error": "bad padding"}
    return {"ok": True, "nh": nh, "payload": pt[:-2 - pad].hex()}


def main():
    req = json.load(sys.stdin)
    sas = req["sas"]
    out = []
    for p in req["packets"]:
        sa = sas[p["sa"]]
        if req["op"] == "seal":
            out.append(seal(sa, p["seq"], bytes.fromhex(p["inner"])).hex())
        else:
            out.append(open_(sa, p["seq"], bytes.fromhex(p["wire"])))
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
