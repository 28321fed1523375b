"""Per-candidate variation: deterministic, different between candidates, underivable without the secret."""

from __future__ import annotations

from aiotlab.simulators.launch import load_spec
from aiotlab.simulators.params import PlantIdentity, params_digest, resolve


def params(candidate: str, secret: str = "s3cret", seed: int | None = None) -> dict:
    return resolve(load_spec(), PlantIdentity.for_candidate(candidate, secret=secret, seed=seed))


def test_same_inputs_same_plant() -> None:
    assert params("alice") == params("alice")
    assert params_digest(params("alice")) == params_digest(params("alice"))


def test_candidates_differ_in_every_varied_kind() -> None:
    a, b = params("alice"), params("bob")
    assert params_digest(a) != params_digest(b)
    # over a cohort, each varied kind of parameter takes more than one value
    cohort = [params(f"c{i}") for i in range(12)]

    def seen(get) -> set:
        return {repr(get(p)) for p in cohort}

    assert len(seen(lambda p: p["process"]["tank"]["level_setpoint_m"])) > 1  # setpoints
    assert len(seen(lambda p: p["process"]["tank"]["area_m2"])) > 1  # process constants
    assert len(seen(lambda p: p["devices"]["plc1"]["tables"]["input_registers"]["tags"][0]["scale"])) > 1  # scale
    assert len(seen(lambda p: p["devices"]["plc1"]["tables"]["input_registers"]["base"])) > 1  # addresses
    assert len(seen(lambda p: p["devices"]["plc1"]["tables"]["input_registers"]["tags"][2]["word_order"])) > 1
    assert len(seen(lambda p: p["devices"]["plc2"]["default_users"]["operator"]["password"])) > 1  # credentials
    assert len(seen(lambda p: p["devices"]["em1"]["unit_id"])) > 1


def test_secret_matters() -> None:
    assert params_digest(params("alice", "one")) != params_digest(params("alice", "two"))


def test_seed_overrides_candidate() -> None:
    assert params("alice", seed=42) == params("bob", seed=42)
    assert params("alice", seed=42) != params("alice", seed=43)


def test_em1_unit_id_is_never_1() -> None:
    assert all(params(f"x{i}")["devices"]["em1"]["unit_id"] != 1 for i in range(30))
