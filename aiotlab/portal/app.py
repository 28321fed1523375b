"""The portal's routes: candidates (/me), instructors (/instructor), assessors (/assessor); roles are enforced on
every route by the session, every form by its CSRF token. OpenAPI at /docs, Prometheus metrics at /metrics."""

import asyncio
import contextlib
import io
import json
import re
import socket
import time
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import jinja2
from fastapi import Depends, FastAPI, Form, HTTPException, Request, WebSocket
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from markdown_it import MarkdownIt
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from aiotlab.exam import Exam

from . import auth
from .i18n import LANGS, WORDS
from .jobs import Jobs
from .store import Store

HERE = Path(__file__).resolve().parent
MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")  # a brief's raw HTML is shown, never run
SELF_CHECK_TIMEOUT_S = 2.0


class Portal:
    """One exam's portal: its store, accounts, jobs and metrics (made by create_app)."""

    def __init__(self, exam: Exam, concurrency: int = 2) -> None:
        self.exam = exam
        self.store = Store.open(exam.out / "portal", float(exam.time_limit_min))
        self.accounts = auth.Accounts(exam.out / "portal" / "accounts.json", exam.credentials_path, exam.candidates)
        self.names = {r["id"]: r.get("name", "") for r in exam.roster}
        self.changed = asyncio.Event()
        self.jobs: Jobs | None = None
        self.concurrency = concurrency
        self.registry = CollectorRegistry()
        self.m_logins = Counter("aiotlab_portal_logins", "Login attempts", ["role", "result"], registry=self.registry)
        self.m_queue = Gauge("aiotlab_portal_grading_queue", "Gradings waiting for a slot", registry=self.registry)
        self.m_grading = Histogram(
            "aiotlab_portal_grading_seconds",
            "Duration of one candidate's grading of one lab",
            buckets=(10, 30, 60, 120, 300, 600),
            registry=self.registry,
        )
        self.m_plant = Gauge(
            "aiotlab_portal_plant_up", "Plant control plane answering", ["plant"], registry=self.registry
        )
        self.m_sessions = Gauge("aiotlab_portal_sessions", "Open sessions", ["role"], registry=self.registry)
        self._observed = 0

    def notify(self) -> None:
        self.changed.set()

    def lab_ids(self) -> list[str]:
        return list(self.exam.labs)


def create_app(exam: Exam, concurrency: int = 2) -> FastAPI:
    portal = Portal(exam, concurrency)
    from aiotlab.exam import plant_backend

    backend = plant_backend(exam)
    isolated = backend.isolated  # exam mode: candidates have workstations (and a browser terminal)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
    )
    env.filters["when"] = lambda ts: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(ts)))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        portal.jobs = Jobs(exam, portal.store, concurrency, portal.notify)
        watcher = asyncio.get_running_loop().create_task(portal.jobs.watch_deadlines())
        try:
            yield
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    app = FastAPI(title=f"aiotlab portal: {exam.id}", lifespan=lifespan)
    app.state.portal = portal
    from fastapi.staticfiles import StaticFiles

    app.mount("/static", StaticFiles(directory=str(HERE / "static"), check_dir=False), name="static")

    # -- helpers -------------------------------------------------------------------------------------------
    def lang_of(request: Request) -> str:
        lang = request.query_params.get("lang") or request.cookies.get("lang") or "zh-TW"
        return lang if lang in LANGS else "zh-TW"

    def page(request: Request, name: str, session: auth.Session | None = None, **values: Any) -> HTMLResponse:
        lang = lang_of(request)
        html = env.get_template(name).render(
            t=WORDS[lang],
            lang=lang,
            other_lang="en" if lang == "zh-TW" else "zh-TW",
            session=session,
            exam=exam,
            now=time.time(),
            **values,
        )
        response = HTMLResponse(html)
        if request.query_params.get("lang") in LANGS:
            response.set_cookie("lang", lang, samesite="strict", httponly=True)
        return response

    def current(request: Request) -> auth.Session | None:
        return portal.accounts.session(request.cookies.get(auth.SESSION_COOKIE))

    def need(*roles: str) -> Any:
        def dep(request: Request) -> auth.Session:
            s = current(request)
            if s is None:
                raise HTTPException(401, "log in first")
            if s.role not in roles:
                raise HTTPException(403, "not for your role")
            return s

        return Depends(dep)

    Candidate = Annotated[auth.Session, need(auth.CANDIDATE)]
    Instructor = Annotated[auth.Session, need(auth.INSTRUCTOR)]
    Staff = Annotated[auth.Session, need(auth.ASSESSOR, auth.INSTRUCTOR)]

    def checked(session: auth.Session, csrf: str | None) -> None:
        if not auth.csrf_ok(session, csrf):
            raise HTTPException(403, "the form's CSRF token is missing or wrong: reload the page")

    def cohort_row(cid: str) -> dict[str, Any]:
        c = portal.store.candidate(cid)
        logged_in = any(s.user == cid for s in list(portal.accounts.sessions.values()))
        return {
            "id": cid,
            "name": portal.names.get(cid, ""),
            "seconds_left": portal.store.seconds_left(cid),
            "deadline": portal.store.deadline(cid),
            "extension_min": c["extension_min"],
            "submitted_at": c["submitted_at"],
            "frozen": c["frozen"],
            "grading": c.get("grading", {}),
            "logged_in": logged_in,
            "health": plant_health(cid),
        }

    health_cache: dict[str, tuple[float, dict[str, str]]] = {}

    def plant_health(cid: str) -> dict[str, str]:
        """Each of the candidate's plants: running / down, and in exam mode what the engine says of its containers
        (one stopped device is named) and of the workstation (cached 5 s: a page view costs no probe storm)."""
        hit = health_cache.get(cid)
        if hit and time.monotonic() - hit[0] < 5.0:
            return hit[1]
        from aiotlab.simulators import addressing as ad

        out = {}
        for lab in exam.labs:
            plant = exam.plant_of(cid, lab)
            st = ad.read_state(plant)
            up = ad.is_running(st)
            out[plant] = "running" if up else ("not launched" if not st else str(st.get("status")))
            if up and isolated:
                try:
                    states = backend.status(plant)
                except Exception as exc:  # noqa: BLE001 - a health column never breaks the page
                    states = {"engine": f"unreachable ({type(exc).__name__})"}
                ws = states.pop("workstation", "missing")
                bad = sorted(f"{svc} {state}" for svc, state in states.items() if state != "running")
                if bad or not states:
                    up = False
                    out[plant] = ("not running: " + ", ".join(bad[:3])) if bad else "no containers"
                out[f"{plant}::workstation"] = ws  # the page shows it as "<plant> 工作站"
            portal.m_plant.labels(plant).set(1 if up else 0)
        health_cache[cid] = (time.monotonic(), out)
        return out

    def latest_doc(cid: str, lab: str) -> tuple[dict[str, Any], Path] | None:
        from aiotlab.grader.cohort import latest_dir

        lab_dir = exam.reports / cid / lab
        try:
            d = latest_dir(lab_dir)
            return json.loads((d / "report.json").read_text(encoding="utf-8")), d
        except (OSError, ValueError, KeyError):
            return None

    def verified(path: Path) -> tuple[bool, list[str]]:
        from aiotlab.grader import report, signing

        try:
            public = signing.load_public(exam.public_key)
        except (OSError, ValueError) as exc:
            return False, [f"no exam public key: {exc}"]
        return report.verify_file(path, public)

    # -- login ---------------------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def home(request: Request) -> Response:
        s = current(request)
        if s is None:
            return RedirectResponse("/login", 303)
        return RedirectResponse({"candidate": "/me", "instructor": "/instructor", "assessor": "/assessor"}[s.role], 303)

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_page(request: Request) -> HTMLResponse:
        return page(request, "login.html.j2", error=None)

    @app.post("/login", include_in_schema=False)
    def login(
        request: Request, user: Annotated[str, Form(max_length=64)], password: Annotated[str, Form(max_length=256)]
    ) -> Response:
        client = request.client.host if request.client else "?"
        if portal.accounts.throttled(f"ip:{client}", f"user:{user.strip()}"):
            portal.m_logins.labels("?", "throttled").inc()
            response = page(request, "login.html.j2", error=WORDS[lang_of(request)]["throttled"])
            response.status_code = 429
            return response
        s = portal.accounts.login(user, password, client)
        if s is None:
            portal.m_logins.labels("?", "refused").inc()
            response = page(request, "login.html.j2", error=WORDS[lang_of(request)]["bad_login"])
            response.status_code = 401
            return response
        portal.m_logins.labels(s.role, "ok").inc()
        if s.role != auth.CANDIDATE:
            portal.store.audit(s.user, "login", client=client)
        response = RedirectResponse("/", 303)
        response.set_cookie(
            auth.SESSION_COOKIE,
            portal.accounts.token_of(s),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            max_age=int(auth.SESSION_TTL_S),
        )
        return response

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
        s = current(request)
        if s is not None:
            checked(s, csrf)
            portal.accounts.logout(request.cookies.get(auth.SESSION_COOKIE))
        response = RedirectResponse("/login", 303)
        response.delete_cookie(auth.SESSION_COOKIE)
        return response

    # -- candidates ------------------------------------------------------------------------------------------
    @app.get("/me", response_class=HTMLResponse, tags=["candidate"])
    def me(request: Request, s: Candidate) -> HTMLResponse:
        row = cohort_row(s.user)
        reports = {lab: latest_doc(s.user, lab) for lab in exam.labs} if portal.store.data["released"] else {}
        return page(
            request,
            "candidate.html.j2",
            s,
            row=row,
            status=portal.store.status,
            released=portal.store.data["released"],
            reports={k: v[0] for k, v in reports.items() if v},
            may_work=portal.store.may_work(s.user),
            terminal=isolated,
        )

    @app.get("/api/me/clock", tags=["candidate"])
    def my_clock(s: Candidate) -> dict[str, Any]:
        """The server's clock and this candidate's deadline (the page counts down from these)."""
        return {
            "server_time": time.time(),
            "status": portal.store.status,
            "deadline": portal.store.deadline(s.user),
            "seconds_left": portal.store.seconds_left(s.user),
            "frozen": bool(portal.store.candidate(s.user).get("frozen")),
        }

    def kit_file(cid: str, lab: str, name: str) -> Path:
        if lab not in exam.labs:
            raise HTTPException(404, "no such lab in this exam")
        path = exam.workspace(cid, lab) / ".aiotlab" / name
        if path.is_symlink() or not path.is_file():
            raise HTTPException(404, f"{name} is not in your kit (was `exam up` run?)")
        return path

    @app.get("/me/brief/{lab}", response_class=HTMLResponse, tags=["candidate"])
    def my_brief(request: Request, lab: str, s: Candidate) -> HTMLResponse:
        lang = lang_of(request)
        text = kit_file(s.user, lab, f"brief.{lang}.md").read_text(encoding="utf-8")
        return page(
            request, "document.html.j2", s, heading=f"{WORDS[lang]['brief']}: {lab}", body=MARKDOWN.render(text)
        )

    @app.get("/me/datasheet/{lab}", response_class=HTMLResponse, tags=["candidate"])
    def my_datasheet(request: Request, lab: str, s: Candidate) -> HTMLResponse:
        from markupsafe import escape

        from aiotlab.simulators.datasheet import sections, to_markdown

        sheet = json.loads(kit_file(s.user, lab, "datasheet.json").read_text(encoding="utf-8"))
        lang = lang_of(request)
        try:  # the kit's datasheet (the candidate's own addresses), rendered as `plant datasheet` renders it
            body = MARKDOWN.render(to_markdown(*sections(sheet, lang)))
        except (KeyError, TypeError, ValueError):  # the raw datasheet is still the datasheet
            body = f"<pre>{escape(json.dumps(sheet, indent=2, ensure_ascii=False))}</pre>"
        return page(request, "document.html.j2", s, heading=f"{WORDS[lang]['datasheet']}: {lab}", body=body)

    @app.post("/api/me/self-check/{lab}", tags=["candidate"])
    async def self_check(lab: str, request: Request, s: Candidate) -> dict[str, Any]:
        """Smoke checks that reveal no hidden test: the files the brief names exist, a port it names answers."""
        checked(s, request.headers.get("x-csrf-token"))
        if lab not in exam.labs:
            raise HTTPException(404, "no such lab in this exam")
        params = json.loads(kit_file(s.user, lab, "lab-params.json").read_text(encoding="utf-8"))
        sheet = json.loads(kit_file(s.user, lab, "datasheet.json").read_text(encoding="utf-8"))
        ws = exam.workspace(s.user, lab)
        results = []
        for key in (
            "db_path",
            "read_tool",
            "rules_file",
            "dashboard_file",
            "alert_plan_file",
            "ca_file",
            "risk_register",
        ):
            rel = params.get(key)
            if isinstance(rel, str):
                p = ws / rel
                results.append({"what": f"{rel} exists", "ok": p.is_file() and not p.is_symlink()})
        port = params.get("exporter_port")
        if port:
            host = sheet.get("network", {}).get("workstation", "127.0.0.1")
            results.append({"what": f"something answers on {host}:{port}", "ok": await _answers(host, int(port))})
        return {"lab": lab, "checks": results}

    @app.post("/me/submit", include_in_schema=False)
    async def submit(request: Request, s: Candidate) -> Response:
        form = await request.form()
        checked(s, str(form.get("csrf", "")))
        c = portal.store.candidate(s.user)
        if c.get("frozen"):
            raise HTTPException(409, "your work is already frozen")
        commands = {}
        for lab in exam.labs:
            cmd = str(form.get(f"command-{lab}", "")).strip()[:500]
            commands[lab] = cmd or None
        with portal.store.lock:
            c["commands"] = commands
            portal.store.save()
        assert portal.jobs is not None
        await portal.jobs.freeze(s.user, "submitted", s.user)
        return RedirectResponse("/me", 303)

    @app.get("/me/report/{lab}", response_class=HTMLResponse, tags=["candidate"])
    def my_report(lab: str, s: Candidate) -> Response:
        if not portal.store.data["released"]:
            raise HTTPException(403, "results are not released yet")
        found = latest_doc(s.user, lab)
        if found is None:
            raise HTTPException(404, "no report for this lab")
        return FileResponse(found[1] / "report.html", media_type="text/html")

    @app.websocket("/me/terminal/{lab}")
    async def my_terminal(websocket: WebSocket, lab: str) -> None:
        s = portal.accounts.session(websocket.cookies.get(auth.SESSION_COOKIE))
        origin = websocket.headers.get("origin", "")
        host = websocket.headers.get("host", "")
        if s is None or s.role != auth.CANDIDATE or lab not in exam.labs or (origin and origin.split("//")[-1] != host):
            await websocket.close(code=1008)
            return
        if not isolated or not portal.store.may_work(s.user):
            await websocket.close(code=1008)
            return
        from aiotlab.simulators import addressing as ad

        ws_state = (ad.read_state(exam.plant_of(s.user, lab)) or {}).get("workstation") or {}
        if not ws_state.get("container"):
            await websocket.close(code=1011)
            return
        from .terminal import bridge

        await websocket.accept()
        assert portal.jobs is not None
        await bridge(
            websocket, ws_state["container"], "candidate", f"/home/candidate/{lab}", portal.jobs.closed[s.user]
        )

    # -- instructors ---------------------------------------------------------------------------------------
    @app.get("/instructor", response_class=HTMLResponse, tags=["instructor"])
    def instructor(request: Request, s: Instructor) -> HTMLResponse:
        return page(
            request,
            "instructor.html.j2",
            s,
            rows=[cohort_row(c) for c in exam.candidates],
            status=portal.store.status,
            released=portal.store.data["released"],
            audit=portal.store.audit_log(50)[::-1],
        )

    @app.get("/api/instructor/cohort", tags=["instructor"])
    def cohort_json(s: Instructor) -> dict[str, Any]:
        return {
            "status": portal.store.status,
            "released": portal.store.data["released"],
            "server_time": time.time(),
            "queue": portal.jobs.queue_length if portal.jobs else 0,
            "candidates": [cohort_row(c) for c in exam.candidates],
        }

    @app.get("/api/instructor/events", tags=["instructor"])
    async def events(request: Request, s: Instructor) -> StreamingResponse:
        """Server-sent events: the cohort, each time something changes (and every 5 s)."""

        async def stream() -> AsyncIterator[bytes]:
            while not await request.is_disconnected():
                yield f"data: {json.dumps(cohort_json(s), default=str)}\n\n".encode()
                portal.changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(portal.changed.wait(), 5.0)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    def targets(form: Any) -> list[str]:
        who = str(form.get("candidate", "")).strip()
        if who in ("", "*"):
            return list(exam.candidates)
        if who not in exam.candidates:
            raise HTTPException(404, f"no candidate {who!r} in this exam")
        return [who]

    @app.post("/instructor/action", include_in_schema=False)
    async def action(request: Request, s: Instructor) -> Response:
        form = await request.form()
        checked(s, str(form.get("csrf", "")))
        what = str(form.get("action", ""))
        try:
            await perform(s, what, form)
        except ValueError as exc:
            raise HTTPException(409, str(exc)) from None
        portal.notify()
        return RedirectResponse("/instructor", 303)

    @app.post("/api/instructor/action", tags=["instructor"])
    async def action_api(request: Request, s: Instructor) -> dict[str, Any]:
        """The same actions as the page's forms, for scripts: JSON {action, candidate?, minutes?}, header X-CSRF-Token."""
        checked(s, request.headers.get("x-csrf-token"))
        body = await request.json()
        try:
            await perform(s, str(body.get("action", "")), body)
        except ValueError as exc:
            raise HTTPException(409, str(exc)) from None
        portal.notify()
        return cohort_json(s)

    async def perform(s: auth.Session, what: str, form: Any) -> None:
        store, jobs = portal.store, portal.jobs
        assert jobs is not None
        if what in ("start", "pause", "resume", "end"):
            getattr(store, what)()
            store.audit(s.user, what)
        elif what == "extend":
            minutes = float(form.get("minutes") or 0)
            who = targets(form)
            store.extend(who, minutes)
            store.audit(s.user, "extend", candidates=who, minutes=minutes)
            for cid in who:  # time given back after the deadline: the workstation is theirs again
                await jobs.unfreeze(cid, s.user)
        elif what == "grade":
            who = targets(form)
            for cid in who:
                for lab in exam.labs:
                    jobs.queue(cid, lab, store.candidate(cid).get("commands", {}).get(lab), s.user)
            store.audit(s.user, "grade", candidates=who)
        elif what == "freeze":
            for cid in targets(form):
                await jobs.freeze(cid, "instructor", s.user)
        elif what == "release":
            with store.lock:
                store.data["released"] = True
                store.save()
            store.audit(s.user, "release")
        else:
            raise ValueError(f"unknown action {what!r}")

    def attempts_of(cid: str) -> dict[str, list[dict[str, Any]]]:
        """Every grading of the candidate, per lab, oldest first: when, the command, the score, the signature."""
        out: dict[str, list[dict[str, Any]]] = {}
        for lab in exam.labs:
            found = [d for d in (exam.reports / cid / lab).glob("attempt-*") if d.name[8:].isdigit()]
            for d in sorted(found, key=lambda d: int(d.name[8:])):
                row: dict[str, Any] = {"attempt": d.name, "score": None}
                try:
                    doc = json.loads((d / "report.json").read_text(encoding="utf-8"))
                    ok, findings = verified(d / "report.json")
                    row.update(
                        score=doc["score"],
                        graded_at=(doc.get("graded") or {}).get("finished"),
                        command=" ".join((doc.get("solution") or {}).get("command") or []) or None,
                        verified=ok,
                        findings=findings[-2:],
                        failed=[c["id"] for c in doc.get("checks", []) if c.get("status") != "pass"],
                    )
                except (OSError, ValueError, KeyError, TypeError):
                    row["error"] = "no readable report.json"
                out.setdefault(lab, []).append(row)
        return out

    @app.get("/api/instructor/candidate/{cid}", tags=["instructor"])
    def candidate_json(cid: str, s: Instructor) -> dict[str, Any]:
        """A candidate's attempts per lab (every grading is kept) and their portal state."""
        if cid not in exam.candidates:
            raise HTTPException(404, "no such candidate")
        return {"candidate": cid, "state": portal.store.candidate(cid), "attempts": attempts_of(cid)}

    @app.get("/instructor/candidate/{cid}", response_class=HTMLResponse, tags=["instructor"])
    def candidate_page(request: Request, cid: str, s: Instructor) -> HTMLResponse:
        """The same as a page: the attempt history an instructor reads before grading again or releasing."""
        if cid not in exam.candidates:
            raise HTTPException(404, "no such candidate")
        return page(
            request,
            "candidate_detail.html.j2",
            s,
            cid=cid,
            cand_name=portal.names.get(cid, ""),
            row=cohort_row(cid),
            attempts=attempts_of(cid),
        )

    @app.get("/assessor/report/{cid}/{lab}/{attempt}", tags=["assessor"])
    def assessor_attempt(cid: str, lab: str, attempt: str, s: Staff) -> Response:
        """One earlier attempt's report (the history links here)."""
        if cid not in exam.candidates or lab not in exam.labs or not re.fullmatch(r"attempt-\d{1,6}", attempt):
            raise HTTPException(404, "no report")
        path = exam.reports / cid / lab / attempt / "report.html"
        if not path.is_file():
            raise HTTPException(404, "no report")
        return FileResponse(path, media_type="text/html")

    @app.get("/instructor/audit", tags=["instructor"])
    def audit(s: Instructor) -> list[dict[str, Any]]:
        return portal.store.audit_log()

    def latest_docs() -> list[tuple[dict[str, Any], Path]]:
        return [found for c in exam.candidates for lab in exam.labs if (found := latest_doc(c, lab))]

    @app.get("/instructor/export/cohort.csv", tags=["instructor"])
    def export_csv(s: Instructor) -> Response:
        import tempfile

        from aiotlab.grader.cohort import write_cohort_csv

        with tempfile.TemporaryDirectory() as tmp:
            path = write_cohort_csv([d for d, _ in latest_docs()], Path(tmp) / "cohort.csv", portal.names)
            data = path.read_bytes()
        portal.store.audit(s.user, "export", what="cohort.csv")
        return Response(
            data,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{exam.id}-cohort.csv"'},
        )

    @app.get("/instructor/export/results.json", tags=["instructor"])
    def export_json(s: Instructor) -> JSONResponse:
        portal.store.audit(s.user, "export", what="results.json")
        return JSONResponse({"exam": exam.id, "reports": [d for d, _ in latest_docs()]})

    @app.get("/instructor/export/reports.zip", tags=["instructor"])
    def export_zip(s: Instructor) -> Response:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for doc, folder in latest_docs():
                for f in sorted(folder.rglob("*")):
                    if f.is_file() and not f.is_symlink():
                        z.write(f, f"{doc['candidate']}/{doc['lab']['id']}/{f.relative_to(folder)}")
            if exam.public_key.is_file():
                z.write(exam.public_key, "exam-public-key.pem")
        portal.store.audit(s.user, "export", what="reports.zip")
        return Response(
            buf.getvalue(),
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{exam.id}-reports.zip"'},
        )

    # -- assessors (and instructors) ------------------------------------------------------------------------
    @app.get("/assessor", response_class=HTMLResponse, tags=["assessor"])
    def assessor(request: Request, s: Staff) -> HTMLResponse:
        rows, rates = [], {}
        checks: dict[str, dict[str, dict[str, Any]]] = {}  # lab -> check -> passed / not assessable / of
        for doc, folder in latest_docs():
            ok, findings = verified(folder / "report.json")
            rows.append({"doc": doc, "verified": ok, "findings": findings[-3:]})
            for ind in doc["indicators"]:
                r = rates.setdefault(ind["id"], {"achieved": 0, "of": 0, "text": ind.get("text", {})})
                r["of"] += 1
                r["achieved"] += 1 if ind["achieved"] else 0
            for c in doc.get("checks", []):
                lab_checks = checks.setdefault(doc["lab"]["id"], {})
                r = lab_checks.setdefault(c["id"], {"passed": 0, "na": 0, "of": 0, "title": c.get("title", {})})
                r["of"] += 1
                r["passed"] += 1 if c.get("status") == "pass" else 0
                r["na"] += 1 if c.get("status") == "not_assessable" else 0
        return page(request, "assessor.html.j2", s, rows=rows, rates=rates, checks=checks)

    @app.get("/assessor/report/{cid}/{lab}", tags=["assessor"])
    def assessor_report(cid: str, lab: str, s: Staff) -> Response:
        found = latest_doc(cid, lab) if cid in exam.candidates else None
        if found is None:
            raise HTTPException(404, "no report")
        return FileResponse(found[1] / "report.html", media_type="text/html")

    # -- operations ------------------------------------------------------------------------------------------
    @app.get("/metrics", include_in_schema=False)
    def metrics() -> PlainTextResponse:
        if portal.jobs is not None:
            portal.m_queue.set(portal.jobs.queue_length)
            for d in portal.jobs.durations[portal._observed :]:
                portal.m_grading.observe(d)
            portal._observed = len(portal.jobs.durations)
        by_role: dict[str, int] = {}
        for sess in list(portal.accounts.sessions.values()):
            by_role[sess.role] = by_role.get(sess.role, 0) + 1
        for role in (auth.CANDIDATE, *auth.STAFF):
            portal.m_sessions.labels(role).set(by_role.get(role, 0))
        return PlainTextResponse(generate_latest(portal.registry).decode(), media_type="text/plain; version=0.0.4")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 401 and "text/html" in request.headers.get("accept", ""):
            return RedirectResponse("/login", 303)
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    return app


async def _answers(host: str, port: int) -> bool:
    try:
        _, w = await asyncio.wait_for(asyncio.open_connection(host, port), SELF_CHECK_TIMEOUT_S)
    except (OSError, TimeoutError, socket.gaierror):
        return False
    w.close()
    with contextlib.suppress(OSError):
        await w.wait_closed()
    return True
