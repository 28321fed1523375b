"""Report signatures: Ed25519 over canonical JSON; a manifest binds the report to who, what and every file.

Whoever holds the private key signs (the grader, for the instructor who keeps it); anyone with the public key can
verify and nobody with only the public key can sign. The signed document carries a manifest: exam id, candidate,
lab, attempt, the plant's parameter fingerprint and the SHA-256 of every output file (report.html, results.json,
evidence, recording), so an edited file, a report copied to another candidate's folder or a swapped recording fails
verification.

Keys: an exam's pair is made by `aiotlab exam up` (private key in the exam's keys/ folder, 0600; public key beside
the exam's output). Outside an exam, a pair in AIOTLAB_HOME/keys is made on first use.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ALG = "Ed25519"
PRIVATE_NAME, PUBLIC_NAME = "signing-key.pem", "signing-key.pub.pem"


def canonical(doc: dict[str, Any]) -> bytes:
    body = {k: v for k, v in doc.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class Signer:
    private: Ed25519PrivateKey
    source: Path  # where the private key lives (said in errors, never shown to candidates)

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    @property
    def key_id(self) -> str:
        return key_id(self.public)

    def sign(self, doc: dict[str, Any]) -> dict[str, Any]:
        sig = self.private.sign(canonical(doc))
        return {**doc, "signature": {"alg": ALG, "key_id": self.key_id, "value": base64.b64encode(sig).decode()}}


def make_pair(folder: Path) -> tuple[Path, Path]:
    """A new key pair in `folder` (0700): the private key 0600, written atomically; returns (private, public)."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    key = Ed25519PrivateKey.generate()
    priv, pub = folder / PRIVATE_NAME, folder / PUBLIC_NAME
    tmp = folder / f".{PRIVATE_NAME}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    os.replace(tmp, priv)
    pub.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return priv, pub


def load_signer(private_path: Path) -> Signer:
    key = serialization.load_pem_private_key(private_path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{private_path} is not an Ed25519 private key")
    return Signer(key, private_path)


def load_public(path: Path) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} is not an Ed25519 public key")
    return key


def local_keys() -> Path:
    from aiotlab.simulators import addressing as ad

    return ad.home() / "keys"


def default_signer() -> Signer:
    """The signer of this process: AIOTLAB_SIGNING_KEY (an exam's private key) if set, else the local pair in
    AIOTLAB_HOME/keys, made on first use."""
    named = os.environ.get("AIOTLAB_SIGNING_KEY")
    if named:
        return load_signer(Path(named))
    folder = local_keys()
    if not (folder / PRIVATE_NAME).is_file():
        from aiotlab.simulators import addressing as ad

        with ad.registry_lock():  # two graders starting at once make one pair, not two
            if not (folder / PRIVATE_NAME).is_file():
                make_pair(folder)
    return load_signer(folder / PRIVATE_NAME)


def default_public() -> tuple[Ed25519PublicKey, Path]:
    """The public key `report verify` uses when none is named: the exam's (AIOTLAB_SIGNING_KEY's pair) or the local."""
    named = os.environ.get("AIOTLAB_SIGNING_KEY")
    folder = Path(named).parent if named else local_keys()
    path = folder / PUBLIC_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no public key at {path}: name one with --key PUBLIC.pem")
    return load_public(path), path


def verify(doc: dict[str, Any], public: Ed25519PublicKey) -> tuple[bool, str]:
    sig = doc.get("signature")
    if not isinstance(sig, dict) or sig.get("alg") != ALG:
        return False, f"no {ALG} signature (alg {sig.get('alg') if isinstance(sig, dict) else None!r})"
    if sig.get("key_id") != key_id(public):
        return False, f"signed with another key ({sig.get('key_id')}), not {key_id(public)}"
    try:
        public.verify(base64.b64decode(str(sig.get("value", ""))), canonical(doc))
    except (InvalidSignature, ValueError):
        return False, "signature mismatch: the report was modified after signing"
    return True, f"signature valid (Ed25519, key {key_id(public)})"
