"""UA-* checks: PLC-2's OPC UA server probed with the grader's certificate, issued accounts and attacks.

Every refusal is only trusted after a control probe proves the grader itself gets in (its certificate trusted and
its account working): otherwise "anonymous refused" could just mean "everyone refused".
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from pathlib import Path
from typing import Any

from asyncua import ua

from ..probes import opcua as up
from ..results import CheckResult, failed
from . import check
from .common import all_ok, control_get, ua_password


def url(ctx: Any) -> str:
    return ctx.sheet["plc2"]["endpoint"]


async def best_endpoint(ctx: Any) -> tuple[str, str] | None:
    """A strong (policy, mode) the server offers, SignAndEncrypt first; None when it offers none."""
    try:
        eps = await up.endpoints(url(ctx))
    except Exception:  # noqa: BLE001 - an unreachable server has no endpoint
        return None
    for mode in ("SignAndEncrypt", "Sign"):
        for e in eps:
            if e["policy"] in up.STRONG_POLICIES and e["mode"] == mode:
                return e["policy"], mode
    return None


async def try_session(
    ctx: Any,
    user: str | None,
    password: str | None,
    cert: tuple[Path, Path] | None = None,
    app_uri: str = up.GRADER_URI,
) -> tuple[bool, str]:
    ep = await best_endpoint(ctx)
    if ep is None:
        return False, "no strong endpoint offered"
    try:
        async with asyncio.timeout(15):
            async with up.session(url(ctx), ep[0], ep[1], cert or await up.grader_cert(), user, password, app_uri) as c:
                await c.nodes.server.read_browse_name()
        return True, f"session over {ep[0]}/{ep[1]} as {user or 'anonymous'}"
    except Exception as exc:  # noqa: BLE001 - a refusal is the observation
        return False, up.refusal(exc)


async def control_probe(ctx: Any) -> dict[str, Any]:
    user = ctx.params["ua_probe_account"]
    ok, how = await try_session(ctx, user, ua_password(ctx, user))
    return {
        "what": f"control: grader certificate and account {user} get a session",
        "observed": how,
        "ok": ok,
        "why": f"the grader's own session failed ({how}): certificate not trusted or account not provisioned",
    }


@check("ua.strong_endpoints")
async def strong_endpoints(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    modes = set(ctx.params.get("ua_modes", ["Sign", "SignAndEncrypt"]))
    try:
        eps = await up.endpoints(url(ctx))
    except Exception as exc:  # noqa: BLE001
        return failed(spec["id"], spec["points"], f"GetEndpoints failed: {exc}", f"GetEndpoints 失敗：{exc}")
    probes = [
        {
            "what": f"endpoint {e['policy']}/{e['mode']}",
            "observed": e,
            "ok": e["policy"] in up.STRONG_POLICIES and e["mode"] in modes,
            "why": f"weak endpoint offered: {e['policy']}/{e['mode']}",
        }
        for e in eps
    ]
    return all_ok(
        spec,
        probes,
        f"Only strong endpoints ({', '.join(sorted(modes))})",
        f"僅提供強式端點（{', '.join(sorted(modes))}）",
    )


@check("ua.no_none_session")
async def no_none_session(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    user = ctx.params["ua_probe_account"]
    probes = []
    for who, pw in ((user, ua_password(ctx, user)), (None, "")):
        try:
            async with asyncio.timeout(15):
                got = await up.raw_none_session(url(ctx), who, pw)
            probes.append(
                {
                    "what": f"session over a None channel as {who or 'anonymous'}",
                    "observed": f"read {got}",
                    "ok": False,
                    "why": f"a session over SecurityPolicy#None as {who or 'anonymous'} could read",
                }
            )
        except Exception as exc:  # noqa: BLE001
            probes.append(
                {
                    "what": f"session over a None channel as {who or 'anonymous'}",
                    "observed": up.refusal(exc),
                    "ok": True,
                }
            )
    return all_ok(spec, probes, "No session can be opened over a None channel", "無法透過 None 通道建立工作階段")


@check("ua.anonymous_refused")
async def anonymous_refused(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    probes = [await control_probe(ctx)]
    with contextlib.suppress(Exception):
        eps = await up.endpoints(url(ctx))
        offered = sorted({e["policy"] + "/" + e["mode"] for e in eps if "Anonymous" in e["tokens"]})
        probes.append(
            {
                "what": "no endpoint offers the Anonymous token",
                "observed": offered or "none",
                "ok": not offered,
                "why": f"Anonymous offered on {offered}",
            }
        )
    ok, how = await try_session(ctx, None, None)
    probes.append(
        {
            "what": "anonymous session over a secure channel",
            "observed": how,
            "ok": not ok,
            "why": "an anonymous session was accepted",
        }
    )
    return all_ok(spec, probes, "Anonymous access is refused", "匿名存取被拒")


@check("ua.passwords")
async def passwords(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    probes = [await control_probe(ctx)]
    user = ctx.params["ua_probe_account"]
    attempts = [
        (user, ua_password(ctx, user) + "x", "issued account, wrong password"),
        ("admin", "admin", "admin/admin"),
        ("aiotlab-nobody", "guess-123", "unknown user"),
    ]
    attempts += [
        (name, str(u["password"]), "factory default credentials")
        for name, u in ctx.sheet["plc2"]["default_users"].items()
    ]
    for name, pw, what in attempts:
        ok, how = await try_session(ctx, name, pw)
        probes.append({"what": f"{what}: {name}", "observed": how, "ok": not ok, "why": f"{what} {name} accepted"})
    return all_ok(
        spec, probes, "Passwords are checked; factory defaults no longer work", "密碼確實檢查；出廠預設帳密已失效"
    )


@check("ua.trust_list")
async def trust_list(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    probes = [await control_probe(ctx)]
    user = ctx.params["ua_probe_account"]
    with tempfile.TemporaryDirectory() as tmp:
        rogue = await up.make_cert(Path(tmp), "rogue", up.GRADER_URI)
        ok, how = await try_session(ctx, user, ua_password(ctx, user), cert=rogue)
    probes.append(
        {
            "what": "untrusted self-signed client certificate with valid credentials",
            "observed": how,
            "ok": not ok,
            "why": "a client with an untrusted certificate got a session",
        }
    )
    return all_ok(spec, probes, "Only trusted client certificates are accepted", "僅接受受信任的用戶端憑證")


async def write_attempt(ctx: Any, user: str, node_path: str, value: float) -> tuple[bool, str]:
    ep = await best_endpoint(ctx)
    if ep is None:
        return False, "no strong endpoint offered"
    try:
        async with asyncio.timeout(15):
            async with up.session(url(ctx), ep[0], ep[1], await up.grader_cert(), user, ua_password(ctx, user)) as c:
                node = await up.plant_node(c, node_path)
                await node.write_value(ua.DataValue(ua.Variant(value, ua.VariantType.Double)))
        return True, "write accepted"
    except Exception as exc:  # noqa: BLE001
        return False, up.refusal(exc)


@check("ua.write_roles")
async def write_roles(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """Only the engineer role writes; refused writes leave ground truth unchanged; the engineer's write lands."""
    tag, node_path = ctx.params["ua_write_target"]["truth"], ctx.params["ua_write_target"]["node"]
    lo, hi = ctx.params["ua_write_target"]["range"]
    probes = []
    before = (await control_get(ctx, "/v1/values"))["values"][tag]
    for user in ctx.params["ua_denied_writers"]:
        value = round(lo + (hi - lo) * 0.37, 1) if abs(before - (lo + (hi - lo) * 0.37)) > 1 else round(lo + 1.5, 1)
        ok, how = await write_attempt(ctx, user, node_path, value)
        after = (await control_get(ctx, "/v1/values"))["values"][tag]
        probes.append(
            {
                "what": f"{user} writes {node_path} = {value}",
                "observed": f"{how}; truth {before} -> {after}",
                "ok": not ok and after == before,
                "why": f"{user} could write {node_path}",
            }
        )
        if after != before:
            await asyncio.to_thread(ctx.control.post, "/v1/tags", {tag: before})
    writer = ctx.params["ua_allowed_writer"]
    target = round(before + 1.0 if before + 1.0 <= hi else before - 1.0, 3)
    ok, how = await write_attempt(ctx, writer, node_path, target)
    await asyncio.sleep(0.3)
    after = (await control_get(ctx, "/v1/values"))["values"][tag]
    probes.append(
        {
            "what": f"{writer} writes {node_path} = {target}",
            "observed": f"{how}; truth {before} -> {after}",
            "ok": ok and abs(after - target) < 1e-6,
            "why": f"the engineer's write did not take effect ({how})",
        }
    )
    if after != before:
        await asyncio.to_thread(ctx.control.post, "/v1/tags", {tag: before})
    return all_ok(
        spec,
        probes,
        "Writes only for the engineer role; refused writes change nothing",
        "僅工程師角色可寫入；被拒寫入未改變任何值",
    )
