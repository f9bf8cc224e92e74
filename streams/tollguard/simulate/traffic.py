"""Seeded synthetic call traffic: ordinary lines and the seed IRSF attack.

Pure generators of SPEC call events (dicts) in event-time order. The demo, the
end-to-end tests and the benchmarks all draw from here, so an attack looks the
same wherever it is replayed.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from dataclasses import dataclass

# Japanese dial plan: 010 + country code for international, 0 + area for domestic.
JP_INTL = "010"
ORDINARY_FOREIGN = ("1212", "1415", "4420", "8610", "8210", "4930", "331", "6321", "6622")
SIERRA_LEONE_MOBILE = "23276"


@dataclass(frozen=True, slots=True)
class BackgroundSpec:
    lines: int = 50
    # Mean call attempts per line per hour of event time.
    calls_per_hour: float = 6.0
    intl_share: float = 0.03
    line_prefix: str = "line-"
    tenant_count: int = 10


@dataclass(frozen=True, slots=True)
class AttackSpec:
    line_id: str = "pbx-osaka-0042"
    tenant: str = "tenant-hijacked"
    calls: int = 14_000
    # Seed case: ~14,000 calls in 4 days is one every ~24.7 s on average.
    interval_ms: int = 24_700
    call_seconds: float = 30.0
    country_prefix: str = SIERRA_LEONE_MOBILE


def _domestic(rng: random.Random) -> str:
    area = rng.choice(("03", "06", "090", "080", "052", "011"))
    return area + "".join(rng.choices("0123456789", k=11 - len(area)))


def _foreign(rng: random.Random) -> str:
    return JP_INTL + rng.choice(ORDINARY_FOREIGN) + "".join(rng.choices("0123456789", k=7))


def background(
    spec: BackgroundSpec, start_ms: int, end_ms: int, seed: int
) -> Iterator[dict[str, object]]:
    """Ordinary lines calling mostly at home, now and then abroad, in ts order."""
    rng = random.Random(seed)
    mean_gap_ms = 3_600_000 / spec.calls_per_hour
    heap: list[tuple[int, int]] = []
    for i in range(spec.lines):
        heapq.heappush(heap, (start_ms + int(rng.expovariate(1 / mean_gap_ms)), i))
    n = 0
    while heap:
        ts, i = heapq.heappop(heap)
        if ts >= end_ms:
            continue
        n += 1
        callee = _foreign(rng) if rng.random() < spec.intl_share else _domestic(rng)
        yield {
            "v": 1,
            "type": "setup",
            "call_id": f"bg-{seed}-{n}",
            "ts": ts,
            "line_id": f"{spec.line_prefix}{i:06d}",
            "tenant": f"tenant-{i % spec.tenant_count}",
            "caller": f"0{6_0000_0000 + i}",
            "callee": callee,
        }
        heapq.heappush(heap, (ts + 1 + int(rng.expovariate(1 / mean_gap_ms)), i))


def attack(spec: AttackSpec, start_ms: int, seed: int) -> Iterator[dict[str, object]]:
    """The seed case: one hijacked line dialling Sierra Leone numbers round the clock."""
    rng = random.Random(seed ^ 0x5EED)
    ts = start_ms
    for n in range(spec.calls):
        yield {
            "v": 1,
            "type": "setup",
            "call_id": f"atk-{seed}-{n}",
            "ts": ts,
            "line_id": spec.line_id,
            "tenant": spec.tenant,
            "callee": JP_INTL + spec.country_prefix + "".join(rng.choices("0123456789", k=6)),
        }
        ts += max(1, int(rng.gauss(spec.interval_ms, spec.interval_ms / 4)))


def merge(*streams: Iterator[dict[str, object]]) -> Iterator[dict[str, object]]:
    """Interleave event streams by event time."""
    return heapq.merge(*streams, key=lambda e: int(e["ts"]))  # type: ignore[call-overload]
