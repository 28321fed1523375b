"""PLC-2 refuses a `password_hash` that no password can ever match when its config is loaded, naming the line (an
outsider's URL-safe Base64 hash was accepted and only showed as a refused login at grading)."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from aiotlab.simulators.devices.opcua_security import hash_password, load_security_config, verify_password_hash
from aiotlab.simulators.yamlconf import ConfigError


def config(folder: Path, password_hash: str) -> Path:
    path = folder / "plc2.yaml"
    path.write_text(
        "security_policies: [Basic256Sha256_SignAndEncrypt]\n"
        "identity_tokens: [username]\n"
        "users:\n"
        f"  eng1: {{password_hash: '{password_hash}', role: engineer}}\n"
        "roles:\n"
        "  engineer: [read, write, call]\n"
    )
    return path


def urlsafe_hash(password: str) -> str:
    """A hash whose salt and digest are written in URL-safe Base64 (with '-' or '_'), as some libraries do."""
    salt = next(bytes([i]) * 16 for i in range(256) if "-" in base64.urlsafe_b64encode(bytes([i]) * 16).decode())
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 1000)
    return f"pbkdf2_sha256$1000${base64.urlsafe_b64encode(salt).decode()}${base64.urlsafe_b64encode(digest).decode()}"


def test_a_standard_hash_loads_and_verifies(tmp_path: Path) -> None:
    h = hash_password("s3cret", iterations=1000)
    cfg = load_security_config(config(tmp_path, h))
    assert verify_password_hash(cfg.users["eng1"].password_hash, "s3cret")


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        (urlsafe_hash("s3cret"), "standard base64"),
        ("sha256$1000$AAAA$AAAA", "must be pbkdf2_sha256$"),
        ("pbkdf2_sha256$many$AAAA$AAAA", "iterations"),
        ("pbkdf2_sha256$1000$AAAA$AAAA", "3 bytes"),
    ],
)
def test_a_hash_that_can_never_match_is_refused_with_its_line(tmp_path: Path, bad: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_security_config(config(tmp_path, bad))
    assert says in str(err.value) and "eng1" in str(err.value) and ":4" in str(err.value), str(err.value)
