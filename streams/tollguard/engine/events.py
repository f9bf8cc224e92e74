"""Call events (SPEC section 2): parsing and validation from raw Kafka bytes.

Parsing is the only place that decides whether an input is usable, so every
rejection carries one reason from a small fixed set: the reason becomes a
Prometheus label and a dead-letter field, and both must stay bounded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Final, Literal

import msgspec
import orjson
from msgspec import Meta

from tollguard.numbering import Destination, DestinationTable, DialPlan

SETUP: Final = "setup"
ANSWER: Final = "answer"
RELEASE: Final = "release"
EVENT_TYPES: Final = frozenset({SETUP, ANSWER, RELEASE})

# Every reason an event can be rejected for; the set is closed on purpose.
REJECT_REASONS: Final = (
    "oversize",
    "bad_json",
    "not_object",
    "bad_version",
    "missing_field",
    "bad_type",
    "bad_value",
    "bad_timestamp",
    "bad_number",
    "late",
)

# Event times outside this range are typos or unit mix-ups (seconds vs ms).
MIN_TS_MS: Final = 946_684_800_000  # 2000-01-01
MAX_TS_MS: Final = 4_102_444_800_000  # 2100-01-01

DEFAULT_MAX_EVENT_BYTES: Final = 64 * 1024
# An envelope (a JSON array of events in one record) is bounded as a whole.
MAX_ENVELOPE_EVENTS: Final = 10_000
MAX_ENVELOPE_BYTES: Final = 8 * 1024 * 1024
# Nesting of arrays/objects an event may have (a valid one has 1); deeper is `oversize`.
DEFAULT_MAX_EVENT_DEPTH: Final = 16


class EventError(ValueError):
    """An input that cannot become a call event; `reason` is one of REJECT_REASONS."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


EventType = Literal["setup", "answer", "release"]


class CallEvent(msgspec.Struct, kw_only=True, gc=False):
    """A validated call event with its dialled number resolved to a destination.

    The field types and limits are SPEC section 2, so msgspec can decode a
    valid event (or an envelope of them) straight from bytes, in C. Anything
    it refuses takes the slow path (`EventParser.from_dict`), which names the
    reason; `tests/unit/test_fuzz_events.py` holds the two paths to the same
    verdict. `e164`, `dest` and `international` are ours, never the sender's:
    the parser always overwrites them.
    """

    type: EventType = "setup"
    call_id: Annotated[str, Meta(min_length=1, max_length=256)]
    ts_ms: Annotated[int, Meta(ge=MIN_TS_MS, lt=MAX_TS_MS)] = msgspec.field(name="ts")
    line_id: Annotated[str, Meta(min_length=1, max_length=128)]
    tenant: Annotated[str, Meta(max_length=128)] | None = None
    caller: Annotated[str, Meta(max_length=64)] | None = None
    callee: Annotated[str, Meta(max_length=64)] | None = None
    e164: str | None = None
    dest: Destination | None = None
    international: bool = False
    src_ip: Annotated[str, Meta(max_length=64)] | None = None
    trunk_id: Annotated[str, Meta(max_length=128)] | None = None
    duration_s: Annotated[float, Meta(ge=0, le=7 * 86400)] | None = None
    v: Literal[1] = 1


def wire_form(event: CallEvent) -> dict[str, Any]:
    """The event's SPEC fields, as its sender wrote them (for a dead letter)."""
    fields = {
        "v": event.v,
        "type": event.type,
        "call_id": event.call_id,
        "ts": event.ts_ms,
        "line_id": event.line_id,
        "tenant": event.tenant,
        "caller": event.caller,
        "callee": event.callee,
        "src_ip": event.src_ip,
        "trunk_id": event.trunk_id,
        "duration_s": event.duration_s,
    }
    return {k: v for k, v in fields.items() if v is not None}


_decode_event = msgspec.json.Decoder(CallEvent).decode
_decode_events = msgspec.json.Decoder(list[CallEvent]).decode
# What msgspec raises on input it will not decode (the slow path then says why).
_UNDECODABLE: Final = (msgspec.MsgspecError, ValueError, RecursionError)


@dataclass(slots=True)
class EnvelopeItemError:
    """An element of an envelope that is not a usable event, and why."""

    reason: str
    detail: str
    index: int
    item: Any


_TYPES: Final[dict[str, EventType]] = {"setup": "setup", "answer": "answer", "release": "release"}


def _duration(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EventError("bad_type", "duration_s must be a number")
    if not (math.isfinite(value) and 0 <= value <= 7 * 86400):
        raise EventError("bad_value", "duration_s must be 0..604800")
    return float(value)


def parse_timestamp(value: Any) -> int:
    """Epoch milliseconds from an RFC 3339 string or an epoch-millisecond number."""
    if isinstance(value, bool):
        raise EventError("bad_timestamp", "ts must be RFC 3339 or epoch milliseconds")
    if isinstance(value, int):
        ts = value
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise EventError("bad_timestamp", "ts is not a finite number")
        ts = int(value)
    elif isinstance(value, str):
        ts = _parse_rfc3339(value)
    else:
        raise EventError("bad_timestamp", "ts must be RFC 3339 or epoch milliseconds")
    if not MIN_TS_MS <= ts < MAX_TS_MS:
        raise EventError("bad_timestamp", f"ts {value!r} is outside 2000..2100")
    return ts


def _parse_rfc3339(text: str) -> int:
    if len(text) > 40:
        raise EventError("bad_timestamp", "ts string is too long")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise EventError("bad_timestamp", f"ts {text[:40]!r} is not RFC 3339") from None
    if parsed.tzinfo is None:
        raise EventError("bad_timestamp", f"ts {text!r} has no UTC offset")
    return int(parsed.timestamp() * 1000)


def _opt_str(obj: dict[str, Any], name: str, limit: int) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise EventError("bad_type", f"{name} must be a string")
    if len(value) > limit:
        raise EventError("bad_value", f"{name} is longer than {limit} characters")
    return value


def _req_str(obj: dict[str, Any], name: str, limit: int) -> str:
    value = obj.get(name)
    if value is None:
        raise EventError("missing_field", f"{name} is required")
    if not isinstance(value, str):
        raise EventError("bad_type", f"{name} must be a string")
    if not 1 <= len(value) <= limit:
        raise EventError("bad_value", f"{name} must be 1..{limit} characters")
    return value


class EventParser:
    """Turns raw bytes into resolved call events under one dial plan.

    Number normalisation happens here rather than in the rules, so a dialled
    number that means nothing is rejected once, with a reason, before any rule
    sees it.
    """

    __slots__ = ("_home", "destinations", "dial_plan", "max_bytes", "max_depth")

    def __init__(
        self,
        dial_plan: DialPlan,
        destinations: DestinationTable,
        max_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        max_depth: int = DEFAULT_MAX_EVENT_DEPTH,
    ) -> None:
        self.dial_plan = dial_plan
        self.destinations = destinations
        self.max_bytes = max_bytes
        self.max_depth = max_depth
        # Where every national number goes, when that is one destination: then
        # one that matches the plan's national form needs no lookup.
        cc = dial_plan.country_code
        home = destinations.sole(cc) if cc and dial_plan.national_match is not None else None
        self._home = (
            (home, home.region not in dial_plan.domestic_regions) if home is not None else None
        )

    def parse(self, raw: bytes | None) -> CallEvent:
        if raw is not None and len(raw) <= self.max_bytes and _shallow(raw, self.max_depth):
            try:
                event = _decode_event(raw)
            except _UNDECODABLE:
                pass
            else:
                if not self._unresolved((event,)):
                    return event
        return self._parse_slowly(raw)

    def _parse_slowly(self, raw: bytes | None) -> CallEvent:
        """Field by field, naming the first problem: the reference the fast path must match."""
        if raw is None:
            raise EventError("bad_json", "empty message (tombstone)")
        if len(raw) > self.max_bytes:
            raise EventError("oversize", f"{len(raw)} bytes, limit {self.max_bytes}")
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            if "depth limit" in str(exc):
                raise EventError("oversize", f"nesting deeper than {self.max_depth}") from None
            raise EventError("bad_json", str(exc)[:200]) from None
        if not isinstance(obj, dict):
            raise EventError("not_object", "an event must be a JSON object")
        if raw.count(b"[") + raw.count(b"{") > self.max_depth:
            depth = nesting_depth(obj)
            if depth > self.max_depth:
                raise EventError("oversize", f"nesting depth {depth}, limit {self.max_depth}")
        return self.from_dict(obj)

    def _unresolved(self, events: Sequence[CallEvent]) -> list[int]:
        """Resolve decoded events' numbers; the positions of those it could not resolve."""
        plan = self.dial_plan
        # `plan.normalize` spelt out: national numbers, most events, by the
        # plan's one regex and, with a home destination, no lookup. As calls
        # to `normalize` and `lookup` this loop cost ~2,400 more instructions
        # an event, a tenth of an envelope's event (callgrind).
        national = plan.national_match
        lead = plan.national_lead
        by_rules = plan.normalize_by_rules
        home, home_abroad = self._home or (None, False)
        lookup = self.destinations.lookup
        domestic = plan.domestic_regions
        unresolved: list[int] = []
        for index, event in enumerate(events):
            callee = event.callee
            if callee is None:
                if event.type == SETUP:
                    unresolved.append(index)  # missing_field
                    continue
                event.e164 = event.dest = None
                event.international = False
                continue
            found = national(callee) if national is not None else None
            if found is not None:
                e164 = lead + found[1]
                if home is not None:
                    event.e164 = e164
                    event.dest = home
                    event.international = home_abroad
                    continue
            else:
                ruled = by_rules(callee)
                if ruled is None:
                    unresolved.append(index)  # bad_number
                    continue
                e164 = ruled
            event.e164 = e164
            dest = event.dest = lookup(e164)
            # A number no table knows is treated as international: unknown
            # ranges are where revenue-share fraud hides.
            event.international = dest is None or dest.region not in domestic
        return unresolved

    def parse_envelope(self, raw: bytes) -> Sequence[CallEvent | EnvelopeItemError]:
        """Events of an envelope record, in order; a bad element is returned as its error.

        An envelope is a JSON array of call events (SPEC section 2) that one of
        our own producers packed into one record: the per-record cost of the
        Kafka client is paid once per envelope. Raises EventError when the
        envelope as a whole is unusable (too big, not JSON, not an array).
        """
        if len(raw) > MAX_ENVELOPE_BYTES:
            raise EventError(
                "oversize", f"envelope of {len(raw)} bytes, limit {MAX_ENVELOPE_BYTES}"
            )
        try:
            events = _decode_events(raw)
        except _UNDECODABLE:
            pass
        else:
            if 0 < len(events) <= MAX_ENVELOPE_EVENTS and _flat_envelope(raw, len(events)):
                unresolved = self._unresolved(events)
                if not unresolved:
                    return events
                return self._mend_envelope(raw, events, unresolved)
        return self._parse_envelope_slowly(raw)

    def _mend_envelope(
        self, raw: bytes, events: list[CallEvent], unresolved: list[int]
    ) -> list[CallEvent | EnvelopeItemError]:
        """A decoded envelope with a few bad numbers: only those take the slow path.

        Short codes, typos and test calls are ordinary traffic; one of them
        must not send its whole envelope through the field-by-field path.
        """
        try:
            items = orjson.loads(raw)
        except orjson.JSONDecodeError:
            items = None
        if type(items) is not list or len(items) != len(events):
            return self._parse_envelope_slowly(raw)
        out: list[CallEvent | EnvelopeItemError] = list(events)
        for index in unresolved:
            out[index] = self._envelope_item(index, items[index], flat=True)
        return out

    def _parse_envelope_slowly(self, raw: bytes) -> list[CallEvent | EnvelopeItemError]:
        try:
            items = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise EventError("bad_json", str(exc)[:200]) from None
        if not isinstance(items, list) or not items:
            raise EventError("not_object", "an envelope must be a non-empty JSON array of events")
        if len(items) > MAX_ENVELOPE_EVENTS:
            raise EventError("oversize", f"{len(items)} events, limit {MAX_ENVELOPE_EVENTS}")
        flat = _flat_envelope(raw, len(items))
        return [self._envelope_item(index, item, flat) for index, item in enumerate(items)]

    def _envelope_item(self, index: int, item: Any, flat: bool) -> CallEvent | EnvelopeItemError:
        """The reference verdict on one element of an envelope."""
        try:
            if type(item) is not dict:
                raise EventError("not_object", "an event must be a JSON object")
            if not flat and nesting_depth(item) > self.max_depth:
                raise EventError("oversize", f"nesting deeper than {self.max_depth}")
            return self.from_dict(item)
        except EventError as exc:
            return EnvelopeItemError(exc.reason, exc.detail, index, item)

    def from_dict(self, obj: dict[str, Any]) -> CallEvent:
        # The reference path (valid events mostly take msgspec's): field by
        # field, in SPEC order, the first problem named.
        get = obj.get
        version = get("v", 1)
        if version != 1 or version is True:
            raise EventError("bad_version", f"unsupported schema version {version!r}")
        etype = get("type", SETUP)
        etype = _TYPES.get(etype) if type(etype) is str else None
        if etype is None:
            raise EventError("bad_value", "type must be one of setup, answer, release")
        call_id = _req_str(obj, "call_id", 256)
        line_id = _req_str(obj, "line_id", 128)
        ts = get("ts")
        if ts is None:
            raise EventError("missing_field", "ts is required")
        ts_ms = parse_timestamp(ts)
        tenant = _opt_str(obj, "tenant", 128)
        caller = _opt_str(obj, "caller", 64)
        src_ip = _opt_str(obj, "src_ip", 64)
        trunk_id = _opt_str(obj, "trunk_id", 128)
        duration = get("duration_s")
        if duration is not None:
            duration = _duration(duration)
        callee = get("callee")
        if callee is not None:
            if type(callee) is not str:
                raise EventError("bad_type", "callee must be a string")
            if len(callee) > 64:
                raise EventError("bad_number", "callee is longer than 64 characters")
        event = CallEvent(
            type=etype, call_id=call_id, ts_ms=ts_ms, line_id=line_id, tenant=tenant,
            caller=caller, callee=callee, src_ip=src_ip, trunk_id=trunk_id, duration_s=duration,
        )  # fmt: skip
        if self._unresolved((event,)):
            if callee is None:
                raise EventError("missing_field", "callee is required for setup events")
            raise EventError("bad_number", f"callee {mask_number(callee)!r} is not a number")
        return event


def _shallow(raw: bytes, limit: int) -> bool:
    """No more brackets than the depth limit: nothing can nest deeper than it.

    The common event, one brace first and no bracket, is found by two `find`s
    at memory speed; only other shapes are counted, at a few instructions a
    byte (see `_flat_envelope`).
    """
    if raw.find(b"[") < 0 and raw.find(b"{", 1) < 0:
        return limit >= 1
    return raw.count(b"[") + raw.count(b"{") <= limit


def _flat_envelope(raw: bytes, events: int) -> bool:
    """One bracket for the array and one brace per event: nothing nests deeper.

    The array's bracket must be the first byte (else this says no). Other
    brackets are looked for, not counted: `find` runs at memory speed, `count`
    at a few instructions a byte, and two counts were a tenth of parsing an
    envelope (measured).
    """
    return raw.find(b"[", 1) < 0 and raw.count(b"{") <= events


def nesting_depth(value: Any) -> int:
    """How deep arrays and objects nest in a parsed JSON value (a scalar is 0)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def mask_number(number: str) -> str:
    """Keep a number's country and range, hide the subscriber digits (for logs)."""
    if len(number) <= 6:
        return number[:2] + "*" * (len(number) - 2)
    return number[:6] + "*" * (len(number) - 6)
