"""Simulated legitimate populations and attacks, for tuning and testing rule packs.

Each generator yields SPEC call events (dicts: setup, answer, release with
`duration_s`) for one line, in event-time order, dialled with the Japanese
dial plan (010 + country code for international calls). Shapes follow
../shared/INCIDENTS.md: call centres and hotels with heavy international
volume, businesses with a few regular foreign partners.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

TOKYO = ZoneInfo("Asia/Tokyo")
# Monday 2026-11-30 00:00 in Tokyo.
START = int(datetime(2026, 11, 30, tzinfo=TOKYO).timestamp() * 1000)
HOUR = 3_600_000
DAY = 24 * HOUR

Event = dict[str, object]

# Mainstream destinations a call centre serves (calling code + area digits).
CALL_CENTRE_DESTS = (
    ("1212", 0.2),
    ("1415", 0.15),
    ("4420", 0.15),
    ("6128", 0.1),
    ("6328", 0.1),
    ("6561", 0.05),
    ("8210", 0.1),
    ("8610", 0.05),
    ("4930", 0.05),
    ("331", 0.05),
)
# Where hotel guests come from: many countries, a few of them on the hot list.
HOTEL_DESTS = (
    *[(p, 3.0) for p in ("1212", "4420", "8610", "8210", "6128", "331", "4930", "3906", "3491")],
    *[
        (p, 1.0)
        for p in (
            "8862",
            "8522",
            "6562",
            "6621",
            "6012",
            "6221",
            "919",
            "7495",
            "5511",
            "5255",
            "1416",
            "6494",
            "3120",
            "4122",
            "4687",
            "4721",
            "4533",
            "3585",
            "3531",
            "3511",
            "302",
            "9055",
            "9715",
            "9665",
            "2721",
            "2011",
            "2341",
            "2547",
            "5411",
            "5691",
        )
    ],
    *[(p, 0.15) for p in ("1876", "1242", "371", "53")],
)


def _pick(rng: random.Random, table: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([p for p, _ in table], weights=[w for _, w in table])[0]


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choices("0123456789", k=n))


def _local(ts: int) -> datetime:
    return datetime.fromtimestamp(ts / 1000, tz=UTC).astimezone(TOKYO)


def _call(
    line: str,
    tenant: str,
    n: int,
    ts: int,
    callee: str,
    rng: random.Random,
    answer_p: float,
    mean_s: float,
) -> list[Event]:
    cid = f"{line}-{n}"
    base: Event = {"call_id": cid, "line_id": line, "tenant": tenant, "callee": callee}
    events: list[Event] = [{**base, "type": "setup", "ts": ts}]
    if rng.random() < answer_p:
        ring = rng.randint(3_000, 20_000)
        duration = max(5.0, rng.expovariate(1 / mean_s))
        events.append({**base, "type": "answer", "ts": ts + ring})
        events.append(
            {
                **base,
                "type": "release",
                "ts": ts + ring + int(duration * 1000),
                "duration_s": round(duration, 1),
            }
        )
    return events


def _poisson_times(rng: random.Random, start: int, end: int, per_hour: float) -> Iterator[int]:
    if per_hour <= 0:
        return
    t = start + int(rng.expovariate(per_hour / HOUR))
    while t < end:
        yield t
        t += 1 + int(rng.expovariate(per_hour / HOUR))


def _ordered(events: list[Event]) -> list[Event]:
    return sorted(events, key=lambda e: (int(e["ts"]), str(e["call_id"]), str(e["type"])))  # type: ignore[call-overload]


def call_centre(days: int = 10, seed: int = 1, per_hour: float = 320) -> list[Event]:
    """An outbound international call centre trunk: weekdays 09-18, ~320 calls an hour."""
    rng = random.Random(seed)
    line, tenant = "cc-trunk-1", "tenant-callcentre"
    out: list[Event] = []
    n = 0
    for day in range(days):
        day_start = START + day * DAY
        if _local(day_start).weekday() >= 5:
            continue
        for ts in _poisson_times(rng, day_start + 9 * HOUR, day_start + 18 * HOUR, per_hour):
            n += 1
            if rng.random() < 0.15:
                callee = "03" + _digits(rng, 8)
            else:
                callee = "010" + _pick(rng, CALL_CENTRE_DESTS) + _digits(rng, 7)
            out += _call(line, tenant, n, ts, callee, rng, answer_p=0.45, mean_s=180)
    return _ordered(out)


def hotel(days: int = 10, seed: int = 2) -> list[Event]:
    """A 300-room hotel PBX: guests call home from everywhere, day and night."""
    rng = random.Random(seed)
    line, tenant = "hotel-pbx-1", "tenant-hotel"
    out: list[Event] = []
    n = 0
    for hour in range(days * 24):
        h0 = START + hour * HOUR
        local = _local(h0)
        weekend = local.weekday() >= 5
        rate = (14.0 if weekend else 10.0) if 7 <= local.hour < 23 else 6.0
        for ts in _poisson_times(rng, h0, h0 + HOUR, rate):
            n += 1
            if rng.random() < 0.3:
                callee = "03" + _digits(rng, 8)
            else:
                callee = "010" + _pick(rng, HOTEL_DESTS) + _digits(rng, 7)
            out += _call(line, tenant, n, ts, callee, rng, answer_p=0.7, mean_s=420)
            # Guests redial home now and then.
            if rng.random() < 0.2:
                n += 1
                out += _call(
                    line, tenant, n, ts + rng.randint(60_000, 900_000), callee, rng, 0.7, 300
                )
    return _ordered(out)


def business_with_partners(days: int = 10, seed: int = 3) -> list[Event]:
    """An office line with three steady foreign partners, plus domestic calls.

    Some days bring a negotiation: a partner is called a dozen times in an
    afternoon; once a week a two-hour conference call with the US.
    """
    rng = random.Random(seed)
    line, tenant = "office-77", "tenant-exporter"
    partners = (
        "010" + "1415" + "5550123",
        "010" + "4420" + "79460123",
        "010" + "8610" + "88886666",
    )
    out: list[Event] = []
    n = 0
    for day in range(days):
        day_start = START + day * DAY
        local = _local(day_start)
        if local.weekday() >= 5:
            continue
        for ts in _poisson_times(rng, day_start + 9 * HOUR, day_start + 19 * HOUR, 12):
            n += 1
            callee = rng.choice(partners) if rng.random() < 0.35 else "06" + _digits(rng, 8)
            out += _call(line, tenant, n, ts, callee, rng, answer_p=0.8, mean_s=600)
        if day % 3 == 1:  # negotiation afternoon
            partner = rng.choice(partners)
            for ts in _poisson_times(rng, day_start + 14 * HOUR, day_start + 17 * HOUR, 5):
                n += 1
                out += _call(line, tenant, n, ts, partner, rng, answer_p=0.9, mean_s=300)
        if local.weekday() == 2:  # weekly conference call, 2 h
            n += 1
            ts = day_start + 10 * HOUR
            cid = f"{line}-{n}"
            base: Event = {"call_id": cid, "line_id": line, "tenant": tenant, "callee": partners[0]}
            out += [
                {**base, "type": "setup", "ts": ts},
                {**base, "type": "answer", "ts": ts + 5_000},
                {**base, "type": "release", "ts": ts + 5_000 + 2 * HOUR, "duration_s": 7200.0},
            ]
    return _ordered(out)


def domestic_history(line: str, days: int, seed: int = 4, per_hour: float = 4) -> list[Event]:
    """A quiet business line calling only within Japan, office hours."""
    rng = random.Random(seed)
    out: list[Event] = []
    n = 0
    for day in range(days):
        day_start = START + day * DAY
        for ts in _poisson_times(rng, day_start + 9 * HOUR, day_start + 18 * HOUR, per_hour):
            n += 1
            out += _call(line, "tenant-pbx", n, ts, "03" + _digits(rng, 8), rng, 0.7, 200)
    return _ordered(out)


def seed_attack(
    line: str, start: int, calls: int = 60, seed: int = 5, interval_ms: int = 24_700
) -> list[Event]:
    """The seed case: one hijacked line dialling Sierra Leone mobiles every ~25 s, ~30 s each."""
    rng = random.Random(seed)
    out: list[Event] = []
    ts = start
    for n in range(calls):
        callee = "01023276" + _digits(rng, 6)
        out += _call(line, "tenant-pbx", 10_000 + n, ts, callee, rng, answer_p=1.0, mean_s=30)
        ts += max(1, int(rng.gauss(interval_ms, interval_ms / 4)))
    return _ordered(out)


def merge(*streams: list[Event]) -> list[Event]:
    return list(heapq.merge(*streams, key=lambda e: int(e["ts"])))  # type: ignore[call-overload]
