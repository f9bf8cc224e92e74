"""Small builders shared by the unit tests."""

from __future__ import annotations

from functools import cache
from typing import Any

import orjson

from tollguard.engine import CallEvent, EventParser
from tollguard.numbering import DestinationTable, load_default_dial_plans

T0 = 1_795_910_400_000  # 2026-11-29T00:00:00Z


@cache
def parser(plan: str = "JP") -> EventParser:
    return EventParser(load_default_dial_plans()[plan], DestinationTable.load_default())


def raw(**fields: Any) -> bytes:
    base: dict[str, Any] = {"call_id": "c1", "ts": T0, "line_id": "line-1", "callee": "0312345678"}
    base.update(fields)
    return orjson.dumps({k: v for k, v in base.items() if v is not None})


def event(
    callee: str, ts: int, line: str = "line-1", call_id: str | None = None, etype: str = "setup"
) -> CallEvent:
    return parser().parse(
        raw(
            callee=callee,
            ts=ts,
            line_id=line,
            type=etype,
            call_id=call_id or f"{line}-{ts}-{callee}",
        )
    )
