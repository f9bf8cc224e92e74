"""Line state to bytes and back, for the changelog that makes state durable.

The engine's state is plain slotted objects, lists, dicts, sets, tuples, ints
and strings. This codec walks that shape generically, so a new rule kind's
state is persisted without writing a serializer for it, and it only ever
rebuilds classes from the engine's own modules: a changelog record can never
make the worker construct anything else (unlike pickle).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from functools import cache
from operator import attrgetter
from typing import Any

import orjson

_MODULES = (
    "tollguard.engine.engine",
    "tollguard.engine.events",
    "tollguard.engine.windows",
    "tollguard.signals.model",
    "tollguard.numbering.plan",
)
_KINDS_PACKAGE = "tollguard.engine.kinds"
# 2: rule-related fields of LineState moved into LineRules (1 is still read).
FORMAT = 2
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


class SnapshotError(ValueError):
    """A changelog record that cannot be turned back into line state."""


def _slots(cls: type) -> tuple[str, ...]:
    names: list[str] = []
    for klass in reversed(cls.__mro__):
        slots = klass.__dict__.get("__slots__", ())
        names.extend([slots] if isinstance(slots, str) else slots)
    return tuple(n for n in names if n not in ("__weakref__", "__dict__"))


@cache
def _registry() -> dict[str, type]:
    modules = [importlib.import_module(m) for m in _MODULES]
    kinds = importlib.import_module(_KINDS_PACKAGE)
    for info in pkgutil.iter_modules(kinds.__path__):
        modules.append(importlib.import_module(f"{_KINDS_PACKAGE}.{info.name}"))
    found: dict[str, type] = {}
    for module in modules:
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and value.__module__ == module.__name__
                and "__slots__" in value.__dict__
            ):
                found[value.__name__] = value
    return found


_SCALARS = frozenset({type(None), bool, int, float, str})
_all_scalars = _SCALARS.issuperset


def _fields_getter(names: tuple[str, ...]) -> Callable[[Any], Any]:
    def fetch(obj: Any) -> tuple[Any, ...]:
        return tuple(getattr(obj, n) for n in names)

    return fetch


@cache
def _classes() -> dict[type, tuple[str, tuple[str, ...], Callable[[Any], Any]]]:
    info: dict[type, tuple[str, tuple[str, ...], Callable[[Any], Any]]] = {}
    for name, cls in _registry().items():
        slots = _slots(cls)
        # attrgetter of one name returns the value itself, not a 1-tuple
        fetch = attrgetter(*slots) if len(slots) > 1 else _fields_getter(slots)
        info[cls] = (name, slots, fetch)
    return info


def _encode(value: Any) -> Any:
    # Checkpoints re-encode every changed line each second. Containers whose
    # items are all scalars (the bulk of any window) are handed to orjson as
    # they are, checked by one C-level pass, rather than copied item by item.
    t = type(value)
    if t in _SCALARS:
        return value
    if t is list:
        if _all_scalars(map(type, value)):
            return value
        return [v if type(v) in _SCALARS else _encode(v) for v in value]
    if t is dict:
        if _all_scalars(map(type, value)) and _all_scalars(map(type, value.values())):
            return {"d": list(value.items())}  # (k, v) tuples serialise as [k, v]
        return {
            "d": [
                [k if type(k) in _SCALARS else _encode(k), v if type(v) in _SCALARS else _encode(v)]
                for k, v in value.items()
            ]
        }
    if t is tuple:
        return {"t": value if _all_scalars(map(type, value)) else [_encode(v) for v in value]}
    if t is set or t is frozenset:
        return {"s": [_encode(v) for v in sorted(value, key=repr)]}
    info = _classes().get(t)
    if info is None:
        raise SnapshotError(f"cannot persist a {t.__module__}.{t.__name__}")
    name, slots, fetch = info
    try:
        values = fetch(value)
    except AttributeError:  # a slot never assigned
        values = tuple(getattr(value, n, None) for n in slots)
    if _all_scalars(map(type, values)):
        return {"c": name, "f": values}
    return {"c": name, "f": [v if type(v) in _SCALARS else _encode(v) for v in values]}


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "t" in value:
        return tuple(_decode(v) for v in value["t"])
    if "s" in value:
        return {_decode(v) for v in value["s"]}
    if "d" in value:
        return {_decode(k): _decode(v) for k, v in value["d"]}
    name = value.get("c")
    cls = _registry().get(name) if isinstance(name, str) else None
    if cls is None:
        raise SnapshotError(f"unknown state class {name!r}")
    obj: Any = object.__new__(cls)
    names = _classes()[cls][1]
    fields = value.get("f", [])
    if len(fields) != len(names):
        raise SnapshotError(f"{name} has {len(names)} fields, the record {len(fields)}")
    for slot, field in zip(names, fields, strict=True):
        object.__setattr__(obj, slot, _decode(field))
    return obj


def encode_line(state: Any, offset: int) -> bytes:
    """A changelog value: the line's state as of input `offset` (exclusive)."""
    return orjson.dumps({"v": FORMAT, "o": offset, "s": _encode(state)})


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


def decode_line(data: bytes) -> tuple[Any, int]:
    """The state and the input offset it reflects; SnapshotError if unusable."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise SnapshotError(f"not a state record: {exc}") from None
    if not isinstance(doc, dict) or doc.get("v") not in (1, FORMAT):
        raise SnapshotError("state record of an unknown format")
    offset = doc.get("o")
    if not isinstance(offset, int):
        raise SnapshotError("state record without an input offset")
    try:
        body = _from_v1(doc.get("s")) if doc["v"] == 1 else doc.get("s")
        return _decode(body), offset
    except (TypeError, AttributeError, ValueError, KeyError, IndexError) as exc:
        raise SnapshotError(f"state record does not fit the engine: {exc}") from None
