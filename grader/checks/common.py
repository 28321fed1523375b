"""Helpers shared by the active (probe) checks: addresses, accounts, and all-or-nothing verdicts."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

from ..probes.mqtt import Account, verified_tls
from ..results import PASS, CheckResult, failed


def hosts(ctx: Any) -> dict[str, str]:
    return ctx.plant_info["addresses"]["hosts"]


def block(ctx: Any) -> str:
    return hosts(ctx)["broker"].rsplit(".", 1)[0]


def grader_host(ctx: Any) -> str:
    """Where the grader's own listeners bind (its Prometheus, receivers): the plant slot's control address on
    this host's loopback, which no candidate can bind or reach (in exam mode their workstation is a container,
    and a container has no route to the host's loopback)."""
    from aiotlab.simulators import addressing as ad

    return f"{ad.block(int(ctx.plant_info['addresses']['slot']))}.250"


ATTACKERS_PER_RUN = 4


def attackers(ctx: Any) -> list[str]:
    """This grading run's attacker source addresses: drawn afresh per run from the candidate's plant network,
    outside every address the plant or its allow-lists use, and never printed in a brief or kit (a firewall that
    denies only the addresses it was told about must not pass)."""
    if "attackers" not in ctx.cache:
        import secrets

        ctx.cache["attackers"] = [
            f"{block(ctx)}.{n}" for n in secrets.SystemRandom().sample(attacker_pool(ctx), ATTACKERS_PER_RUN)
        ]
    return ctx.cache["attackers"]


def attacker_pool(ctx: Any) -> list[int]:
    """Host numbers of the plant network no device, client or service of the plant uses."""
    taken = {int(a.rsplit(".", 1)[1]) for a in hosts(ctx).values() if a.startswith(block(ctx) + ".")}
    return [n for n in range(2, 250) if n not in taken and not 85 <= n <= 95]  # .90: the plant's Prometheus


def neighbours(ctx: Any, allowed: list[str]) -> list[str]:
    """Unused addresses next to each allowed source: one inside every CIDR widening of it (h XOR 2^k, k = 0..7: a
    /31 to /24 around the host holds the first of these it reaches) and one either side (a range one too wide). An
    allow-list written wider than its hosts lets at least one of them through, which random draws catch only by
    chance (an outsider's /29 around the collector passed three gradings in a row)."""
    pool = set(attacker_pool(ctx))
    out: list[str] = []
    for a in allowed:
        h = int(a.rsplit(".", 1)[1])
        for n in [h ^ (1 << k) for k in range(8)] + [h - 1, h + 1]:
            address = f"{block(ctx)}.{n}"
            if n in pool and address not in out and address not in allowed:
                out.append(address)
    return out


def attacker(ctx: Any, i: int = 0) -> str:
    """The i-th attacker source address of this grading run."""
    drawn = attackers(ctx)
    return drawn[i % len(drawn)]


def mqtt_account(ctx: Any, name: str) -> Account:
    return Account(name, str(ctx.params["mqtt_accounts"][name]))


def ua_password(ctx: Any, name: str) -> str:
    return str(ctx.params["ua_accounts"][name])


def ca_file(ctx: Any) -> Path:
    return Path(ctx.workspace) / str(ctx.params.get("ca_file", "pki/ca.crt"))


def tls_context(ctx: Any) -> ssl.SSLContext | None:
    """Verifying TLS context from the candidate's CA; None when the CA file is missing or unreadable."""
    try:
        return verified_tls(str(ca_file(ctx)))
    except (OSError, ssl.SSLError, ValueError):
        return None


def ca_missing(spec: dict[str, Any]) -> CheckResult:
    """The verdict of a TLS check that cannot verify the broker: no usable CA certificate in the workspace."""
    return failed(spec["id"], spec["points"], "The candidate's CA certificate is missing", "找不到考生的 CA 憑證")


async def control_get(ctx: Any, path: str) -> Any:
    return await asyncio.to_thread(ctx.control.get, path)


async def control_post(ctx: Any, path: str, body: Any) -> Any:
    """POST with a long timeout: restarting PLC-2 may take seconds on a loaded machine."""
    from aiotlab.simulators.control_client import DEVICE_OP_TIMEOUT_S, ControlClient

    slow = ControlClient(ctx.control.url, ctx.control.token, timeout=DEVICE_OP_TIMEOUT_S)
    return await asyncio.to_thread(slow.post, path, body)


def probes_failed(
    spec: dict[str, Any], probes: list[dict[str, Any]], bad: list[dict[str, Any]], evidence: dict[str, Any]
) -> CheckResult:
    """The failing verdict of a probe check: how many probes were not as required, and what the first one saw."""
    first = bad[0].get("why") or bad[0].get("what", "")
    first_zh = bad[0].get("why_zh") or first  # a probe without zh words of its own is quoted as observed
    return failed(
        spec["id"],
        spec["points"],
        f"{len(bad)} of {len(probes)} probe{'s' if len(probes) != 1 else ''} not as required; first: {first}",
        f"{len(probes)} 項探測中 {len(bad)} 項不符要求；第一項：{first_zh}",
        evidence,
    )


def all_ok(spec: dict[str, Any], probes: list[dict[str, Any]], en: str, zh: str, **extra: Any) -> CheckResult:
    """A hardening control holds only if every probe of it came out as expected: all-or-nothing, with evidence."""
    bad = [p for p in probes if not p.get("ok")]
    evidence = {"probes": probes, **extra}
    if not probes:
        return failed(spec["id"], spec["points"], "Nothing could be probed", "無可探測的項目", evidence)
    if bad:
        return probes_failed(spec, probes, bad, evidence)
    return CheckResult(
        spec["id"],
        PASS,
        spec["points"],
        spec["points"],
        {
            "en": f"{en} ({len(probes)} probe{'s' if len(probes) != 1 else ''})",
            "zh-TW": f"{zh}（{len(probes)} 項探測）",
        },
        evidence,
    )
