"""A library of seeded toll-fraud scenarios over realistic populations of lines.

Every scenario is shaped on a reported incident (``SPEC``'s companion
``INCIDENTS.md``) and mixes it into a population of legitimate lines with daily
and weekly rhythms: homes, small offices, a call centre, hotels and businesses
that phone a few regular foreign partners. Everything here is pure: a scenario
is a generator of SPEC call events (dicts, in event-time order) plus a ground
truth dict saying which lines are attacked and from when. The same seed always
gives the same events; I/O and pacing live in ``tollguard.cli.simulate``.

Numbers are dialled the way the default pack expects (Japanese plan: ``010`` +
country code abroad, ``0`` + area at home) unless a scenario dials E.164.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
JST = timezone(timedelta(hours=9))
# Monday 2026-11-02 00:00 JST: a fixed default start so a seed fully fixes the output.
DEFAULT_START_MS = int(datetime(2026, 11, 2, tzinfo=JST).timestamp() * 1000)

# Ordinary foreign destinations (E.164 digits without '+'), weighted roughly by
# how often Japanese lines call them.
MAINSTREAM = (
    ("1212", 8),
    ("1415", 5),
    ("1310", 4),
    ("4420", 5),
    ("8610", 6),
    ("8621", 4),
    ("8210", 6),
    ("4930", 3),
    ("331", 3),
    ("6321", 3),
    ("6622", 3),
    ("612", 2),
    ("6565", 2),
    ("8522", 2),
)
DOMESTIC_AREAS = ("3", "6", "90", "80", "52", "11", "92", "75")


def _weighted(rng: random.Random, table: tuple[tuple[str, int], ...]) -> str:
    total = sum(w for _, w in table)
    r = rng.random() * total
    for value, w in table:
        r -= w
        if r < 0:
            return value
    return table[-1][0]


def _digits(rng: random.Random, k: int) -> str:
    return "".join(rng.choices("0123456789", k=k))


def _e164(prefix: str, rng: random.Random, length: int = 11) -> str:
    """A random number under an E.164 prefix (digits, no '+')."""
    return prefix + _digits(rng, max(2, length - len(prefix)))


def domestic_national(rng: random.Random) -> str:
    """A Japanese national significant number (no trunk prefix)."""
    area = rng.choice(DOMESTIC_AREAS)
    # Mobiles (90, 80) have ten national digits, landlines nine.
    return area + _digits(rng, (10 if area in ("90", "80") else 9) - len(area))


def dial(e164_digits: str, plan: str) -> str:
    """How a line dials an E.164 number: JP plan (``010``/``0``) or ``+`` E.164."""
    if plan == "e164":
        return "+" + e164_digits
    if e164_digits.startswith("81"):
        return "0" + e164_digits[2:]
    return "010" + e164_digits


@dataclass(frozen=True, slots=True)
class Call:
    """One call attempt; expanded to setup/answer/release events by `call_events`."""

    ts: int
    call_id: str
    line_id: str
    tenant: str
    caller: str
    callee_e164: str  # digits, no '+'
    answered: bool
    ring_ms: int
    duration_s: float


# --- legitimate populations -------------------------------------------------------------

# Calls per hour per line at each local hour (0..23), weekdays and weekends.
Profile = tuple[tuple[float, ...], tuple[float, ...]]


def _hours(default: float, **spans: float) -> tuple[float, ...]:
    """24 hourly rates: `default`, overridden by spans named like h9_18=value (end excl.)."""
    out = [default] * 24
    for name, value in spans.items():
        a, b = (int(x) for x in name[1:].split("_"))
        for h in range(a, b):
            out[h] = value
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Population:
    kind: str
    count: int
    profile: Profile
    intl_share: float
    # Regular foreign numbers per line (partners, relatives); 0 = random foreign numbers.
    favourites: int = 0
    favourite_share: float = 0.0
    mean_call_s: float = 150.0
    answer_rate: float = 0.75
    tenant_of: Callable[[int], str] = field(default=lambda i: f"tenant-{i % 20:02d}")


HOME = Population(
    "home",
    300,
    (
        _hours(0.01, h7_9=0.25, h9_18=0.12, h18_23=0.45, h23_24=0.08),
        _hours(0.01, h9_12=0.3, h12_18=0.35, h18_23=0.5),
    ),
    intl_share=0.03,
    favourites=1,
    favourite_share=0.8,
    mean_call_s=240.0,
)
OFFICE = Population(
    "office",
    60,
    (
        _hours(0.0, h8_9=1.5, h9_12=6.0, h12_13=3.0, h13_18=6.0, h18_20=1.5),
        _hours(0.0, h10_16=0.15),
    ),
    intl_share=0.03,
    mean_call_s=180.0,
)
CALL_CENTRE = Population(
    "callcentre",
    1,
    (
        _hours(0.0, h8_9=60.0, h9_21=180.0, h21_22=40.0),
        _hours(0.0, h10_18=70.0),
    ),
    intl_share=0.5,
    mean_call_s=200.0,
    answer_rate=0.55,
    tenant_of=lambda i: "tenant-callcentre",
)
HOTEL = Population(
    "hotel",
    2,
    (
        _hours(1.0, h7_10=8.0, h10_18=6.0, h18_19=12.0, h19_23=20.0, h23_24=6.0),
        _hours(1.0, h8_18=9.0, h18_19=12.0, h19_23=22.0, h23_24=6.0),
    ),
    intl_share=0.4,
    mean_call_s=300.0,
    tenant_of=lambda i: f"tenant-hotel-{i}",
)
TRADER = Population(
    "trade",
    20,
    (
        _hours(0.0, h8_9=1.0, h9_18=4.0, h18_21=1.5, h21_23=0.6),
        _hours(0.0, h10_14=0.2),
    ),
    intl_share=0.3,
    favourites=3,
    favourite_share=0.9,
    mean_call_s=420.0,
)
POPULATIONS = (HOME, OFFICE, CALL_CENTRE, HOTEL, TRADER)


def line_name(kind: str, i: int) -> str:
    return f"{kind}-{i:04d}"


def population_counts(scale: float) -> dict[str, int]:
    return {p.kind: max(1, round(p.count * scale)) for p in POPULATIONS}


def _local_rate(profile: Profile, ts_ms: int) -> float:
    local = datetime.fromtimestamp(ts_ms / 1000, JST)
    hours = profile[1] if local.weekday() >= 5 else profile[0]
    return hours[local.hour]


def legit_line(
    pop: Population,
    i: int,
    start_ms: int,
    end_ms: int,
    rng: random.Random,
    plan: str,
    tag: str,
) -> Iterator[Call]:
    """One legitimate line: a Poisson process thinned to its hourly profile."""
    line_id = line_name(pop.kind, i)
    tenant = pop.tenant_of(i)
    caller = f"81{6_0000_0000 + hash_small(line_id)}"
    peak = max(max(pop.profile[0]), max(pop.profile[1]))
    if peak <= 0:
        return
    favourites = [_e164(_weighted(rng, MAINSTREAM), rng) for _ in range(pop.favourites)]
    mean_gap = HOUR_MS / peak
    ts = start_ms
    n = 0
    while True:
        ts += 1 + int(rng.expovariate(1 / mean_gap))
        if ts >= end_ms:
            return
        if rng.random() * peak >= _local_rate(pop.profile, ts):
            continue
        n += 1
        if rng.random() < pop.intl_share:
            if favourites and rng.random() < pop.favourite_share:
                callee = rng.choice(favourites)
            else:
                callee = _e164(_weighted(rng, MAINSTREAM), rng)
        else:
            callee = "81" + domestic_national(rng)
        answered = rng.random() < pop.answer_rate
        yield Call(
            ts,
            f"{tag}-{line_id}-{n}",
            line_id,
            tenant,
            dial(caller, "e164") if plan == "e164" else "0" + caller[2:],
            callee,
            answered,
            rng.randint(3_000, 20_000),
            round(rng.expovariate(1 / pop.mean_call_s), 1) if answered else 0.0,
        )


def hash_small(text: str) -> int:
    """A stable small number from a name (Python's hash() is salted per process)."""
    h = 0
    for ch in text.encode():
        h = (h * 131 + ch) % 9_000_000
    return h


def legit_population(
    start_ms: int, end_ms: int, seed: int, scale: float, plan: str
) -> list[Iterator[Call]]:
    counts = population_counts(scale)
    streams: list[Iterator[Call]] = []
    for pop in POPULATIONS:
        for i in range(counts[pop.kind]):
            rng = random.Random(f"{seed}/{pop.kind}/{i}")
            streams.append(legit_line(pop, i, start_ms, end_ms, rng, plan, f"s{seed}"))
    return streams


# --- attacks ----------------------------------------------------------------------------


@dataclass(slots=True)
class AttackPlan:
    """Attack calls on one line, generated eagerly so the ground truth is exact."""

    kind: str
    line_id: str
    tenant: str
    calls: list[Call] = field(default_factory=list)

    def truth(self) -> dict[str, Any]:
        first, last = self.calls[0].ts, self.calls[-1].ts
        return {
            "line_id": self.line_id,
            "tenant": self.tenant,
            "kind": self.kind,
            "start_ts": first,
            "end_ts": last,
            "start": _iso(first),
            "end": _iso(last),
            "calls": len(self.calls),
        }


def _iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat(timespec="seconds")


def flood(
    plan: AttackPlan,
    rng: random.Random,
    start_ms: int,
    end_ms: int,
    mean_interval_ms: float,
    numbers: Callable[[int], str],
    mean_call_s: float,
    answer_rate: float = 0.9,
    active: Callable[[int], bool] = lambda ts: True,
    max_calls: int | None = None,
    tag: str = "atk",
) -> int:
    """Append attack calls (Poisson arrivals) to `plan`; returns the time of the last."""
    ts = start_ms
    while ts < end_ms and (max_calls is None or len(plan.calls) < max_calls):
        ts += max(1, int(rng.expovariate(1 / mean_interval_ms)))
        if ts >= end_ms or not active(ts):
            continue
        n = len(plan.calls)
        answered = rng.random() < answer_rate
        plan.calls.append(
            Call(
                ts,
                f"{tag}-{plan.line_id}-{n}",
                plan.line_id,
                plan.tenant,
                "",
                numbers(n),
                answered,
                rng.randint(2_000, 8_000),
                max(3.0, round(rng.gauss(mean_call_s, mean_call_s / 4), 1)) if answered else 0.0,
            )
        )
    return ts


def _pool(rng: random.Random, prefixes: Iterable[str], size: int) -> list[str]:
    prefixes = list(prefixes)
    return [_e164(prefixes[k % len(prefixes)], rng, 11) for k in range(size)]


def _pick_line(rng: random.Random, kind: str, counts: dict[str, int]) -> tuple[str, str]:
    pop = next(p for p in POPULATIONS if p.kind == kind)
    i = rng.randrange(counts[kind])
    return line_name(kind, i), pop.tenant_of(i)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    title: str
    incident: str
    days: float
    build: Callable[[random.Random, int, int, dict[str, int], str], list[AttackPlan]]
    plan: str = "jp"


def _seed_attack(
    rng: random.Random, start: int, end: int, counts: dict[str, int], tag: str
) -> list[AttackPlan]:
    line, tenant = _pick_line(rng, "office", counts)
    plan = AttackPlan("seed-case", line, tenant)
    numbers = _pool(rng, ("23276", "23277", "23278", "23230"), 2_000)
    flood(
        plan,
        rng,
        start + 12 * HOUR_MS,
        end,
        24_700,
        lambda n: rng.choice(numbers),
        30.0,
        max_calls=14_000,
        tag=tag,
    )
    return [plan]


PSL_COUNTRIES = ("220", "387", "381", "371", "670")


def _test_then_flood(
    rng: random.Random, start: int, end: int, counts: dict[str, int], tag: str
) -> list[AttackPlan]:
    line, tenant = _pick_line(rng, "trade", counts)
    plan = AttackPlan("test-then-flood", line, tenant)
    test_numbers = _pool(rng, PSL_COUNTRIES, 261)
    others = _pool(rng, PSL_COUNTRIES, 489)
    everyone = test_numbers + others
    # Test calls: a few dozen short calls to known test numbers over an evening.
    t0 = start + 2 * DAY_MS + 19 * HOUR_MS  # Wednesday 19:00 JST
    last = flood(
        plan, rng, t0, t0 + 3 * HOUR_MS, 360_000, lambda n: rng.choice(test_numbers), 12.0, tag=tag
    )
    # Then the flood after midnight: ~60 calls a minute on many channels for ~2.5 h,
    # most of the first thousand calls to the test numbers.
    f0 = max(last, t0 + 5 * HOUR_MS)

    def numbers(n: int) -> str:
        pool = test_numbers if n < 1_000 and rng.random() < 0.6 else everyone
        return rng.choice(pool)

    flood(plan, rng, f0, f0 + int(2.5 * HOUR_MS), 1_000, numbers, 210.0, 0.85, tag=tag)
    return [plan]


def _weekend(
    rng: random.Random, start: int, end: int, counts: dict[str, int], tag: str
) -> list[AttackPlan]:
    line, tenant = _pick_line(rng, "office", counts)
    plan = AttackPlan("weekend", line, tenant)
    numbers = _pool(rng, ("2207", "2522", "2529", "9607"), 400)
    f0 = start + 4 * DAY_MS + 19 * HOUR_MS  # Friday 19:00 JST
    f1 = start + 7 * DAY_MS + 6 * HOUR_MS  # Monday 06:00 JST
    # ~25 parallel channels of ~4 min calls.
    flood(plan, rng, f0, f1, 240_000 / 25, lambda n: rng.choice(numbers), 240.0, 0.8, tag=tag)
    return [plan]


def _slow_drip(
    rng: random.Random, start: int, end: int, counts: dict[str, int], tag: str
) -> list[AttackPlan]:
    line, tenant = _pick_line(rng, "office", counts)
    plan = AttackPlan("slow-drip", line, tenant)
    # Since 2018 attacks spread to mainstream countries: mobile ranges off the hot
    # lists, at one call every ~3 minutes and only at night, far under any
    # per-minute threshold; the calls are long, so the money is in the minutes.
    numbers = _pool(rng, ("639", "668", "614", "4479"), 120)

    def night(ts: int) -> bool:
        hour = datetime.fromtimestamp(ts / 1000, JST).hour
        return hour >= 22 or hour < 6

    flood(
        plan,
        rng,
        start + DAY_MS,
        end,
        180_000,
        lambda n: rng.choice(numbers),
        420.0,
        0.9,
        active=night,
        tag=tag,
    )
    return [plan]


CARIBBEAN = ("1876", "1242", "1664", "1284", "1473", "1649", "1767")


def _caribbean(
    rng: random.Random, start: int, end: int, counts: dict[str, int], tag: str
) -> list[AttackPlan]:
    plans = []
    for k, i in enumerate(rng.sample(range(counts["trade"]), min(2, counts["trade"]))):
        plan = AttackPlan("caribbean", line_name("trade", i), TRADER.tenant_of(i))
        pool = _pool(rng, CARIBBEAN, 300)
        f0 = start + DAY_MS + (23 + 26 * k) * HOUR_MS  # Tue 23:00, Thu 01:00 JST

        def numbers(n: int, pool: list[str] = pool) -> str:
            return rng.choice(pool)

        flood(plan, rng, f0, f0 + 6 * HOUR_MS, 40_000, numbers, 90.0, tag=tag)
        plans.append(plan)
    return plans


WANGIRI_RANGES = ("3712", "2529", "88213", "2224")


def _wangiri(
    rng: random.Random, start: int, end: int, counts: dict[str, int], tag: str
) -> list[AttackPlan]:
    # An autodialer rang thousands of numbers once on Saturday late morning; some of
    # the people it reached call the missed number back, once or a few times, during
    # the afternoon and evening. Each callback is a premium-rate loss.
    premium = _pool(rng, WANGIRI_RANGES, 12)
    wave = start + 5 * DAY_MS + 11 * HOUR_MS  # Saturday 11:00 JST
    victims: dict[str, AttackPlan] = {}
    homes = counts["home"]
    offices = counts["office"]
    n_victims = max(3, (homes + offices) // 3)
    for _ in range(n_victims):
        kind = "home" if rng.random() < homes / (homes + offices) else "office"
        line, tenant = _pick_line(rng, kind, counts)
        if line in victims:
            continue
        plan = victims[line] = AttackPlan("wangiri", line, tenant)
        number = rng.choice(premium)
        first = wave + int(rng.expovariate(1 / (2 * HOUR_MS)))
        callbacks = 1 + min(4, int(rng.expovariate(0.9)))
        ts = first
        for k in range(callbacks):
            plan.calls.append(
                Call(
                    ts,
                    f"{tag}-{line}-{k}",
                    line,
                    tenant,
                    "",
                    number,
                    True,
                    rng.randint(3_000, 9_000),
                    round(rng.uniform(30, 300), 1),
                )
            )
            ts += rng.randint(60_000, 40 * 60_000)
    return sorted(victims.values(), key=lambda p: p.line_id)


def _no_attack(
    rng: random.Random, start: int, end: int, counts: dict[str, int], tag: str
) -> list[AttackPlan]:
    return []


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "seed-attack",
            "Japan 2015: a hijacked business PBX dials Sierra Leone for four days",
            "~14,000 calls to +232 in 4 days, each ~30 s (only ~2.4 calls/min)",
            4.6,
            _seed_attack,
        ),
        Scenario(
            "test-then-flood",
            "PSL case: test calls, then a short intense flood to five countries",
            "test calls to known test numbers, then ~60 calls/min for 2.5 h to "
            "Gambia, Bosnia, Serbia, Latvia, East Timor (~750 numbers, 261 test numbers)",
            4.0,
            _test_then_flood,
        ),
        Scenario(
            "weekend",
            "US weekend attack: an office PBX idle for the weekend floods Gambia, "
            "Somalia and the Maldives",
            "Friday 19:00 to Monday 06:00, ~25 parallel channels of ~4 min calls",
            8.0,
            _weekend,
        ),
        Scenario(
            "slow-drip",
            "Slow attack under per-minute thresholds: one call every ~3 min, at night",
            "long night calls to mobile ranges in mainstream countries (PH, TH, AU, GB), "
            "off the hot lists",
            5.0,
            _slow_drip,
        ),
        Scenario(
            "caribbean",
            "Caribbean ranges inside +1 from lines whose partners are in the US (E.164 dialling)",
            "two trading lines call +1 876 / +1 242 / +1 664 ... at night for 6 h",
            4.0,
            _caribbean,
            plan="e164",
        ),
        Scenario(
            "wangiri",
            "Wangiri callbacks: many lines each call a premium number back once or twice",
            "one-ring wave on Saturday; callbacks to +371, +252, +882, +222 ranges",
            7.0,
            _wangiri,
        ),
        Scenario(
            "background",
            "No attack: the legitimate population alone (false-positive baseline)",
            "homes, offices, a call centre, hotels, trading businesses",
            7.0,
            _no_attack,
        ),
    )
}


def call_events(calls: Iterable[Call], plan: str, full: bool = True) -> Iterator[dict[str, Any]]:
    """SPEC events for ts-ordered calls: setup, and if `full` answer and release, in ts order."""
    pending: list[tuple[int, int, dict[str, Any]]] = []
    seq = 0
    for call in calls:
        while pending and pending[0][0] <= call.ts:
            yield heapq.heappop(pending)[2]
        setup: dict[str, Any] = {
            "v": 1,
            "type": "setup",
            "call_id": call.call_id,
            "ts": call.ts,
            "line_id": call.line_id,
            "tenant": call.tenant,
            "callee": dial(call.callee_e164, plan),
        }
        if call.caller:
            setup["caller"] = call.caller
        yield setup
        if not full:
            continue
        base = {"v": 1, "call_id": call.call_id, "line_id": call.line_id, "tenant": call.tenant}
        answer_ts = call.ts + call.ring_ms
        if call.answered:
            seq += 1
            heapq.heappush(pending, (answer_ts, seq, {**base, "type": "answer", "ts": answer_ts}))
        end_ts = answer_ts + math.ceil(call.duration_s * 1000)
        seq += 1
        release = {**base, "type": "release", "ts": end_ts, "duration_s": call.duration_s}
        heapq.heappush(pending, (end_ts, seq, release))
    while pending:
        yield heapq.heappop(pending)[2]


def generate(
    name: str,
    seed: int = 1,
    start_ms: int = DEFAULT_START_MS,
    scale: float = 1.0,
    full_calls: bool = True,
    days: float | None = None,
) -> tuple[Iterator[dict[str, Any]], dict[str, Any]]:
    """Events (lazy, in ts order) and ground truth for a named scenario."""
    scenario = SCENARIOS[name]
    span_days = scenario.days if days is None else days
    end_ms = start_ms + int(span_days * DAY_MS)
    counts = population_counts(scale)
    atk = f"atk{seed}"
    attacks = scenario.build(random.Random(f"{seed}/attack/{name}"), start_ms, end_ms, counts, atk)
    attacks = [a for a in attacks if a.calls]
    for a in attacks:
        a.calls = [c for c in a.calls if c.ts < end_ms]
    attacks = [a for a in attacks if a.calls]
    streams: list[Iterator[Call]] = legit_population(start_ms, end_ms, seed, scale, scenario.plan)
    streams.extend(iter(a.calls) for a in attacks)
    merged = heapq.merge(*streams, key=lambda c: c.ts)
    truth = {
        "scenario": name,
        "title": scenario.title,
        "incident": scenario.incident,
        "seed": seed,
        "scale": scale,
        "dialling": scenario.plan,
        "start_ts": start_ms,
        "end_ts": end_ms,
        "start": _iso(start_ms),
        "end": _iso(end_ms),
        "populations": counts,
        "attack_call_id_prefix": f"{atk}-",
        "attacked": [a.truth() for a in attacks],
    }
    return call_events(merged, scenario.plan, full_calls), truth
