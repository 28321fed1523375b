"""A device's Modbus register map, resolved from the plant spec: which tag sits at which address, how encoded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..protocols.modbus import COILS, DISCRETE_INPUTS, register_width

BIT_TABLES = (COILS, DISCRETE_INPUTS)
TABLE_ORDER = ("coils", "discrete_inputs", "input_registers", "holding_registers")


@dataclass(frozen=True)
class MappedTag:
    name: str
    source: str
    table: str
    address: int
    dtype: str  # bool, int16, uint16, uint32, float32
    scale: float = 1.0
    word_order: str = "ABCD"
    unit: str = ""
    writable: bool = False
    min: float | None = None
    max: float | None = None
    desc: dict[str, str] = field(default_factory=dict)

    @property
    def width(self) -> int:
        return 1 if self.dtype == "bool" else register_width(self.dtype)

    def as_dict(self) -> dict[str, Any]:
        d = {
            "name": self.name,
            "table": self.table,
            "address": self.address,
            "registers": self.width,
            "type": self.dtype,
            "writable": self.writable,
            "unit": self.unit,
            "description": self.desc,
        }
        if self.dtype not in ("bool", "float32"):
            d["scale"] = int(self.scale) if float(self.scale).is_integer() else self.scale
        if self.width == 2:
            d["word_order"] = self.word_order
        if self.min is not None:
            d["range"] = [self.min, self.max]
        return d


class RegisterMap:
    def __init__(self, tables: dict[str, Any]) -> None:
        self.tags: list[MappedTag] = []
        self.by_addr: dict[str, dict[int, tuple[MappedTag, int]]] = {t: {} for t in TABLE_ORDER}
        for table in TABLE_ORDER:
            spec = tables.get(table)
            if not spec:
                continue
            addr = int(spec["base"])
            for t in spec["tags"]:
                dtype = "bool" if table in BIT_TABLES else t["type"]
                writable = table == COILS or bool(t.get("writable", False))
                tag = MappedTag(
                    name=t["name"],
                    source=t["source"],
                    table=table,
                    address=addr,
                    dtype=dtype,
                    scale=float(t.get("scale", 1)),
                    word_order=t.get("word_order", "ABCD"),
                    unit=t.get("unit", ""),
                    writable=writable,
                    min=t.get("min"),
                    max=t.get("max"),
                    desc=t.get("desc", {}),
                )
                self.tags.append(tag)
                for i in range(tag.width):
                    self.by_addr[table][addr + i] = (tag, i)
                addr += tag.width

    def tag(self, name: str) -> MappedTag:
        for t in self.tags:
            if t.name == name:
                return t
        raise KeyError(name)

    def ranges(self) -> dict[str, tuple[int, int]]:
        """First and last address in use per table."""
        return {t: (min(m), max(m)) for t, m in self.by_addr.items() if m}
