"""Reading a candidate's workspace as a grader must: never following a link, never reading more than a cap.

A workspace belongs to the candidate: any name in it may be a symbolic link to the exam secret, another candidate's
report or /dev/zero. Every path is opened one component at a time relative to the workspace with O_NOFOLLOW, so a
link anywhere on the way is refused, not followed; regular files only; sizes capped. A database is read from a
private copy made this way (SQLite would otherwise open the candidate's path itself).
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

DEFAULT_MAX_BYTES = 16 * 1024 * 1024


class WorkspaceError(Exception):
    """A workspace path the grader will not read, and why (a link, not a regular file, too large, missing)."""


def _parts(rel: str | os.PathLike[str]) -> list[str]:
    p = PurePosixPath(str(rel))
    if p.is_absolute() or any(part in ("..", "") for part in p.parts):
        raise WorkspaceError(f"{rel}: not a plain path inside the workspace")
    return [part for part in p.parts if part != "."]


def _open_dir(root: Path, parts: list[str]) -> int:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for part in parts:
            nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nfd
    except OSError:
        os.close(fd)
        raise
    return fd


def lstat(root: Path, rel: str | os.PathLike[str]) -> os.stat_result:
    """The entry itself (a link is reported as a link); raises WorkspaceError when the way to it has a link."""
    parts = _parts(rel)
    try:
        fd = _open_dir(Path(root), parts[:-1])
    except OSError as exc:
        raise WorkspaceError(f"{rel}: {exc.strerror}") from None
    try:
        return os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
    except OSError as exc:
        raise WorkspaceError(f"{rel}: {exc.strerror}") from None
    finally:
        os.close(fd)


def read_bytes(root: Path, rel: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    parts = _parts(rel)
    try:
        dfd = _open_dir(Path(root), parts[:-1])
    except OSError as exc:
        raise WorkspaceError(f"{rel}: {'a link on the way' if exc.errno == 40 else exc.strerror}") from None
    try:
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dfd)
    except OSError as exc:
        raise WorkspaceError(
            f"{rel}: {'a symbolic link (not followed)' if exc.errno == 40 else exc.strerror}"
        ) from None
    finally:
        os.close(dfd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise WorkspaceError(f"{rel}: not a regular file")
        if st.st_size > max_bytes:
            raise WorkspaceError(f"{rel}: {st.st_size} bytes, over the {max_bytes}-byte limit")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise WorkspaceError(f"{rel}: over the {max_bytes}-byte limit")
        return data
    finally:
        os.close(fd)


def read_text(root: Path, rel: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    return read_bytes(root, rel, max_bytes).decode("utf-8", errors="replace")


def private_copy(root: Path, rel: str | os.PathLike[str], max_bytes: int, also: tuple[str, ...] = ()) -> Path:
    """A copy of a workspace file (and siblings with the given suffixes, e.g. SQLite's -wal) in a private temporary
    folder; the caller removes it with shutil.rmtree(path.parent)."""
    tmp = Path(tempfile.mkdtemp(prefix="aiotlab-ws-"))
    name = _parts(rel)[-1]
    try:
        (tmp / name).write_bytes(read_bytes(root, rel, max_bytes))
        for suffix in also:
            try:
                (tmp / (name + suffix)).write_bytes(read_bytes(root, f"{rel}{suffix}", max_bytes))
            except WorkspaceError:
                pass
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp / name


def walk(root: Path, max_entries: int = 20000) -> Iterator[tuple[str, os.stat_result]]:
    """(relative path, lstat) of every entry under root, never descending through a link; bounded."""
    seen = 0
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            fd = _open_dir(Path(root), _parts(rel) if rel else [])
        except OSError:
            continue
        try:
            names = sorted(os.listdir(fd))
            for name in names:
                seen += 1
                if seen > max_entries:
                    return
                child = f"{rel}/{name}" if rel else name
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except OSError:
                    continue
                yield child, st
                if stat.S_ISDIR(st.st_mode):
                    stack.append(child)
        finally:
            os.close(fd)


def glob(root: Path, pattern: str) -> list[tuple[str, os.stat_result]]:
    """Entries whose relative path matches a glob (`**/*.key`, `pki/*.key`), links included as links."""
    return [
        (rel, st)
        for rel, st in walk(root)
        if fnmatch.fnmatch(rel, pattern) or fnmatch.fnmatch(rel, pattern.removeprefix("**/"))
    ]
