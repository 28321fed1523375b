"""Who may do what: candidates log in with the credentials `exam up` issued (argon2 hashes in credentials.json),
staff (instructor, assessor) with passwords the portal issues once at its first start (argon2, accounts.json).
Sessions are server-side (a random token in an HttpOnly, SameSite=Strict cookie); every form carries the session's
CSRF token; failed logins are rate limited per client address and per user name."""

from __future__ import annotations

import hmac
import json
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiotlab import credentials as cred

from .store import write_private

CANDIDATE, INSTRUCTOR, ASSESSOR = "candidate", "instructor", "assessor"
STAFF = (INSTRUCTOR, ASSESSOR)
SESSION_COOKIE = "aiotlab_session"
SESSION_TTL_S = 12 * 3600.0
FAILS_PER_USER = 5  # failed logins per user name in FAIL_WINDOW_S, then 429 for that name
FAILS_PER_ADDRESS = 30  # per client address: an exam hall may sit behind one NAT address
FAIL_WINDOW_S = 60.0


@dataclass
class Session:
    user: str
    role: str
    csrf: str
    expires: float


@dataclass
class Accounts:
    """Staff accounts in <out>/portal/accounts.json and the exam's candidate credentials."""

    staff_path: Path
    credentials_path: Path
    candidates: list[str]
    sessions: dict[str, Session] = field(default_factory=dict)
    fails: dict[str, deque[float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def issue_staff(self, reset: bool = False) -> dict[str, str]:
        """Passwords for staff roles that have none (all with reset): returned once, stored only hashed."""
        store = {} if reset else self._staff()
        issued = {}
        for role in STAFF:
            if role not in store:
                password = cred.new_password()
                store[role] = {"argon2": cred.hash_password(password), "role": role}
                issued[role] = password
        if issued:
            write_private(self.staff_path, json.dumps(store, indent=2))
        return issued

    def issue_candidates(self) -> dict[str, str]:
        """Practice exams (no workstation, so no `exam up` logins): portal passwords for candidates without one."""
        store = cred.load(self.credentials_path)
        issued = {}
        for c in self.candidates:
            if c not in store:
                password = cred.new_password()
                store[c] = {"argon2": cred.hash_password(password)}
                issued[c] = password
        if issued:
            cred.save(self.credentials_path, store)
        return issued

    def _staff(self) -> dict[str, Any]:
        try:
            return json.loads(self.staff_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}

    def throttled(self, *keys: str) -> bool:
        now = time.monotonic()
        with self.lock:
            for k in keys:
                q = self.fails.get(k)
                while q and now - q[0] > FAIL_WINDOW_S:
                    q.popleft()
                if q and len(q) >= (FAILS_PER_ADDRESS if k.startswith("ip:") else FAILS_PER_USER):
                    return True
        return False

    def _failed(self, *keys: str) -> None:
        with self.lock:
            for k in keys:
                self.fails.setdefault(k, deque(maxlen=FAILS_PER_ADDRESS * 2)).append(time.monotonic())

    def login(self, user: str, password: str, client: str) -> Session | None:
        """A new session for valid credentials; None otherwise (the failure is counted)."""
        user = user.strip()
        role = None
        if user in STAFF:
            record = self._staff().get(user)
            role = user if record and cred.verify(record, password) else None
        elif user in self.candidates:
            record = cred.load(self.credentials_path).get(user)
            role = CANDIDATE if record and cred.verify(record, password) else None
        else:
            cred.verify({"argon2": _DUMMY_HASH}, password)  # same work for an unknown name: no user enumeration
        if role is None:
            self._failed(f"ip:{client}", f"user:{user}")
            return None
        session = Session(user, role, secrets.token_urlsafe(24), time.time() + SESSION_TTL_S)
        with self.lock:
            self.sessions[secrets.token_urlsafe(32)] = session
        return session

    def token_of(self, session: Session) -> str:
        with self.lock:
            return next(t for t, s in self.sessions.items() if s is session)

    def session(self, token: str | None) -> Session | None:
        if not token:
            return None
        with self.lock:
            s = self.sessions.get(token)
            if s is None or s.expires < time.time():
                self.sessions.pop(token, None)
                return None
            return s

    def logout(self, token: str | None) -> None:
        with self.lock:
            self.sessions.pop(token or "", None)

    def end_sessions_of(self, user: str) -> int:
        with self.lock:
            gone = [t for t, s in self.sessions.items() if s.user == user]
            for t in gone:
                del self.sessions[t]
        return len(gone)


def csrf_ok(session: Session, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(session.csrf, str(given))


_DUMMY_HASH = cred.hash_password(secrets.token_urlsafe(12))
