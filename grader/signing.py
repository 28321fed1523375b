"""Report signatures: HMAC-SHA256 over canonical JSON with a key derived from the exam secret.

Anyone holding the exam secret can verify a report; any edit to the report or to an evidence file it lists is
detected. (HMAC, not a public-key signature: the assessor who verifies holds the same secret as the grader.)
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

ALG = "HMAC-SHA256"


def signing_key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"aiotlab-report-signing-v1", hashlib.sha256).digest()


def key_id(secret: str) -> str:
    return hashlib.sha256(signing_key(secret)).hexdigest()[:16]


def canonical(doc: dict[str, Any]) -> bytes:
    body = {k: v for k, v in doc.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def sign(doc: dict[str, Any], secret: str) -> dict[str, Any]:
    mac = hmac.new(signing_key(secret), canonical(doc), hashlib.sha256).hexdigest()
    return {**doc, "signature": {"alg": ALG, "key_id": key_id(secret), "value": mac}}


def verify(doc: dict[str, Any], secret: str) -> tuple[bool, str]:
    sig = doc.get("signature")
    if not isinstance(sig, dict) or sig.get("alg") != ALG:
        return False, "no HMAC-SHA256 signature"
    if sig.get("key_id") != key_id(secret):
        return False, "signed with a different exam secret"
    expected = hmac.new(signing_key(secret), canonical(doc), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, str(sig.get("value", ""))):
        return False, "signature mismatch: the report was modified after signing"
    return True, "signature valid"
