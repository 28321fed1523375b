"""The plant's fast start paths give what the slow ones gave: libyaml parsing, the indexed address-space shelf."""

from __future__ import annotations

import asyncio
import pickle
import shelve
from pathlib import Path
from typing import Any

import pytest
import yaml
from asyncua import Server, ua

from aiotlab.simulators import yamlconf
from aiotlab.simulators.devices import opcua_plc

ROOT = Path(__file__).resolve().parent.parent


def _same(a: Any, b: Any, where: str) -> None:
    assert type(a) is type(b), where
    if isinstance(a, dict):
        assert list(a) == list(b), where
        if isinstance(a, yamlconf.LineDict):
            assert (a.line, a.key_lines) == (b.line, b.key_lines), where
        for k in a:
            _same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_libyaml_and_pure_loaders_agree_with_line_numbers() -> None:
    if not yaml.__with_libyaml__:
        pytest.skip("PyYAML without libyaml: only the pure loader is used")
    files = [ROOT / "simulators" / "specs" / "default-plant.yaml", *sorted((ROOT / "labs").rglob("*.yaml"))]
    for path in files:
        text = path.read_text(encoding="utf-8")
        _same(
            yaml.load(text, Loader=yamlconf._LineLoader),  # noqa: S506 - SafeLoader subclass
            yaml.load(text, Loader=yamlconf._FastLoader),  # noqa: S506 - CSafeLoader subclass
            str(path),
        )
    assert len(files) > 10


@pytest.mark.parametrize(
    ("text", "line"),
    [("rules: [\n", 2), ("a: 1\n---\nb: 2\n", 2), ("x: !!python/object/apply:os.system [id]\n", 1), ("a: [}\n", 1)],
)
def test_yaml_errors_are_worded_by_the_pure_parser(text: str, line: int) -> None:
    with pytest.raises(yamlconf.ConfigError) as got:
        yamlconf.loads_yaml(text, "f.yaml")
    with pytest.raises(yaml.MarkedYAMLError) as pure:
        yaml.load(text, Loader=yamlconf._LineLoader)  # noqa: S506 - SafeLoader subclass
    assert got.value.line == line
    assert str(got.value) == f"f.yaml:{line}: invalid YAML: {pure.value.problem}"


def test_indexed_shelf_serves_the_standard_address_space(tmp_path: Path) -> None:
    async def main() -> None:
        shelf = await opcua_plc.ensure_shelf()
        if opcua_plc._dumb_index(shelf) is None:
            pytest.skip("the shelf is not a dbm.dumb one here (Python with gdbm): asyncua loads it itself")
        stock, fast = Server(), Server()
        opcua_plc.use_fast_shelf(fast, shelf)
        await stock.init(shelf_file=shelf)
        await fast.init(shelf_file=shelf)
        assert type(fast.iserver.aspace._nodes).__name__ == "_LazyNodes"
        with shelve.open(str(shelf), "r") as db:
            keys = list(db.keys())
        for key in keys[::50]:
            nid = ua.NodeId.from_string(key)
            a, b = stock.iserver.aspace._nodes[nid], fast.iserver.aspace._nodes[nid]
            assert set(a.attributes) == set(b.attributes) and a.references == b.references, key
            if ua.AttributeIds.Value not in a.attributes:
                assert pickle.dumps(a) == pickle.dumps(b), key
        assert ua.NodeId(ua.ObjectIds.Server) in fast.iserver.aspace._nodes
        assert ua.NodeId(987654, 7) not in fast.iserver.aspace._nodes
        name = fast.get_node(ua.ObjectIds.Server_ServerStatus_BuildInfo_ProductName)
        assert (await name.read_browse_name()).Name == "ProductName"

    asyncio.run(main())


def test_shelf_index_is_rebuilt_when_the_shelf_changes(tmp_path: Path) -> None:
    base = tmp_path / "aspace"
    with shelve.open(str(base), "c") as db:  # a dbm.dumb shelf, as Python without gdbm writes it
        db["i=1"] = {"one": 1}
        db["ns=2;s=x"] = [2]
    if not base.with_name("aspace.dir").is_file():
        pytest.skip("this Python writes another dbm than dbm.dumb")
    dat, index = opcua_plc._dumb_index(base) or (None, {})
    assert dat is not None and opcua_plc._DumbShelf(dat, index)["i=1"] == {"one": 1}
    assert base.with_name("aspace.idx").is_file()
    opcua_plc._shelf_indexes.clear()  # as a new process: read from the saved index
    again = opcua_plc._dumb_index(base)
    assert again is not None and again[1] is not index and again[1].state() == index.state()
    assert "i=1" in index and "ns=2;s=x" in index and "i=2" not in index and "" not in index
    with pytest.raises(KeyError):
        index.find("i=0")
    with shelve.open(str(base), "w") as db:
        db["i=3"] = "three"
    opcua_plc._shelf_indexes.clear()
    dat, index = opcua_plc._dumb_index(base) or (None, {})
    assert dat is not None and opcua_plc._DumbShelf(dat, index)["i=3"] == "three" and "i=1" in index
