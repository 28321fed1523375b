"""Standards as data and the lab format: lookups, renderings, validation of lab definitions, candidate briefs."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiotlab.grader.standards import indicator, standard, standards
from aiotlab.labs import loader
from aiotlab.simulators.yamlconf import ConfigError

from conftest import PlantHandle, cli


def test_all_standards_and_indicators_present_with_english() -> None:
    counts = {c: len(s["indicators"]) for c, s in standards().items()}
    assert counts == {
        "INM2521-001v2": 16,
        "INM3513-005v4": 32,
        "INM3513-009v1": 32,
        "SET2519-001v3": 15,
        "SMS2512-002v1": 12,
    }
    for s in standards().values():
        assert s["title"]["zh-TW"] and s["title"]["en"]
        for i in s["indicators"]:
            assert i["zh-TW"] and i["en"] and i["task"], i["id"]
            assert i["id"] == f"{s['code']}/{i['code']}"


def test_p_codes_are_namespaced() -> None:
    a, b = indicator("INM3513-009v1/P2.1.1"), indicator("SET2519-001v3/P2.1.1")
    assert a["zh-TW"] != b["zh-TW"]
    assert "不影響生產" in b["zh-TW"]
    with pytest.raises(KeyError, match="namespaced"):
        indicator("P2.1.1")
    assert indicator("INM3513-009v1/P6.2.2")["level"] == 5
    assert standard("INM3513-009v1")["title"]["zh-TW"] == "AIoT 應用工程師"


def test_standards_cli() -> None:
    out = cli("standards", "show", "SET2519-001v3/P2.1.1", "--json").stdout
    assert "不影響生產設備穩定" in out and "without affecting" in out


def test_brief_is_rendered_with_the_candidates_values(plant: PlantHandle) -> None:
    for lang, marker in (("en", "Production impact"), ("zh-TW", "對生產的影響")):
        brief = cli("lab", "show", "data-acquisition", "-c", plant.candidate, "--lang", lang).stdout
        assert marker in brief
        assert plant.sheet["plc1"]["endpoint"] in brief and plant.sheet["em1"]["endpoint"] in brief
        assert f"unit id {plant.sheet['em1']['unit_id']}" in brief or f"站號 {plant.sheet['em1']['unit_id']}" in brief
        level = plant.reg("plc1", "level")
        assert f"input_registers {level['address']} (int16, scale {level['scale']})" in brief
        assert '"additionalProperties": false' in brief and "telemetry/<device>/<tag>" in brief


def test_lab_validation_names_the_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lab_dir = tmp_path / "broken"
    lab_dir.mkdir()
    good = (loader.labs_root() / "data-acquisition" / "lab.yaml").read_text()
    monkeypatch.setattr(loader, "labs_root", lambda: tmp_path)
    (lab_dir / "lab.yaml").write_text(good.replace("fn: daq.units", "fn: daq.nonexistent"))
    with pytest.raises(ConfigError, match="unknown fn 'daq.nonexistent'"):
        loader.load_lab("broken")
    (lab_dir / "lab.yaml").write_text(
        good.replace("indicators: [SET2519-001v3/P2.1.1]\n", "indicators: [SET2519-001v3/P9.9.9]\n")
    )
    with pytest.raises(KeyError, match="P9.9.9"):
        loader.load_lab("broken")
    (lab_dir / "lab.yaml").write_text(good.replace("  - SET2519-001v3/P3.1.1\n", "", 1))
    with pytest.raises(ConfigError, match="P3.1.1 is not in the lab's list"):
        loader.load_lab("broken")
    with pytest.raises(KeyError, match="unknown lab"):
        loader.load_lab("nope")


def test_version_flag() -> None:
    from aiotlab import __version__

    out = cli("--version").stdout
    assert out.strip() == f"aiotlab {__version__}"
