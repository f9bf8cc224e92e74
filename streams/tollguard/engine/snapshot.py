"""Line state to bytes and back, for the changelog that makes state durable.

Line state is a tree of msgspec Structs (`LineState`, `LineRules`, the rule
kinds' windows), the dataclasses of an open block, and lists, dicts, tuples,
ints and strings. Format 3 encodes that tree with msgspec, in C: Structs as
arrays, a rule's state tagged with its class name. It decodes against the
same types, so a record can only ever become line state (never any other
object, unlike pickle), and a record that does not fit is refused whole.

Formats 1 and 2 walked objects generically as `{"c": class, "f": fields}`;
their records are still read, reshaped into format 3 and converted.
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from tollguard.engine.engine import LineRules, LineState
from tollguard.engine.kinds.live import LiveCalls
from tollguard.engine.kinds.new_destination import NewDestinationState
from tollguard.engine.windows import KeyedWindow, SlidingWindow, SumWindow

# 2: rule-related fields of LineState moved into LineRules; 3: msgspec, typed.
FORMAT = 3
# LineState's slots in format 1, in record order.
_V1_LINE_FIELDS = (
    "alerting",
    "block",
    "cooldown_until",
    "first_ts",
    "legs",
    "max_ts",
    "recent",
    "shadow_block",
    "shadow_cooldown_until",
    "states",
    "tenant",
)
_V1_RULE_FIELDS = (
    "alerting",
    "block",
    "cooldown_until",
    "legs",
    "recent",
    "shadow_block",
    "shadow_cooldown_until",
    "states",
)


# Each class's fields in format-2 records (its slots then), in record order.
_V2_FIELDS = {
    "LineState": ("first_ts", "max_ts", "rules", "tenant"),
    "LineRules": _V1_RULE_FIELDS,
    "OpenBlock": ("signal", "expires_at", "cooldown_ms"),
    "SlidingWindow": ("tags", "times"),
    "KeyedWindow": ("counts", "keys", "range_digits", "ranges", "times"),
    "SumWindow": ("amounts", "ids", "tags", "times", "total"),
    "LiveCalls": ("calls", "tags"),
    "NewDestinationState": ("seen", "window"),
    "Destination": ("prefix", "country_code", "region", "name"),
    "Evidence": (
        "metric",
        "value",
        "threshold",
        "window_s",
        "first_event_ts",
        "last_event_ts",
        "sample_callees",
        "destinations",
    ),
    "ControlSignal": (
        "signal_id",
        "action",
        "line_id",
        "tenant",
        "scope",
        "severity",
        "rule_id",
        "rules_version",
        "reason",
        "event_ts",
        "expires_at",
        "mode",
        "source",
        "actor",
        "evidence",
        "extra",
    ),
}
_STRUCTS: dict[str, Any] = {
    cls.__name__: cls
    for cls in (
        LineState,
        LineRules,
        SlidingWindow,
        KeyedWindow,
        SumWindow,
        LiveCalls,
        NewDestinationState,
    )
}
_UNREADABLE = (msgspec.MsgspecError, ValueError, TypeError, RecursionError)


class SnapshotError(ValueError):
    """A changelog record that cannot be turned back into line state."""


class _Record(msgspec.Struct):
    v: int
    o: int  # the input offset the state reflects (exclusive)
    s: LineState


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(_Record).decode


def encode_line(state: LineState, offset: int) -> bytes:
    """A changelog value: the line's state as of input `offset` (exclusive)."""
    return _encode(_Record(FORMAT, offset, state))


def decode_line(data: bytes) -> tuple[LineState, int]:
    """The state and the input offset it reflects; SnapshotError if unusable."""
    try:
        record = _decode(data)
    except _UNREADABLE:
        return _decode_older(data)
    if record.v != FORMAT:
        raise SnapshotError(f"state record of format {record.v} shaped as format {FORMAT}")
    return record.s, record.o


def _decode_older(data: bytes) -> tuple[LineState, int]:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise SnapshotError(f"not a state record: {exc}") from None
    if not isinstance(doc, dict) or doc.get("v") not in (1, 2):
        raise SnapshotError("state record of an unknown format")
    offset = doc.get("o")
    if not isinstance(offset, int):
        raise SnapshotError("state record without an input offset")
    try:
        body = _from_v1(doc.get("s")) if doc["v"] == 1 else doc.get("s")
        state = msgspec.convert(_from_v2(body), LineState)
    except _UNREADABLE as exc:
        raise SnapshotError(f"state record does not fit the engine: {exc}") from None
    return state, offset


def _from_v2(node: Any) -> Any:
    """A format-2 value reshaped as format 3 would write it (still plain JSON values)."""
    if isinstance(node, list):
        return [_from_v2(v) for v in node]
    if not isinstance(node, dict):
        return node
    if "t" in node:  # a tuple
        return [_from_v2(v) for v in node["t"]]
    if "s" in node:  # a set
        return [_from_v2(v) for v in node["s"]]
    if "d" in node:
        return {k: _from_v2(v) for k, v in node["d"]}
    name = node.get("c")
    if not isinstance(name, str) or name not in _V2_FIELDS:
        raise SnapshotError(f"unknown state class {name!r}")
    names = _V2_FIELDS[name]
    fields = node.get("f")
    if not isinstance(fields, list) or len(fields) != len(names):
        raise SnapshotError(f"{name} record of the wrong shape")
    values = {n: _from_v2(f) for n, f in zip(names, fields, strict=True)}
    cls = _STRUCTS.get(name)
    if cls is None:  # a dataclass: an object of its fields
        return values
    ordered = [values[f] for f in cls.__struct_fields__]
    tag = cls.__struct_config__.tag
    return [tag, *ordered] if tag else ordered


def _from_v1(doc: Any) -> Any:
    """Reshape a format-1 LineState record into format 2 (still undecoded JSON)."""
    if not (isinstance(doc, dict) and doc.get("c") == "LineState"):
        return doc
    fields = doc.get("f")
    if not isinstance(fields, list) or len(fields) != len(_V1_LINE_FIELDS):
        raise SnapshotError("format-1 LineState record of the wrong shape")
    old = dict(zip(_V1_LINE_FIELDS, fields, strict=True))
    if old["states"] is None:
        old["states"] = {"d": []}
    has_rules = old["states"]["d"] or any(old[f] for f in _V1_RULE_FIELDS if f != "states")
    legs = old["legs"]
    if isinstance(legs, dict) and isinstance(legs.get("d"), list):
        # format 1 kept the whole setup event; now (ts, e164, destination, international)
        old["legs"] = {
            "d": [[call_id, {"t": [ev["f"][i] for i in (2, 7, 8, 9)]}] for call_id, ev in legs["d"]]
        }
    rules = {"c": "LineRules", "f": [old[f] for f in _V1_RULE_FIELDS]} if has_rules else None
    return {"c": "LineState", "f": [old["first_ts"], old["max_ts"], rules, old["tenant"]]}
