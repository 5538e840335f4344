#!/usr/bin/env python3
# Independent check of vectors.json with Python hashlib (PBKDF2, HMAC) and
# the cryptography package (OpenSSL Blowfish): python3 cipher/testdata/crosscheck.py
# Prints OK or BAD per vector and exits 1 on any BAD.
import sys, json, hashlib, hmac, base64, struct, ipaddress, warnings
warnings.filterwarnings("ignore")
from cryptography.hazmat.decrepit.ciphers.algorithms import Blowfish
from cryptography.hazmat.primitives.ciphers import Cipher, modes
bad = False
vs = json.load(open(sys.argv[1] if len(sys.argv) > 1 else "cipher/testdata/vectors.json"))["vectors"]
for v in vs:
    if 'key' in v:
        s = base64.b64decode(v['key'], validate=True); assert len(s) == 32
    else:
        s = hashlib.pbkdf2_hmac('sha256', v['passphrase'].encode(), b'knock/v1', 200000, 32)
    if v['mode'] == 'timed':
        w = v['unix'] // 30
        k = hmac.new(s, b'knock/v1' + struct.pack('>Q', w), hashlib.sha256).digest()
    else:
        k = s
    p = ipaddress.IPv4Address(v['allow']).packed + struct.pack('>HB', v['port'], v['time'])
    p += bytes([sum(p) % 256])
    e = Cipher(Blowfish(k), modes.ECB()).encryptor()
    c = e.update(p) + e.finalize()
    ports = [v['base'] + b for b in c]
    ok = ports == v['ports'] and c.hex() == v['block'] and k.hex() == v['block_key'] and p.hex() == v['plaintext']
    print("OK " if ok else "BAD", v["name"], ports)
    bad = bad or not ok
sys.exit(1 if bad else 0)

