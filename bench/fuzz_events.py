"""Hostile input through the whole event path: `python -m bench.fuzz_events --count 1000000`.

Generates call-event inputs an attacker or a broken switch could publish (random
bytes, bad UTF-8, deep and huge JSON, wrong types, NaN and infinities, absurd
timestamps, numbers with letters, truncated and non-object JSON, tombstones),
mixed with good events, and runs them through `BatchProcessor.process` in
batches as the worker does. It checks, and exits non-zero otherwise, that:

* nothing raises;
* every input is accepted, counted as a duplicate, or dead-lettered with a
  reason from REJECT_REASONS in a well-formed dead-letter record;
* every good event is accepted (counted in tollguard_events_total).

Seeded: the same --seed gives the same inputs.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tollguard.app.metrics import Metrics
from tollguard.app.processor import BatchProcessor, RawRecord
from tollguard.engine.events import MAX_ENVELOPE_BYTES, MAX_ENVELOPE_EVENTS, REJECT_REASONS
from tollguard.numbering import DestinationTable, load_default_dial_plans
from tollguard.rulepacks import load_pack

PACK = Path(__file__).resolve().parents[1] / "rules" / "default.yaml"
T0 = 1_795_910_400_000  # 2026-11-29T00:00:00Z
MAX_BYTES = 4096
MAX_DEPTH = 16
GOOD_CALLEES = ("0312345678", "0667891234", "09012345678", "01023276123456", "+81312345678")
FIELDS = ("v", "type", "call_id", "ts", "line_id", "tenant", "caller", "callee", "src_ip")
FIELDS += ("trunk_id", "duration_s")

_WEIRD_TEXT = (
    "",
    " ",
    "0",
    "-1",
    "0102327abc",
    "+232 76 12 34 56",
    "+٢٣٢٧٦١٢٣٤٥٦",  # Arabic-Indic digits
    "\uff10\uff13\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18",  # full-width digits
    "NaN",
    "Infinity",
    "1e309",
    "0x1f",
    "\uff19" * 70,
    "\u202e0312345678",
    "\x00\x01",
    "1970-01-01T00:00:00Z",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "2026-13-45T99:99:99Z",
    "2026-11-29T00:00:00",
    "2026-11-29T00:00:00.123456789+09:00",
    "setup",
    "answer",
    "release",
    "SETUP",
    "a" * 300,
)
_WEIRD_NUMBERS_TEXT = (
    b"NaN",
    b"-Infinity",
    b"Infinity",
    b"1e400",
    b"-1e400",
    b"123456789012345678901234567890",
    b"-9223372036854775809",
    b"18446744073709551616",
    b"1.7976931348623157e308",
    b"4e-324",
    b"-0",
    b"0x10",
    b"1_000",
    b"01",
    b"1.",
    b".5",
    b"+1",
    b"12abc",
)


def good_event(i: int) -> dict[str, Any]:
    """A valid setup event; lines and times never collide with hostile ones."""
    return {
        "call_id": f"good-{i}",
        "ts": T0 + i * 7,
        "line_id": f"good-line-{i % 997}",
        "callee": GOOD_CALLEES[i % len(GOOD_CALLEES)],
        "tenant": "t1",
    }


def _value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(12)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice((True, False))
    if kind == 2:
        return rng.choice((0, -1, 1, 2**63 - 1, -(2**63), 2**64 - 1, T0, T0 * 1000, T0 // 1000))
    if kind == 3:
        return rng.choice((0.5, -0.0, 1e308, -1e308, 5e-324, T0 + 0.5, 1e19))
    if kind in (4, 5, 6):
        return rng.choice(_WEIRD_TEXT)
    if kind == 7:
        return "".join(chr(rng.randrange(0x20, 0x2FFF)) for _ in range(rng.randrange(0, 20)))
    if kind == 8 and depth < 4:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    if kind == 9 and depth < 4:
        return {rng.choice(FIELDS): _value(rng, depth + 1) for _ in range(rng.randrange(0, 4))}
    return rng.choice(GOOD_CALLEES)


def _mutated(rng: random.Random, i: int) -> bytes:
    event: dict[str, Any] = {
        "call_id": f"h-{i}",
        "ts": T0 + rng.randrange(-(10**9), 10**9),
        "line_id": f"h-line-{i % 211}",
        "callee": rng.choice(GOOD_CALLEES),
        "type": rng.choice(("setup", "answer", "release")),
    }
    for _ in range(rng.randrange(1, 4)):
        name = rng.choice(FIELDS)
        if rng.random() < 0.2:
            event.pop(name, None)
        else:
            event[name] = _value(rng)
    if event.get("line_id") is not None and str(event.get("line_id")).startswith("good-"):
        event["line_id"] = "h-line"
    return orjson.dumps(event, option=orjson.OPT_NON_STR_KEYS)


def _raw_number(rng: random.Random, i: int) -> bytes:
    number = rng.choice(_WEIRD_NUMBERS_TEXT)
    name = rng.choice(("ts", "duration_s", "v", "callee", "call_id")).encode()
    return (
        b'{"call_id": "n-%d", "line_id": "h-num", "ts": 1795910400000, "callee": "0312345678", '
        b'"type": "release", "%s": %s}' % (i, name, number)
    )


def _bad_utf8(rng: random.Random, i: int) -> bytes:
    raw = bytearray(orjson.dumps(good_event(i) | {"line_id": "h-utf8", "call_id": f"u-{i}"}))
    bad = rng.choice((b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf0\x28\x8c\x28", b"\xc0\xaf"))
    at = rng.randrange(len(raw))
    raw[at:at] = bad
    return bytes(raw)


def _escaped_surrogate(rng: random.Random, i: int) -> bytes:
    return (
        b'{"call_id": "s-%d", "ts": 1795910400000, "line_id": "h-s\\ud800", "callee": "0312"}' % i
    )


def _deep(rng: random.Random, i: int) -> bytes:
    depth = rng.choice((MAX_DEPTH, MAX_DEPTH + 1, 64, 1025, 1500))
    opener, closer = rng.choice(((b"[", b"]"), (b'{"a":', b"}")))
    inner = opener * depth + b"1" + closer * depth
    return b'{"call_id": "d-%d", "ts": 1795910400000, "line_id": "h-deep", "x": %s}' % (i, inner)


def _huge(rng: random.Random, i: int) -> bytes:
    pad = b"9" * rng.choice((MAX_BYTES, MAX_BYTES * 4, 300_000))
    return b'{"call_id": "g-%d", "ts": 1795910400000, "line_id": "h-huge", "pad": "%s"}' % (i, pad)


def _random_bytes(rng: random.Random, i: int) -> bytes:
    return rng.randbytes(rng.randrange(0, 200))


def _truncated(rng: random.Random, i: int) -> bytes:
    raw = orjson.dumps(good_event(i) | {"line_id": "h-trunc", "call_id": f"t-{i}"})
    return raw[: rng.randrange(len(raw))]


def _not_object(rng: random.Random, i: int) -> bytes:
    return rng.choice((b"[]", b'"setup"', b"42", b"null", b"true", b"[{}]", b"  ", b""))


def _tombstone(rng: random.Random, i: int) -> bytes | None:
    return None


HOSTILE: tuple[Callable[[random.Random, int], bytes | None], ...] = (
    _mutated,
    _mutated,
    _mutated,
    _raw_number,
    _bad_utf8,
    _escaped_surrogate,
    _deep,
    _huge,
    _random_bytes,
    _truncated,
    _not_object,
    _tombstone,
)


def inputs(count: int, seed: int, good_share: float = 0.3) -> Iterator[tuple[bool, bytes | None]]:
    """(is_good, raw value) pairs; good events in event-time order on their own lines."""
    rng = random.Random(seed)
    good = 0
    for i in range(count):
        if rng.random() < good_share:
            yield True, orjson.dumps(good_event(good))
            good += 1
        else:
            yield False, rng.choice(HOSTILE)(rng, i)


@dataclass
class FuzzResult:
    inputs: int = 0
    good: int = 0
    accepted: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems


def new_processor() -> BatchProcessor:
    return BatchProcessor(
        load_pack(PACK),
        load_default_dial_plans(),
        DestinationTable.load_default(),
        Metrics(),
        lateness_ms=10**12,  # hostile events must not make good ones late
        max_event_bytes=MAX_BYTES,
        max_event_depth=MAX_DEPTH,
    )


def _accepted(metrics: Metrics) -> int:
    total = 0.0
    for family in metrics.registry.collect():
        if family.name == "tollguard_events":
            total += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return int(total)


def outcomes(value: bytes | None) -> int:
    """How many accept/reject outcomes one input must have: an envelope has one per event."""
    if value is None or not value.startswith(b"["):
        return 1
    try:
        items = orjson.loads(value)
    except orjson.JSONDecodeError:
        return 1
    fits = len(value) <= MAX_ENVELOPE_BYTES and isinstance(items, list)
    return len(items) if fits and 0 < len(items) <= MAX_ENVELOPE_EVENTS else 1


def run(count: int, seed: int = 1, batch: int = 2000) -> FuzzResult:
    result = FuzzResult()
    proc = new_processor()
    started = time.perf_counter()
    pending: list[RawRecord] = []

    def flush() -> None:
        try:
            out = proc.process(pending, T0)
        except Exception as exc:  # the property under test: this must never happen
            result.problems.append(f"process raised {type(exc).__name__}: {exc}")
            return
        for _key, value in out.deadletter:
            letter = orjson.loads(value)
            reason = letter.get("reason")
            result.reasons[reason] += 1
            if reason not in REJECT_REASONS:
                result.problems.append(f"dead letter with unknown reason {reason!r}")
            if not isinstance(letter.get("raw"), str) or not isinstance(letter.get("error"), str):
                result.problems.append(f"malformed dead letter {letter!r:.200}")
            elif '"call_id":"good-' in letter["raw"]:
                result.problems.append(f"good event dead-lettered: {letter!r:.300}")
        result.dead_letters += len(out.deadletter)

    for offset, (is_good, value) in enumerate(inputs(count, seed)):
        result.inputs += outcomes(value)
        result.good += is_good
        pending.append(RawRecord("calls.events", 0, offset, b"k", value))
        if len(pending) >= batch:
            flush()
            pending = []
    if pending:
        flush()
    result.seconds = time.perf_counter() - started
    result.accepted = _accepted(proc.metrics)
    result.duplicates = int(proc.metrics.duplicates._value.get())
    handled = result.accepted + result.duplicates + result.dead_letters
    if handled != result.inputs:
        result.problems.append(
            f"{result.inputs} inputs but {result.accepted} accepted + {result.duplicates} "
            f"duplicates + {result.dead_letters} dead letters = {handled}"
        )
    if result.accepted < result.good:
        result.problems.append(f"only {result.accepted} accepted of {result.good} good events")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz_events", description=__doc__)
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    result = run(args.count, args.seed)
    rate = result.inputs / result.seconds if result.seconds else 0.0
    print(
        f"fuzz_events: {result.inputs} inputs (seed {args.seed}) in {result.seconds:.1f}s "
        f"({rate:,.0f}/s): {result.good} good, {result.accepted} accepted, "
        f"{result.duplicates} duplicates, {result.dead_letters} dead-lettered"
    )
    for reason, n in sorted(result.reasons.items()):
        print(f"  {reason:<14} {n}")
    for problem in result.problems[:20]:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    print("OK: no crash, every input accounted for" if result.ok else "FAILED")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
