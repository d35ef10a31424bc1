#!/usr/bin/env python3
"""Checks the digest responses uas_auth.xml logged (SIPp -trace_logs).

SIPp's verifyauth cannot read Proxy-Authorization, so uas_auth.xml logs each
one as "verify-digest method=METHOD <header value>" and this recomputes the
response (RFC 2617 §3.2.2.1, RFC 7616 §3.4.1) from the password.

usage: check_auth_log.py LOGFILE USERNAME PASSWORD
Exit 0 if at least one header was logged and all verify, 1 otherwise.
"""
import hashlib
import re
import sys

PARAM = re.compile(r'([A-Za-z-]+)\s*=\s*("((?:[^"\\]|\\.)*)"|[^\s,]+)')


def params(value):
    out = {}
    for m in PARAM.finditer(value):
        v = m.group(3) if m.group(3) is not None else m.group(2)
        out[m.group(1).lower()] = re.sub(r'\\(.)', r'\1', v)
    return out


def verify(method, header, username, password):
    p = params(header.split(None, 1)[1] if " " in header.strip() else "")
    alg = p.get("algorithm", "MD5").upper()
    h = {"MD5": hashlib.md5, "MD5-SESS": hashlib.md5,
         "SHA-256": hashlib.sha256, "SHA-256-SESS": hashlib.sha256}.get(alg)
    if h is None or p.get("username") != username:
        return False
    H = lambda s: h(s.encode()).hexdigest()
    ha1 = H(f'{username}:{p.get("realm", "")}:{password}')
    if alg.endswith("-SESS"):
        ha1 = H(f'{ha1}:{p.get("nonce", "")}:{p.get("cnonce", "")}')
    if p.get("qop", "") == "auth-int":
        return False  # the body is not logged; uas_auth.xml offers auth only
    ha2 = H(f'{method}:{p.get("uri", "")}')
    if "qop" in p:
        want = H(f'{ha1}:{p.get("nonce", "")}:{p.get("nc", "")}:{p.get("cnonce", "")}:{p["qop"]}:{ha2}')
    else:
        want = H(f'{ha1}:{p.get("nonce", "")}:{ha2}')
    return want == p.get("response")


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    path, username, password = sys.argv[1:]
    seen = bad = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = re.search(r"verify-digest method=(\S+)\s+(.*)$", line.rstrip("\r\n"))
            if not m:
                continue
            seen += 1
            if not verify(m.group(1), m.group(2).strip(), username, password):
                bad += 1
                print(f"bad digest response: {m.group(2).strip()}", file=sys.stderr)
    print(f"{seen} logged, {seen - bad} verified")
    return 0 if seen and not bad else 1


if __name__ == "__main__":
    sys.exit(main())
