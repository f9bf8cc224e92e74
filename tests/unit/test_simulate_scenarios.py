"""The scenario library: reproducible, truthful ground truth, realistic legit rhythms."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime
from functools import cache
from itertools import islice
from typing import Any

import orjson
import pytest

from tests.unit.helpers import parser
from tollguard.engine import EventError
from tollguard.simulate.scenarios import DAY_MS, JST, SCENARIOS, generate

SMALL = 0.2


@cache
def small(name: str, seed: int = 1, full: bool = False) -> tuple[list[dict[str, Any]], Any]:
    events, truth = generate(name, seed=seed, scale=SMALL, full_calls=full)
    return list(events), truth


def test_same_seed_same_events_other_seed_other_events() -> None:
    a, ta = generate("test-then-flood", seed=5, scale=SMALL, days=3.5)
    b, tb = generate("test-then-flood", seed=5, scale=SMALL, days=3.5)
    c, _ = generate("test-then-flood", seed=6, scale=SMALL, days=3.5)
    first_a, first_b = list(a), list(b)
    assert first_a == first_b
    assert ta == tb
    assert list(islice(c, 500)) != first_a[:500]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_events_are_ordered_valid_and_unique(name: str) -> None:
    events, truth = small(name)
    p = parser("JP")
    last = 0
    ids = set()
    for e in events:
        assert e["ts"] >= last
        last = e["ts"]
        assert truth["start_ts"] <= e["ts"] < truth["end_ts"]
        key = (e["call_id"], e["type"])
        assert key not in ids
        ids.add(key)
        try:
            p.parse(orjson.dumps(e))
        except EventError as exc:  # pragma: no cover - the message is the point
            pytest.fail(f"{name}: {e} rejected: {exc}")


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_ground_truth_matches_the_generated_attack_calls(name: str) -> None:
    events, truth = small(name)
    prefix = truth["attack_call_id_prefix"]
    by_line: dict[str, list[int]] = defaultdict(list)
    for e in events:
        if e["call_id"].startswith(prefix):
            by_line[e["line_id"]].append(e["ts"])
    attacked = {a["line_id"]: a for a in truth["attacked"]}
    assert set(by_line) == set(attacked)
    for line, times in by_line.items():
        row = attacked[line]
        assert row["calls"] == len(times)
        assert row["start_ts"] == min(times)
        assert row["end_ts"] == max(times)
    if name == "background":
        assert not attacked
    else:
        assert attacked


def test_attack_shapes_follow_the_incidents() -> None:
    events, truth = small("seed-attack")
    (row,) = truth["attacked"]
    assert row["calls"] == 14_000
    days = (row["end_ts"] - row["start_ts"]) / DAY_MS
    assert 3.5 < days < 4.5  # ~14,000 calls in ~4 days
    callees = [e["callee"] for e in events if e["line_id"] == row["line_id"]]
    assert sum(c.startswith("010232") for c in callees) == 14_000

    events, truth = small("weekend")
    (row,) = truth["attacked"]
    start = datetime.fromtimestamp(row["start_ts"] / 1000, JST)
    end = datetime.fromtimestamp(row["end_ts"] / 1000, JST)
    assert (start.weekday(), start.hour) == (4, 19)  # Friday evening
    assert end.weekday() == 0 and end.hour < 6  # Monday before work

    events, truth = small("caribbean")
    assert len(truth["attacked"]) == 2
    attack_callees = [e["callee"] for e in events if e["call_id"].startswith("atk")]
    assert all(
        c[:5] in {"+1876", "+1242", "+1664", "+1284", "+1473", "+1649", "+1767"}
        for c in attack_callees
    )

    events, truth = small("wangiri")
    per_line = [a["calls"] for a in truth["attacked"]]
    assert len(per_line) >= 10 and max(per_line) <= 5  # many lines, each a few callbacks


def test_full_calls_have_a_release_with_duration_after_setup() -> None:
    events, _ = generate("caribbean", seed=2, scale=0.05, days=2.5)
    setups: dict[str, int] = {}
    releases = 0
    for e in events:
        if e["type"] == "setup":
            setups[e["call_id"]] = e["ts"]
        elif e["type"] == "release":
            releases += 1
            assert e["ts"] >= setups[e["call_id"]]
            assert e["duration_s"] >= 0
    assert releases == len(setups)


def _local(ts: int) -> datetime:
    return datetime.fromtimestamp(ts / 1000, JST)


def test_legit_populations_have_daily_and_weekly_rhythms() -> None:
    events, truth = small("background")
    days = (truth["end_ts"] - truth["start_ts"]) / DAY_MS
    assert days == 7
    kinds: dict[str, Counter[str]] = defaultdict(Counter)
    intl: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for e in events:
        kind = e["line_id"].split("-")[0]
        t = _local(e["ts"])
        weekend = t.weekday() >= 5
        h = t.hour
        bucket = (
            "weekend"
            if weekend
            else "office"
            if 9 <= h < 18
            else "evening"
            if 18 <= h < 23
            else "night"
            if h < 6
            else "other"
        )
        kinds[kind][bucket] += 1
        total[kind] += 1
        intl[kind] += e["callee"].startswith("010")
    counts = truth["populations"]
    office = kinds["office"]
    assert office["night"] == 0
    assert office["office"] > 20 * office["weekend"]
    # ~45 calls a weekday per office line
    per_line_day = office["office"] / counts["office"] / 5
    assert 30 < per_line_day < 60
    home = kinds["home"]
    assert home["evening"] > home["office"] > home["night"]
    assert total["home"] / counts["home"] / days < 6  # a few calls a day
    hotel = kinds["hotel"]
    assert hotel["evening"] > 2 * hotel["night"]
    # The call centre is the heavy international caller, the homes barely call abroad.
    assert 0.45 < intl["callcentre"] / total["callcentre"] < 0.55
    assert intl["home"] / total["home"] < 0.06
    assert total["callcentre"] > total["home"] / counts["home"] * 100


def test_live_start_keeps_the_weekly_calendar_and_is_not_in_the_past() -> None:
    from tollguard.cli.simulate import live_start
    from tollguard.simulate.scenarios import DEFAULT_START_MS

    week = 7 * DAY_MS
    assert live_start(DEFAULT_START_MS) == DEFAULT_START_MS
    assert live_start(DEFAULT_START_MS + 1) == DEFAULT_START_MS + week
    now = DEFAULT_START_MS + 10 * week + 12_345
    start = live_start(now)
    assert start >= now and start - now < week and (start - DEFAULT_START_MS) % week == 0


def test_pacing_compresses_event_time_and_caps_the_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    import tollguard.cli.simulate as sim

    clock = [0.0]
    monkeypatch.setattr(sim.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(sim.time, "sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    events = [{"ts": 1_000_000 + i * 60_000} for i in range(11)]  # one a minute
    list(sim.paced(iter(events), speed=60.0))  # a minute of event time per second
    assert clock[0] == pytest.approx(10.0)
    clock[0] = 0.0
    list(sim.paced(iter(events), speed=0.0, rate=2.0))  # at most two a second
    assert clock[0] == pytest.approx(5.0)
