"""UA-* checks: PLC-2's OPC UA server probed with the grader's certificate, issued accounts and attacks.

Fail closed (see probing.py): a refusal counts only when the server itself refused with the status code the
probe expects AND a positive control succeeded in the same check (the grader's certificate and issued account get
a session over a strong endpoint); a session or write that got through is a violation however the control went;
anything else (PLC-2 silent, a timeout, an unexpected status) is "not assessable", never a pass.

Who owns a defect that keeps the grader out (one defect fails one check; the others are not assessable, naming it):
- PLC-2 does not answer, or offers no strong endpoint, or lists SecurityPolicy None: ua.strong_endpoints;
- the grader's certificate is refused: ua.trust_list; an issued account is refused: ua.passwords.
A lab without the owning check gives the defect to the first check of its own that meets it.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncua import ua

from ..probes import opcua as up
from ..results import GRADER_OVERLOADED, CheckResult
from . import check
from .common import control_get, ua_password
from .probing import block, judge, owner_of, probe

IDENTITY_REFUSED = {"BadUserAccessDenied", "BadIdentityTokenRejected", "BadIdentityTokenInvalid"}
CHANNEL_REFUSED = {"BadSecurityPolicyRejected", "BadSecurityModeRejected", "BadSecurityChecksFailed"} | IDENTITY_REFUSED
CERTIFICATE_REFUSED = {
    "BadCertificateUntrusted",
    "BadSecurityChecksFailed",
    "BadCertificateInvalid",
    "BadCertificateUriInvalid",
    "BadCertificateUseNotAllowed",
    "BadCertificateTimeInvalid",
    "BadCertificateIssuerRevocationUnknown",
    "BadCertificateRevocationUnknown",
}
WRITE_REFUSED = {"BadUserAccessDenied", "BadNotWritable", "BadWriteNotSupported"}
CALL_REFUSED = {"BadUserAccessDenied", "BadNotExecutable"}
CONTROL_USERS = ("ua.no_none_session", "ua.anonymous_refused", "ua.passwords", "ua.trust_list", "ua.roles")

CAUSES = {
    "plc2-unreachable": (
        "ua.strong_endpoints",
        "PLC-2 does not answer OPC UA GetEndpoints",
        "PLC-2 未回應 OPC UA GetEndpoints",
    ),
    "plc2-no-strong-endpoint": (
        "ua.strong_endpoints",
        "PLC-2 offers no strong endpoint: the grader cannot open the secure session its OPC UA probes need",
        "PLC-2 未提供強式端點：評分程式無法建立 OPC UA 探測所需的安全工作階段",
    ),
    "plc2-none-listed": (
        "ua.strong_endpoints",
        "PLC-2 lists SecurityPolicy None: a None-channel session is then allowed by its configuration, so whether "
        "unlisted channels are refused (reject_unlisted_channels) cannot be probed",
        "PLC-2 列出 SecurityPolicy None：其設定即允許 None 通道工作階段，因此無法探測是否拒絕未列出的通道"
        "（reject_unlisted_channels）",
    ),
    "ua-grader-certificate-refused": (
        "ua.trust_list",
        "PLC-2 refuses the grader's certificate (not in its trust list)",
        "PLC-2 拒絕評分程式憑證（不在信任清單中）",
    ),
    "ua-grader-account-refused": (
        "ua.passwords",
        "PLC-2 refuses an issued account with its issued password",
        "PLC-2 拒絕以核發密碼登入之核發帳號",
    ),
}


def url(ctx: Any) -> str:
    return ctx.sheet["plc2"]["endpoint"]


@dataclass
class Survey:
    """What GetEndpoints showed: every endpoint, the best strong one within the lab's modes, whether None is listed."""

    error: str | None = None
    endpoints: list[dict[str, Any]] = field(default_factory=list)
    strong: tuple[str, str] | None = None
    none_listed: bool = False

    @property
    def session_endpoint(self) -> tuple[str | None, str | None] | None:
        """Where to try sessions: the best strong endpoint, else the None endpoint when that is all there is
        (a violation seen there is as real; a refusal there is not trusted without a control)."""
        if self.strong:
            return self.strong
        return (None, None) if self.none_listed else None


def lab_modes(ctx: Any) -> list[str]:
    return list(ctx.params.get("ua_modes", ["Sign", "SignAndEncrypt"]))


async def survey(ctx: Any) -> Survey:
    got = await up.attempts(lambda: up.endpoints(url(ctx)), 20.0)
    if not got.accepted:
        return Survey(error=got.describe())
    eps = got.value
    out = Survey(endpoints=eps, none_listed=any(e["policy"] == "None" for e in eps))
    for mode in ("SignAndEncrypt", "Sign"):
        if mode not in lab_modes(ctx):
            continue
        for e in eps:
            if e["policy"] in up.STRONG_POLICIES and e["mode"] == mode and out.strong is None:
                out.strong = (e["policy"], mode)
    return out


def cause_words(cause: str, account: str | None = None) -> tuple[str, str]:
    """(en, zh-TW) of a cause, naming the account it is about when there is one."""
    _, en, zh = CAUSES[cause]
    if account:
        en = en.replace("an issued account", f"the issued account {account}")
        zh = zh.replace("之核發帳號", f"之核發帳號 {account}")
    return en, zh


def cause_probe(
    ctx: Any, spec: dict[str, Any], cause: str, what: str, observed: Any, account: str | None = None
) -> dict[str, Any]:
    """A probe the grader could not get past because of a candidate defect: a violation in the check that owns the
    defect, "not assessable" (naming it) everywhere else."""
    preferred = CAUSES[cause][0]
    en, zh = cause_words(cause, account)
    candidates = (preferred,) if preferred == "ua.strong_endpoints" else CONTROL_USERS
    owner = owner_of(ctx, preferred, candidates, spec["id"])
    block(ctx, spec, cause, en, zh, owner)
    if owner == spec["id"]:
        return probe(what, observed, False, why=f"{en}: {observed}", why_zh=f"{zh}：{observed}")
    return probe(what, observed, None, cause=cause, unsure=en, unsure_zh=zh)


async def open_session(
    ctx: Any,
    ep: tuple[str | None, str | None],
    user: str | None,
    password: str | None,
    cert: tuple[Path, Path] | None = None,
) -> up.Outcome:
    """One session attempt that reads the Server object's browse name."""

    async def go() -> str:
        c_cert = None if ep[0] is None else (cert or await up.grader_cert())
        async with up.session(url(ctx), ep[0], ep[1], c_cert, user, password) as c:
            name = await c.nodes.server.read_browse_name()
        return str(name.Name)

    where = f"{ep[0]}/{ep[1]}" if ep[0] else "SecurityPolicy None"
    return await up.attempts(go, 30.0, f"session over {where} as {user or 'anonymous'}")


async def control(ctx: Any, spec: dict[str, Any], sv: Survey | None = None) -> dict[str, Any]:
    """The positive control: the grader's certificate and the probe account get a session over a strong endpoint."""
    user = ctx.params["ua_probe_account"]
    what = f"control: the grader's certificate and issued account {user} get a session over a strong endpoint"
    sv = sv or await survey(ctx)
    if sv.error:
        return cause_probe(ctx, spec, "plc2-unreachable", what, f"GetEndpoints: {sv.error}")
    if sv.strong is None:
        offered = sorted({f"{e['policy']}/{e['mode']}" for e in sv.endpoints})
        return cause_probe(ctx, spec, "plc2-no-strong-endpoint", what, f"endpoints offered: {offered}")
    got = await open_session(ctx, sv.strong, user, ua_password(ctx, user))
    if got.accepted:
        return probe(what, got.describe(), True, expected="a session")
    if got.refused_with(CERTIFICATE_REFUSED):
        return cause_probe(ctx, spec, "ua-grader-certificate-refused", what, got.describe())
    if got.refused_with(IDENTITY_REFUSED):
        return cause_probe(ctx, spec, "ua-grader-account-refused", what, got.describe(), account=user)
    return probe(
        what,
        got.describe(),
        None,
        cause=inconclusive_cause(got),
        unsure=f"the grader's control session neither opened nor was refused ({got.describe()})",
        unsure_zh=f"評分程式的對照工作階段既未建立也未被拒絕（{got.describe()}）",
    )


def inconclusive_cause(got: up.Outcome) -> str:
    """Why an attempt proved nothing: still timing out after its retries is the host's lag (the engine grades
    again); anything else PLC-2 answered that no probe expects."""
    return GRADER_OVERLOADED if got.kind in up.TRANSIENT else "plc2-no-answer"


def negative(
    what: str,
    got: up.Outcome,
    codes: set[str],
    expected: str,
    violation: str,
    violation_zh: str | None = None,
    what_zh: str | None = None,
) -> dict[str, Any]:
    """A probe that must be refused: a violation when it got through, as required only when the server refused
    with one of `codes`, otherwise inconclusive (`what_zh`: the probe in the assessors' language)."""
    if got.accepted:
        return probe(
            what,
            got.describe(),
            False,
            expected=expected,
            why=f"{violation} ({got.describe()})",
            why_zh=f"{violation_zh}（{got.describe()}）" if violation_zh else None,
        )
    if got.refused_with(codes):
        return probe(what, got.describe(), True, expected=expected)
    return probe(
        what,
        got.describe(),
        None,
        expected=expected,
        cause=inconclusive_cause(got),
        unsure=f"{what}: PLC-2 neither accepted it nor refused it with a status this probe can judge "
        f"({got.describe()})",
        unsure_zh=f"{what_zh or what}：PLC-2 既未接受，也未以本探測可判定的狀態碼拒絕（{got.describe()}）",
    )


@check("ua.strong_endpoints")
async def strong_endpoints(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """Every endpoint is strong (policy and mode), at least one exists, and PLC-2 answers at all."""
    modes = lab_modes(ctx)
    sv = await survey(ctx)
    if sv.error:
        return judge(
            ctx, spec, [cause_probe(ctx, spec, "plc2-unreachable", "GetEndpoints", sv.error)], "PLC-2 answers", ""
        )
    probes = [
        probe(
            f"endpoint {e['policy']}/{e['mode']}",
            e,
            e["policy"] in up.STRONG_POLICIES and e["mode"] in modes,
            expected=f"policy one of {sorted(up.STRONG_POLICIES)}, mode one of {modes}",
            why=f"weak endpoint offered: {e['policy']}/{e['mode']}",
            why_zh=f"提供了弱端點：{e['policy']}/{e['mode']}",
        )
        for e in sv.endpoints
    ]
    if sv.strong is None:
        offered = sorted({f"{e['policy']}/{e['mode']}" for e in sv.endpoints})
        probes.append(cause_probe(ctx, spec, "plc2-no-strong-endpoint", "a strong endpoint is offered", offered))
    if sv.none_listed:
        block(ctx, spec, "plc2-none-listed", *CAUSES["plc2-none-listed"][1:], spec["id"])
    return judge(
        ctx, spec, probes, f"Only strong endpoints ({', '.join(modes)})", f"僅提供強式端點（{', '.join(modes)}）"
    )


@check("ua.no_none_session")
async def no_none_session(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """Sessions over an unlisted SecurityPolicy#None channel (the compatibility mode) are refused by the server,
    beside a control session that succeeds."""
    sv = await survey(ctx)
    ctl = await control(ctx, spec, sv)
    if sv.none_listed:
        return judge(
            ctx,
            spec,
            [ctl, cause_probe(ctx, spec, "plc2-none-listed", "SecurityPolicy None is not listed", "None listed")],
            "",
            "",
        )
    probes = [ctl]
    user = ctx.params["ua_probe_account"]
    for who, pw in ((user, ua_password(ctx, user)), (None, "")):
        got = await up.attempts(
            lambda who=who, pw=pw: up.raw_none_session(url(ctx), who, pw), 30.0, "read the Server object"
        )
        probes.append(
            negative(
                f"hand-built session over an unlisted None channel as {who or 'anonymous'}",
                got,
                CHANNEL_REFUSED,
                f"refused by the server ({', '.join(sorted(CHANNEL_REFUSED))})",
                f"a session over SecurityPolicy#None as {who or 'anonymous'} could read",
                f"以 {who or '匿名'} 身分經 SecurityPolicy#None 建立的工作階段可以讀取",
                f"以 {who or '匿名'} 身分經未列出的 None 通道手動建立工作階段",
            )
        )
    return judge(ctx, spec, probes, "No session can be opened over a None channel", "無法透過 None 通道建立工作階段")


@check("ua.anonymous_refused")
async def anonymous_refused(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    sv = await survey(ctx)
    probes = [await control(ctx, spec, sv)]
    if not sv.error:
        offered = sorted({f"{e['policy']}/{e['mode']}" for e in sv.endpoints if "Anonymous" in e["tokens"]})
        probes.append(
            probe(
                "endpoints offering the Anonymous identity token",
                offered or "none",
                not offered,
                expected="none",
                why=f"the Anonymous token is offered on {offered}",
                why_zh=f"{offered} 提供匿名（Anonymous）登入",
            )
        )
    ep = sv.session_endpoint
    if ep is not None:
        got = await open_session(ctx, ep, None, None)
        probes.append(
            negative(
                f"anonymous session over {ep[0] or 'None'}/{ep[1] or 'None'}",
                got,
                IDENTITY_REFUSED,
                "refused by the server",
                "an anonymous session was accepted",
                "匿名工作階段被接受",
                f"經 {ep[0] or 'None'}/{ep[1] or 'None'} 的匿名工作階段",
            )
        )
    return judge(ctx, spec, probes, "Anonymous access is refused", "匿名存取被拒")


@check("ua.passwords")
async def passwords(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """Every issued account logs in with its password; wrong, unknown and factory credentials are refused."""
    sv = await survey(ctx)
    probes = [await control(ctx, spec, sv)]
    ep = sv.session_endpoint
    if ep is None:
        return judge(ctx, spec, probes, "", "")
    user = ctx.params["ua_probe_account"]
    for name in ctx.params["ua_accounts"]:
        if name == user or ep[0] is None:
            continue
        got = await open_session(ctx, ep, name, ua_password(ctx, name))
        what = f"issued account {name} logs in with its issued password"
        if got.accepted:
            probes.append(probe(what, got.describe(), True, expected="a session"))
        elif got.refused_with(IDENTITY_REFUSED):
            block(ctx, spec, "ua-grader-account-refused", *cause_words("ua-grader-account-refused", name), spec["id"])
            probes.append(
                probe(
                    what,
                    got.describe(),
                    False,
                    why=f"issued account {name} refused ({got.describe()})",
                    why_zh=f"核發的帳號 {name} 遭拒（{got.describe()}）",
                )
            )
        else:
            probes.append(negative(what, got, set(), "a session", "", what_zh=f"核發帳號 {name} 以其核發密碼登入"))
    attempts = [
        (user, ua_password(ctx, user) + "x", "issued account with a wrong password"),
        ("admin", "admin", "admin/admin"),
        ("aiotlab-nobody", "guess-123", "unknown user"),
    ]
    attempts += [
        (name, str(u["password"]), "factory default credentials")
        for name, u in ctx.sheet["plc2"]["default_users"].items()
    ]
    for name, pw, what in attempts:
        got = await open_session(ctx, ep, name, pw)
        probes.append(
            negative(
                f"{what}: {name}",
                got,
                IDENTITY_REFUSED,
                "refused by the server",
                f"{what} {name} accepted",
                f"{WHAT_ZH.get(what, what)} {name} 被接受",
                f"{WHAT_ZH.get(what, what)}：{name}",
            )
        )
    probes.append(await only_issued_accounts(ctx))
    return judge(
        ctx,
        spec,
        probes,
        "Exactly the issued accounts: passwords are checked, factory defaults no longer work, no other account",
        "恰為核發的帳號：密碼確實檢查、出廠預設帳密已失效、無其他帳號",
    )


async def only_issued_accounts(ctx: Any) -> dict[str, Any]:
    """An account nobody was issued cannot be found by logging in (its name is unknown): PLC-2's saved config
    (what it runs after a restart) is read instead. `anonymous` is ua.anonymous_refused's."""
    import yaml

    issued = set(ctx.params["ua_accounts"])
    try:
        text = (await control_get(ctx, "/v1/config/plc2.yaml")).get("text", "")
        users = yaml.safe_load(text).get("users") or {}
        names = {str(n) for n in users} if isinstance(users, dict) else set()
    except Exception as exc:  # noqa: BLE001 - a config the grader cannot read is no evidence either way
        return probe(
            "PLC-2's saved config lists only the issued accounts",
            f"unreadable: {str(exc)[:200]}",
            None,
            unsure=f"PLC-2's saved config could not be read ({str(exc)[:200]})",
            unsure_zh=f"無法讀取 PLC-2 已儲存的設定（{str(exc)[:200]}）",
        )
    extra = sorted(names - issued - {"anonymous"})
    return probe(
        "PLC-2's saved config lists only the issued accounts",
        {"accounts": sorted(names), "not_issued": extra},
        not extra,
        expected=f"only {', '.join(sorted(issued))}",
        why=f"PLC-2 has accounts that were not issued: {', '.join(extra)} (plc2.yaml users)",
        why_zh=f"PLC-2 有未核發的帳號：{', '.join(extra)}（plc2.yaml 的 users）",
    )


WHAT_ZH = {
    "issued account with a wrong password": "核發帳號搭配錯誤密碼",
    "admin/admin": "admin/admin",
    "unknown user": "不存在的使用者",
    "factory default credentials": "出廠預設帳密",
}


@check("ua.trust_list")
async def trust_list(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """The grader's certificate is accepted (the control) and a rogue self-signed one with the same ApplicationUri
    and valid credentials is refused."""
    sv = await survey(ctx)
    probes = [await control(ctx, spec, sv)]
    if sv.strong is not None:
        user = ctx.params["ua_probe_account"]
        with tempfile.TemporaryDirectory() as tmp:
            rogue = await up.make_cert(Path(tmp), "rogue", up.GRADER_URI)
            got = await open_session(ctx, sv.strong, user, ua_password(ctx, user), cert=rogue)
        probes.append(
            negative(
                "untrusted self-signed client certificate (ApplicationUri urn:aiotlab:grader) with valid credentials",
                got,
                CERTIFICATE_REFUSED,
                "refused by the server",
                "a client with an untrusted certificate got a session",
                "使用不受信任憑證的用戶端取得了工作階段",
                "以不受信任的自簽用戶端憑證（ApplicationUri urn:aiotlab:grader）搭配有效帳密連線",
            )
        )
    return judge(ctx, spec, probes, "Only trusted client certificates are accepted", "僅接受受信任的用戶端憑證")


async def truth_of(ctx: Any, tag: str) -> float:
    return float((await control_get(ctx, "/v1/values"))["values"][tag])


async def restore(ctx: Any, tag: str, value: float) -> None:
    await asyncio.to_thread(ctx.control.post, "/v1/tags", {tag: value})


async def role_probes(ctx: Any, spec: dict[str, Any], ep: tuple[str, str], name: str) -> list[dict[str, Any]]:
    """One issued account's session: a write to the target node and a harmless method call, each as its role's
    permissions say (write lands in ground truth or leaves it unchanged; call executes or is refused)."""
    target = ctx.params["ua_write_target"]
    tag, node_path, (lo, hi) = target["truth"], target["node"], target["range"]
    role = ctx.params["ua_roles"][name]
    perms = set(ctx.params["ua_role_permissions"][role])
    out: list[dict[str, Any]] = []
    before = await truth_of(ctx, tag)
    value = round(before + 1.0 if before + 1.0 <= hi else before - 1.0, 1)
    value = value if lo <= value <= hi else round((lo + hi) / 2, 1)
    ns = "urn:aiotlab:plant"
    results: dict[str, up.Outcome] = {}

    async def go() -> None:
        if "write" in results:  # tried again after the probes ran (the session's end timed out): not again
            return
        async with up.session(url(ctx), ep[0], ep[1], await up.grader_cert(), name, ua_password(ctx, name)) as c:
            idx = await c.get_namespace_index(ns)
            node = c.get_node(f"ns={idx};s={node_path}")
            results["write"] = await up.attempt(
                node.write_value(ua.DataValue(ua.Variant(value, ua.VariantType.Double))), 10.0, "write accepted"
            )
            state = await c.get_node(f"ns={idx};s=Plant.FillingLine.State").read_value()
            method = "Start" if state == 2 else "ResetFault"  # changes nothing in that state: a harmless call
            line = c.get_node(f"ns={idx};s=Plant.FillingLine")
            results["call"] = await up.attempt(
                line.call_method(ua.NodeId(f"Plant.FillingLine.{method}", idx)), 10.0, f"{method} executed"
            )
            results["call_method"] = up.Outcome("accepted", method)

    opened = await up.attempts(go, 45.0)
    what_login = f"{name} ({role}: {', '.join(sorted(perms))}) gets a session"
    if not opened.accepted and "write" not in results:
        if opened.refused_with(IDENTITY_REFUSED):
            return [cause_probe(ctx, spec, "ua-grader-account-refused", what_login, opened.describe(), account=name)]
        if opened.refused_with(CERTIFICATE_REFUSED):
            return [cause_probe(ctx, spec, "ua-grader-certificate-refused", what_login, opened.describe())]
        what_login_zh = f"{name}（角色 {role}：{', '.join(sorted(perms))}）取得工作階段"
        return [negative(what_login, opened, set(), "a session", "", what_zh=what_login_zh)]
    await asyncio.sleep(0.3)
    after = await truth_of(ctx, tag)
    wrote = results["write"]
    what = f"{name} ({role}) writes {node_path} = {value}"
    observed = f"{wrote.describe()}; ground truth {before} -> {after}"
    if "write" in perms:
        ok = wrote.accepted and abs(after - value) < 1e-6
        out.append(
            probe(
                what,
                observed,
                ok,
                expected="write lands",
                why=f"the {role}'s write did not land: {observed}",
                why_zh=f"角色 {role} 的寫入未生效：{observed}",
            )
        )
    elif wrote.accepted or after != before:
        out.append(
            probe(
                what,
                observed,
                False,
                expected="refused, truth unchanged",
                why=f"{name} wrote: {observed}",
                why_zh=f"{name} 寫入成功（應被拒絕）：{observed}",
            )
        )
    else:
        what_zh = f"{name}（角色 {role}）寫入 {node_path} = {value}"
        out.append(negative(what, wrote, WRITE_REFUSED, "refused, truth unchanged", "", what_zh=what_zh))
    if after != before:
        await restore(ctx, tag, before)
    called = results.get("call")
    if called is not None:
        method = results["call_method"].detail
        what = f"{name} ({role}) calls FillingLine.{method} (changes nothing in the line's current state)"
        if "call" in perms:
            out.append(
                probe(
                    what,
                    called.describe(),
                    called.accepted,
                    expected="executed",
                    why=f"the {role}'s call was refused ({called.describe()})",
                    why_zh=f"角色 {role} 的方法呼叫遭拒（{called.describe()}）",
                )
            )
        else:
            out.append(
                negative(
                    what,
                    called,
                    CALL_REFUSED,
                    "refused",
                    f"{name} ({role}) could call {method}, which its role may not",
                    f"{name}（角色 {role}）可以呼叫 {method}，但其角色不允許",
                    f"{name}（角色 {role}）呼叫 FillingLine.{method}（在產線目前狀態下不會改變任何東西）",
                )
            )
    return out


@check("ua.roles")
async def roles(ctx: Any, spec: dict[str, Any]) -> CheckResult:
    """Each issued account has exactly its role's permissions: writes only for roles with `write` (refused writes
    change nothing in ground truth, the engineer's lands and is undone), calls only for roles with `call`."""
    sv = await survey(ctx)
    probes = [await control(ctx, spec, sv)]
    if sv.strong is not None:
        for name in ctx.params["ua_roles"]:
            probes += await role_probes(ctx, spec, sv.strong, name)
    return judge(
        ctx,
        spec,
        probes,
        "Each account has exactly its role's permissions (write, call)",
        "每個帳號恰有其角色之權限（寫入、呼叫）",
    )
