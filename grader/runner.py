"""Where a solution the grader starts runs: on this machine (practice mode) or in the candidate's workstation
container (exam mode). Both give the engine the same four things: the paths the solution sees, an environment
from an allow-list, a started process whose output is the solution's log, and an end to every process the
solution made (its whole tree, daemons included)."""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiotlab.labs.loader import Lab
from aiotlab.labs.loader import Solution as LabSolution
from aiotlab.simulators.containers import give_to

STOP_GRACE_S = 5.0
EXEC_TIMEOUT_S = 30.0
WS_PATH = "/opt/tools/bin:/usr/local/bin:/usr/bin:/bin"


@dataclass
class WorkstationRunner:
    """Exam mode: the solution runs in the candidate's workstation as the candidate (docker exec), with an
    environment made here from nothing but the solution's own variables: no secret, key, token or AIOTLAB_HOME
    can reach it. Every process of the candidate's user that appears during the grading is ended after it, so a
    daemon that double-forks, changes session or clears its environment does not outlive the grading; the
    candidate's own processes that ran before are left alone."""

    container: str
    host_home: Path  # the host folder mounted as the workstation user's home
    home: str = "/home/candidate"
    user: str = "candidate"
    uid: int = 1000
    before: set[int] = field(default_factory=set)
    pid: int | None = None  # the workstation's init, on this host (its namespaces are entered through it)

    def enter(self, argv: list[str], cwd: Path, env: dict[str, str]) -> list[str]:
        """A command line that runs argv inside the workstation (its filesystem, network and process namespaces)
        as the candidate, with no capability, while its stdio stay this process's (a pipe the grader holds
        stays the grader's: what `docker exec` cannot give). Paths in argv are the workstation's."""
        if self.pid is None:
            raise OSError("the workstation's process is not known: is it running?")
        inner = " ".join(shlex.quote(a) for a in ["env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv])
        return [
            "nsenter", "-t", str(self.pid), "-m", "-u", "-i", "-n", "-p", "-C", "-r", "-w",
            "-S", str(self.uid), "-G", str(self.uid), "--",
            "/bin/sh", "-c", f"cd {shlex.quote(self.path(cwd))} && exec {inner}",
        ]  # fmt: skip

    @classmethod
    def for_plant(cls, state: dict[str, Any]) -> WorkstationRunner | None:
        ws = state.get("workstation") or {}
        if not ws.get("container") or not ws.get("host_home"):
            return None
        return cls(
            ws["container"], Path(ws["host_home"]), ws.get("home", "/home/candidate"), ws.get("user", "candidate")
        )

    def lab_folder(self, lab_id: str) -> Path:
        """The lab's folder in the candidate's home, a real folder of theirs: a link planted in its place is
        moved aside (never followed by the grader), a missing one is made."""
        folder = self.host_home / lab_id
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            folder.rename(folder.with_name(f"{lab_id}.moved-aside"))
        if not folder.exists():
            folder.mkdir(mode=0o700)
            os.lchown(folder, self.uid, self.uid)
        return folder

    def provide_kit(self, kit: Path, folder: Path) -> None:
        """A lab folder without its kit (a lab graded on this plant outside the exam's own kits): the kit is
        copied in through directory descriptors, no link followed, nothing overwritten, owned by the candidate."""
        dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            try:
                os.mkdir(".aiotlab", 0o700, dir_fd=dfd)
            except FileExistsError:
                return  # theirs: a kit (or anything else) already there is left as it is
            kfd = os.open(".aiotlab", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dfd)
            try:
                os.chown(kfd, self.uid, self.uid)
                for src in sorted(kit.iterdir()):
                    if not src.is_file():
                        continue
                    ffd = os.open(src.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=kfd)
                    with os.fdopen(ffd, "wb") as f:
                        f.write(src.read_bytes())
                        os.fchown(f.fileno(), self.uid, self.uid)
            finally:
                os.close(kfd)
        finally:
            os.close(dfd)

    def path(self, host_path: Path) -> str:
        """Where a file of the workspace is inside the workstation."""
        rel = Path(host_path).resolve().relative_to(self.host_home.resolve())
        return str(Path(self.home) / rel)

    def host_path(self, ws_path: str) -> Path | None:
        """Where a path the candidate wrote (in their workstation, e.g. a broker keyfile) is on this host: None when
        it is not in their home, or climbs out of it (no link is followed here)."""
        prefix = self.home.rstrip("/") + "/"
        if not ws_path.startswith(prefix):
            return None
        parts = [x for x in ws_path[len(prefix) :].split("/") if x not in ("", ".")]
        if not parts or ".." in parts:
            return None
        return self.host_home.joinpath(*parts)

    def base_env(self) -> dict[str, str]:
        return {"HOME": self.home, "PATH": WS_PATH, "LANG": "C.UTF-8", "USER": self.user, "LOGNAME": self.user}

    def stage_known(self, lab: Lab, known: LabSolution) -> dict[str, str]:
        """A named lab solution (a rehearsal or a test, never a candidate's exam): copied into the workstation
        user's home under .aiotlab-labs, as if the candidate had written it; returns its placeholders."""
        root = self.host_home / ".aiotlab-labs"
        if root.is_symlink():
            root.unlink()
        shutil.rmtree(root, ignore_errors=True)
        skip = shutil.ignore_patterns("__pycache__")
        for other in sorted(lab.path.parent.iterdir()):  # a lab's solution may reuse another's (labs_dir)
            if (other / "solutions").is_dir():
                shutil.copytree(other / "solutions", root / other.name / "solutions", ignore=skip)
        if (lab.path.parent / "common").is_dir():
            shutil.copytree(lab.path.parent / "common", root / "common", ignore=skip)
        give_to(root, self.uid)
        sol = Path(self.home) / ".aiotlab-labs" / lab.id / "solutions" / known.path.name
        return {"python": "python3", "solution_dir": str(sol), "labs_dir": str(Path(self.home) / ".aiotlab-labs")}

    def unstage(self) -> None:
        """Remove a named solution staged for this grading (the next candidate action sees their own home)."""
        root = self.host_home / ".aiotlab-labs"
        if root.is_symlink():
            root.unlink()
        shutil.rmtree(root, ignore_errors=True)

    async def use_plant_sources(self, state: dict[str, Any]) -> str:
        """The grader's probes on this exam plant: its attacker addresses on this host's bridge, the HMI's and
        the workstation's addresses opened inside their containers. Returns the plant network's prefix."""
        from .probes import sources

        hosts = state["addresses"]["hosts"]
        prefix = hosts["workstation"].rsplit(".", 1)[0]
        pids = {}
        for address, container in ((hosts["workstation"], self.container), (hosts["hmi"], f"{state['project']}-hmi")):
            code, out = await self._docker(["inspect", "-f", "{{.State.Pid}}", container])
            if code == 0 and out.strip().isdigit() and int(out.strip()) > 0:
                pids[address] = int(out.strip())
        code, out = await self._docker(["inspect", "-f", "{{.State.Pid}}", self.container])
        self.pid = int(out.strip()) if code == 0 and out.strip().isdigit() else None
        await asyncio.to_thread(sources.use_bridge, prefix)
        sources.use_container_sources(pids)
        return prefix

    async def _docker(self, args: list[str]) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            "docker", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), EXEC_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            return -1, ""
        return proc.returncode or 0, out.decode(errors="replace")

    async def user_pids(self) -> set[int]:
        """Host pids of the candidate's user's processes in the workstation (`docker top` answers while the
        container is paused, which `docker exec` cannot)."""
        code, out = await self._docker(["top", self.container, "-eo", "pid,uid"])
        if code != 0:
            return set()
        pids = set()
        for line in out.splitlines()[1:]:
            fields = line.split()
            if len(fields) == 2 and fields[0].isdigit() and fields[1] == str(self.uid):
                pids.add(int(fields[0]))
        return pids

    async def snapshot(self) -> None:
        self.before = await self.user_pids()

    def wrap(self, argv: list[str], cwd: Path, env: dict[str, str]) -> list[str]:
        """The docker exec command line that starts argv in the workstation."""
        flags = [f"{k}={v}" for k, v in env.items()]
        return [
            "docker",
            "exec",
            "-u",
            self.user,
            "-w",
            self.path(cwd),
            *[x for f in flags for x in ("-e", f)],
            self.container,
            *argv,
        ]

    async def end_new(self, sig: int) -> int:
        """Signal every process of the candidate's user that was not there before the grading started. The
        workstation is frozen (docker pause: the cgroup freezer) while they are listed and signalled, so a
        process that forks itself anew faster than a list-and-kill round trip cannot slip between the two; it
        is done again until no new process is left or three rounds have passed."""
        ended = 0
        for _ in range(3):
            if (await self._docker(["pause", self.container]))[0] != 0:
                break
            try:
                new = sorted((await self.user_pids()) - self.before)
                for pid in new:
                    try:
                        os.kill(pid, sig)
                    except ProcessLookupError:
                        pass
            finally:
                await self._docker(["unpause", self.container])
            ended += len(new)
            if not new or sig != signal.SIGKILL:
                break
            await asyncio.sleep(0.1)
        return ended

    async def stop(self, proc: asyncio.subprocess.Process) -> dict[str, Any]:
        if proc.returncode is not None and not (await self.user_pids()) - self.before:
            return {"exit": proc.returncode, "stopped_by": "exited by itself"}
        ended = await self.end_new(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), STOP_GRACE_S)
            stopped = "SIGTERM"
        except TimeoutError:
            stopped = "SIGKILL"
        if await self.end_new(signal.SIGKILL):
            stopped = "SIGKILL"
        try:
            await asyncio.wait_for(proc.wait(), STOP_GRACE_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        return {"exit": proc.returncode, "stopped_by": stopped, "processes_ended": ended}

    async def reap(self) -> int:
        return await self.end_new(signal.SIGKILL)
