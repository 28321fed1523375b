"""Candidates' login credentials for exam mode: issued once by `exam up`, printed once for the instructor, kept
only as hashes (argon2 for the exam's own checks, the workstation's shadow hash so a recreated workstation gets
the same password back) in <out>/credentials.json, 0600."""

from __future__ import annotations

import json
import os
import secrets
import string
from pathlib import Path
from typing import Any

ALPHABET = "".join(c for c in string.ascii_letters + string.digits if c not in "0O1lI")
PASSWORD_LEN = 14


def new_password() -> str:
    """14 characters without look-alikes: about 80 bits, readable off a printed slip."""
    return "".join(secrets.choice(ALPHABET) for _ in range(PASSWORD_LEN))


def load(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}


def save(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def hash_password(password: str) -> str:
    from argon2 import PasswordHasher

    return PasswordHasher().hash(password)


def verify(record: dict[str, Any], password: str) -> bool:
    from argon2 import PasswordHasher
    from argon2.exceptions import VerificationError

    try:
        return PasswordHasher().verify(record["argon2"], password)
    except (VerificationError, KeyError):
        return False
