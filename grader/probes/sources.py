"""Where a probe's packets come from.

On a process plant every source address (the grader's attackers, the HMI's, the collector's) is a loopback alias
of this host, and a probe just binds it. In exam mode the plant network is a Docker bridge: the HMI's and the
workstation's addresses belong to their containers, so a probe that must come from one of them is opened inside
that container's network namespace (the plant sees the very address its rules name, and no address is ever on the
network twice); the grader's attacker addresses, drawn per run, are added to this host's side of the bridge for
the grading and removed after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import socket
import subprocess
import threading
from typing import Any

CLONE_NEWNET = 0x40000000
_lock = threading.Lock()
_netns: dict[str, int] = {}  # source address -> pid of a process in the network namespace that holds it
_bridges: dict[str, str] = {}  # plant network prefix (a.b.c) -> this host's bridge interface on it
_added: dict[str, set[str]] = {}  # prefix -> addresses this process added to that bridge


def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc().setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def use_container_sources(sources: dict[str, int]) -> None:
    """Exam mode: these source addresses are opened in the network namespace of the given container pids."""
    with _lock:
        _netns.update(sources)


def use_bridge(prefix: str) -> None:
    """Exam mode: the grader's own source addresses in the plant network `prefix` (a.b.c) live on this host's
    bridge to it (the interface holding prefix.254)."""
    out = subprocess.run(
        ["ip", "-o", "-4", "addr", "show", "to", f"{prefix}.254"], capture_output=True, text=True, timeout=10
    )
    words = out.stdout.split()
    if out.returncode != 0 or len(words) < 2:
        raise OSError(f"no interface of this host holds {prefix}.254: is the plant's network up?")
    with _lock:
        _bridges[prefix] = words[1]


def release(prefix: str) -> None:
    """Remove the addresses added for a grading on this plant network and forget its container sources."""
    with _lock:
        dev = _bridges.pop(prefix, None)
        added = _added.pop(prefix, set())
        for a in [a for a in _netns if a.rsplit(".", 1)[0] == prefix]:
            _netns.pop(a, None)
    for addr in added:
        if dev:
            subprocess.run(["ip", "addr", "del", f"{addr}/32", "dev", dev], capture_output=True, timeout=10)


def _ensure_on_bridge(source: str) -> None:
    prefix = source.rsplit(".", 1)[0]
    with _lock:
        dev = _bridges.get(prefix)
        if dev is None or source in _added.get(prefix, set()):
            return
        _added.setdefault(prefix, set()).add(source)
    subprocess.run(["ip", "addr", "add", f"{source}/32", "dev", dev], capture_output=True, timeout=10, check=False)


def bindable(source: str | None) -> str | None:
    """A source a library binds itself (paho): ours as given; a container's cannot be, so None (this host's
    own address on the plant network; used only where the source address decides nothing)."""
    if not source or source in _netns:
        return None
    _ensure_on_bridge(source)
    return source


def make_socket(source: str | None, kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A non-blocking socket bound to `source` (port chosen by the kernel), in whichever namespace holds it."""
    pid = _netns.get(source or "")
    if pid is None:
        if source:
            _ensure_on_bridge(source)
        s = socket.socket(socket.AF_INET, kind)
        try:
            if source:
                s.bind((source, 0))
            s.setblocking(False)
        except OSError:
            s.close()
            raise
        return s
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    try:
        _setns(target)
        try:
            s = socket.socket(socket.AF_INET, kind)  # belongs to the container's namespace for good
            try:
                s.bind((source, 0))
                s.setblocking(False)
            except OSError:
                s.close()
                raise
        finally:
            _setns(own)  # this thread back in the grader's namespace, whatever happened
    finally:
        os.close(own)
        os.close(target)
    return s


async def open_connection(
    host: str, port: int, source: str | None, **kwargs: Any
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """asyncio.open_connection from `source` (kwargs: ssl, server_hostname, ...)."""
    if not source:
        return await asyncio.open_connection(host, port, **kwargs)
    sock = make_socket(source)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    try:
        return await asyncio.open_connection(sock=sock, **kwargs)
    except BaseException:
        with contextlib.suppress(OSError):
            sock.close()
        raise
