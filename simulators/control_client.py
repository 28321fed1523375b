"""A small synchronous client of a plant's control plane (for the CLI and the grader's scripts)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from . import addressing as ad


class ControlError(Exception):
    pass


class ControlHttpError(ControlError):
    """The control plane answered with an error status; `body` is its JSON answer (or {"error": reason})."""

    def __init__(self, message: str, status: int, body: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


DEVICE_OP_TIMEOUT_S = 60.0  # reload/apply/restart: a PLC-2 restart may first make its certificate


class ControlClient:
    def __init__(self, url: str, token: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    @classmethod
    def for_candidate(cls, candidate: str, timeout: float = 10.0) -> ControlClient:
        st = ad.read_state(candidate)
        if not ad.is_running(st):
            raise ControlError(
                f"no running plant for candidate {candidate!r} (aiotlab plant up --candidate {candidate})"
            )
        ctl = st["control"]
        return cls(ctl["url"], Path(ctl["token_file"]).read_text().strip(), timeout)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """The answer's JSON; ControlHttpError on an error status, OSError/TimeoutError/ValueError otherwise
        (the config service tells those apart: an answer is relayed, no answer is "try again")."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - our own plant's API
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                answer = json.loads(exc.read())
            except ValueError:
                answer = None
            if not isinstance(answer, dict):
                answer = {"error": str(exc.reason)}
            raise ControlHttpError(
                f"{method} {path}: HTTP {exc.code}: {answer.get('error')}", exc.code, answer
            ) from None

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            return self.call(method, path, body)
        except ControlHttpError:
            raise
        except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
            raise ControlError(f"{method} {path}: {exc}") from None

    def get(self, path: str) -> Any:
        return self._call("GET", path)

    def post(self, path: str, body: Any) -> Any:
        return self._call("POST", path, body)

    def delete(self, path: str) -> Any:
        return self._call("DELETE", path)
