"""One module per rule kind: how each kind turns events into a value to judge."""

from __future__ import annotations

from tollguard.engine.kinds import (
    concurrent,
    count,
    distinct,
    long_call,
    new_destination,
    repeat,
    spend,
)
from tollguard.engine.kinds.base import NO_DECISION, Kind

KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        count.KIND,
        spend.KIND,
        distinct.KIND,
        repeat.KIND,
        new_destination.KIND,
        concurrent.KIND,
        long_call.KIND,
    )
}

__all__ = ["KINDS", "NO_DECISION", "Kind"]
