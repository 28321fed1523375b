"""Per-candidate plant parameters.

A plant built for (exam secret, candidate id) resolves every variation in the plant spec from an HMAC of the
secret and the candidate id, so the same inputs always give the same plant and nobody without the secret can
derive another candidate's values. An explicit integer seed replaces the candidate derivation (for tests and
instructors' rehearsals).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import warnings
from dataclasses import dataclass
from typing import Any

DEV_SECRET = "aiotlab-dev-secret-not-for-exams"
SECRET_VARS = ("AIOTLAB_EXAM_SECRET", "AIOTLAB_EXAM_SECRET_FILE")
_given_secret: str | None = None  # handed to this process on its stdin (a plant daemon), never in its environment


def set_exam_secret(value: str) -> None:
    """This process's exam secret, given privately (a plant daemon reads it from its stdin)."""
    global _given_secret
    _given_secret = value


def env_without_secret(env: dict[str, str] | None = None) -> dict[str, str]:
    """An environment for a child process: the exam secret and where it is are not in it."""
    return {k: v for k, v in (os.environ if env is None else env).items() if k not in SECRET_VARS}


def exam_secret() -> str:
    """The exam secret: given to this process privately, else AIOTLAB_EXAM_SECRET (or a file named by
    AIOTLAB_EXAM_SECRET_FILE)."""
    if _given_secret is not None:
        return _given_secret
    path = os.environ.get("AIOTLAB_EXAM_SECRET_FILE")
    if path:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip()
    secret = os.environ.get("AIOTLAB_EXAM_SECRET")
    if secret:
        return secret
    warnings.warn(
        "AIOTLAB_EXAM_SECRET is not set: using the public development secret; plants are predictable",
        stacklevel=2,
    )
    return DEV_SECRET


@dataclass(frozen=True)
class PlantIdentity:
    """Who a plant is for, and the key material its parameters come from."""

    candidate: str
    seed: int | None
    key: bytes  # 32 bytes; never shown to candidates

    @classmethod
    def for_candidate(cls, candidate: str, secret: str | None = None, seed: int | None = None) -> PlantIdentity:
        if seed is not None:
            key = hashlib.sha256(f"aiotlab-seed:{seed}".encode()).digest()
        else:
            secret = secret if secret is not None else exam_secret()
            key = hmac.new(secret.encode(), f"aiotlab-plant-v1|{candidate}".encode(), hashlib.sha256).digest()
        return cls(candidate=candidate, seed=seed, key=key)

    def rng(self, purpose: str) -> random.Random:
        """An independent deterministic stream per purpose, stable when the spec gains new entries."""
        digest = hmac.new(self.key, purpose.encode(), hashlib.sha256).digest()
        return random.Random(int.from_bytes(digest, "big"))

    @property
    def physics_seed(self) -> int:
        return self.rng("physics").getrandbits(63)

    def digest(self) -> str:
        """A public fingerprint of the parameter key (reports quote it; it reveals nothing)."""
        return hashlib.sha256(b"aiotlab-params-digest|" + self.key).hexdigest()[:16]


def _is_variation(node: Any) -> bool:
    return (
        isinstance(node, dict)
        and set(node) <= {"choices", "range", "round", "token"}
        and ("choices" in node or "range" in node or "token" in node)
    )


def resolve(node: Any, identity: PlantIdentity, path: str = "") -> Any:
    """Replace every {choices}/{range}/{token} variation in a spec tree with this candidate's value.

    {token: N} is an N-character secret (letters and digits), e.g. a password the exam issues to the candidate."""
    if _is_variation(node):
        rng = identity.rng(f"param:{path}")
        if "token" in node:
            alphabet = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
            return "".join(rng.choice(alphabet) for _ in range(int(node["token"])))
        if "choices" in node:
            return rng.choice(list(node["choices"]))
        lo, hi = node["range"]
        value = rng.uniform(float(lo), float(hi))
        digits = node.get("round")
        return round(value, int(digits)) if digits is not None else value
    if isinstance(node, dict):
        return {k: resolve(v, identity, f"{path}.{k}" if path else str(k)) for k, v in node.items()}
    if isinstance(node, list):
        out = []
        for i, item in enumerate(node):
            key = item.get("name", item.get("id", i)) if isinstance(item, dict) else i
            out.append(resolve(item, identity, f"{path}[{key}]"))
        return out
    return node


def params_digest(params: dict[str, Any]) -> str:
    """SHA-256 over the resolved parameters in canonical JSON (for reports and reproducibility)."""
    blob = json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()
