"""Each rule kind on its own: values, window edges, late events, thresholds."""

from __future__ import annotations

from typing import Any

from tollguard.engine import Engine, EngineConfig, RulePack
from tollguard.engine.events import CallEvent
from tollguard.rulepacks import load_pack_text
from tollguard.signals.model import ControlSignal

from .helpers import T0, parser

MIN = 60_000
HOUR = 60 * MIN
SL = "01023276"  # Sierra Leone mobile, dialled from Japan


def pack(rules_yaml: str, dial_plan: str = "JP") -> RulePack:
    return load_pack_text(f"pack: t\nversion: v1\ndial_plan: {dial_plan}\nrules:\n{rules_yaml}")


def ev(
    callee: str | None,
    ts: int,
    *,
    line: str = "line-1",
    call_id: str | None = None,
    etype: str = "setup",
    tenant: str | None = None,
    duration_s: float | None = None,
) -> CallEvent:
    obj: dict[str, Any] = {
        "call_id": call_id or f"{line}-{ts}-{callee}-{etype}",
        "ts": ts,
        "line_id": line,
        "type": etype,
    }
    if callee is not None:
        obj["callee"] = callee
    if tenant is not None:
        obj["tenant"] = tenant
    if duration_s is not None:
        obj["duration_s"] = duration_s
    return parser().from_dict(obj)


def run(engine: Engine, events: list[CallEvent]) -> list[ControlSignal]:
    out: list[ControlSignal] = []
    for e in events:
        engine.process(e, out)
    return out


def actions(signals: list[ControlSignal]) -> list[tuple[str, str | None]]:
    return [(s.action, s.rule_id) for s in signals]


# --------------------------------------------------------------------------- count


COUNT = """
  - id: c
    window: 10m
    warning: 2
    critical: 4
"""


def test_count_window_edge_a_call_exactly_one_window_old_has_left() -> None:
    engine = Engine(pack(COUNT))
    # three calls, then the fourth exactly 10 min after the first: only 3 in (t-10m, t]
    out = run(engine, [ev(f"{SL}10000{i}", T0 + i * MIN) for i in range(3)])
    out += run(engine, [ev(f"{SL}100009", T0 + 10 * MIN)])
    assert actions(out) == [("alert", "c")]
    # one millisecond earlier it would have been four
    engine = Engine(pack(COUNT))
    out = run(engine, [ev(f"{SL}10000{i}", T0 + i * MIN) for i in range(3)])
    out += run(engine, [ev(f"{SL}100009", T0 + 10 * MIN - 1)])
    assert actions(out) == [("alert", "c"), ("block", "c")]


def test_count_late_event_within_lateness_counts_older_is_rejected() -> None:
    engine = Engine(pack(COUNT), EngineConfig(lateness_ms=MIN))
    out = run(engine, [ev(f"{SL}10000{i}", T0 + 5 * MIN + i) for i in range(3)])
    assert engine.process(ev(f"{SL}200000", T0 + 5 * MIN - 50_000), out) is None
    assert actions(out) == [("alert", "c"), ("block", "c")]
    assert engine.process(ev(f"{SL}300000", T0 + 3 * MIN), out) == "late"


# --------------------------------------------------------------------------- spend


SPEND = """
  - id: s
    kind: spend
    window: 1h
    default_call: 60s
    rates: {"+23276": 1.0}
    default_rate: 0.5
    warning: 3
    critical: 5.5
"""


def test_spend_estimates_setups_at_the_default_length() -> None:
    engine = Engine(pack(SPEND))
    out = run(engine, [ev(f"{SL}10000{i}", T0 + i * MIN) for i in range(6)])
    # 1.00 per minute x 60 s each: 3.00 after three calls, 6.00 after six
    assert actions(out) == [("alert", "s"), ("block", "s")]
    block = out[1]
    assert block.evidence is not None and block.evidence.value == 6.0
    assert block.evidence.metric == "spend"
    assert block.reason.startswith("spend of 6.00 USD on calls to Sierra Leone (+232) in 1 h")


def test_spend_release_with_duration_makes_the_cost_exact() -> None:
    engine = Engine(pack(SPEND))
    out: list[ControlSignal] = []
    # two setups estimated at 1.00 each, then their releases say 150 s each: 2.50 each;
    # the first release brings the total to 3.50 (2.50 + 1.00): the alert
    for i in range(2):
        engine.process(ev(f"{SL}10000{i}", T0 + i, call_id=f"k{i}"), out)
    for i in range(2):
        engine.process(
            ev(None, T0 + 200_000 + i, call_id=f"k{i}", etype="release", duration_s=150), out
        )
    assert actions(out) == [("alert", "s")]
    assert out[0].evidence is not None and out[0].evidence.value == 3.5
    # after both releases: 5.00 exact; a third setup (estimate 1.00) crosses 5.5
    engine.process(ev(f"{SL}100002", T0 + 300_000, call_id="k2"), out)
    assert actions(out) == [("alert", "s"), ("block", "s")]
    assert out[1].evidence is not None and out[1].evidence.value == 6.0


def test_spend_hovering_at_warning_raises_one_alert_per_episode() -> None:
    """Releases correct each estimate down, the next setup pushes it up again.

    The value crosses warning at every call for hours; that is one episode
    (seen in a backtest of the seed case as hundreds of alerts on one line).
    """
    engine = Engine(pack(SPEND.replace("critical: 5.5", "critical: 100")))
    events: list[CallEvent] = []
    for i in range(55):  # one call every 11 minutes for 10 hours, 30 s each
        ts = T0 + i * 11 * MIN
        events.append(ev(f"{SL}{100000 + i}", ts, call_id=f"h{i}"))
        events.append(ev(None, ts + 30_000, call_id=f"h{i}", etype="release", duration_s=30))
    assert actions(run(engine, events)) == [("alert", "s")]
    # Quiet for more than a window: the next crossing is a new episode.
    later = T0 + 55 * 11 * MIN + 2 * HOUR
    burst = [ev(f"{SL}{200000 + i}", later + i, call_id=f"n{i}") for i in range(3)]
    assert actions(run(engine, burst)) == [("alert", "s")]


def test_spend_uses_the_default_rate_where_no_prefix_matches() -> None:
    engine = Engine(pack(SPEND))
    # +1 212 is in the shipped rate table at 0.01; Gambia +220 is in it too (0.75)
    out = run(engine, [ev(f"0102207{i:06d}", T0 + i) for i in range(8)])
    assert actions(out) == [("alert", "s"), ("block", "s")]  # 0.75 x 8 = 6.00


# --------------------------------------------------------------------------- distinct


def test_distinct_numbers_counts_each_number_once() -> None:
    engine = Engine(pack("  - id: d\n    kind: distinct\n    window: 10m\n    critical: 3\n"))
    same = [ev(f"{SL}100000", T0 + i, call_id=f"x{i}") for i in range(5)]
    assert run(engine, same) == []
    out = run(engine, [ev(f"{SL}10000{i}", T0 + 10 + i) for i in range(1, 3)])
    assert actions(out) == [("block", "d")]


def test_distinct_countries() -> None:
    engine = Engine(
        pack("  - id: d\n    kind: distinct\n    of: countries\n    window: 1h\n    warning: 3\n")
    )
    calls = [f"{SL}100000", "0102201234567", "0102201234568", "01012125550100", "0104420794601"]
    out = run(engine, [ev(c, T0 + i) for i, c in enumerate(calls)])
    assert actions(out) == [("alert", "d")]
    assert out[0].event_ts == T0 + 3  # Sierra Leone, Gambia, (Gambia), US
    assert out[0].evidence is not None and dict(out[0].evidence.destinations) == {
        "+232": 1,
        "+220": 2,
        "+1": 1,
    }


def test_range_walk_counts_numbers_under_one_long_prefix() -> None:
    engine = Engine(
        pack(
            "  - id: r\n    kind: distinct\n    of: ranges\n    range_digits: 2\n"
            "    window: 1h\n    critical: 5\n    block_scope: destinations\n"
        )
    )
    # numbers spread over many ranges never add up
    spread = [ev(f"{SL}{i}00000", T0 + i) for i in range(1, 10)]
    assert run(engine, spread) == []
    # walking one range: +23276555 00, 01, 02, ...
    walk = [ev(f"{SL}5550{i}", T0 + 100 + i) for i in range(5)]
    out = run(engine, walk)
    assert actions(out) == [("block", "r")]
    assert "under +23276555" in out[0].reason
    assert out[0].scope == {"kind": "destinations", "prefixes": ["+232"]}


# --------------------------------------------------------------------------- repeat


def test_repeat_same_number_but_not_many_numbers() -> None:
    engine = Engine(pack("  - id: p\n    kind: repeat\n    window: 1h\n    critical: 4\n"))
    assert run(engine, [ev(f"{SL}10000{i}", T0 + i) for i in range(9)]) == []
    out = run(engine, [ev(f"{SL}123456", T0 + 100 + i, call_id=f"r{i}") for i in range(4)])
    assert actions(out) == [("block", "p")]
    assert "same number +23276123456" in out[0].reason


def test_repeat_window_edge() -> None:
    engine = Engine(pack("  - id: p\n    kind: repeat\n    window: 10m\n    critical: 3\n"))
    calls = [ev(f"{SL}123456", T0 + i * 5 * MIN, call_id=f"r{i}") for i in range(3)]
    # 0, 5, 10 min: the first has left when the third arrives
    assert run(engine, calls) == []


# --------------------------------------------------------------------------- new destination


NEWDEST = """
  - id: n
    kind: new_destination
    learn: 1d
    window: 1h
    warning: 2
    critical: 3
"""


def test_new_destination_learns_first_then_flags_a_never_seen_country() -> None:
    engine = Engine(pack(NEWDEST))
    day = 24 * HOUR
    # learning: the line calls the US (and Sierra Leone, once) in its first day
    learn = [ev("01012125550100", T0 + i * HOUR, call_id=f"l{i}") for i in range(5)]
    learn.append(ev(f"{SL}999999", T0 + 6 * HOUR))
    assert run(engine, learn) == []
    # later: the US and Sierra Leone are known; Gambia is new
    later = [ev("01012125550100", T0 + day + i, call_id=f"u{i}") for i in range(5)]
    later += [ev(f"{SL}10000{i}", T0 + day + 10 + i) for i in range(5)]
    assert run(engine, later) == []
    out = run(engine, [ev(f"0102201{i:06d}", T0 + day + 100 + i) for i in range(3)])
    assert actions(out) == [("alert", "n"), ("block", "n")]
    assert out[1].evidence is not None and dict(out[1].evidence.destinations) == {"+220": 3}


def test_new_destination_becomes_normal_after_a_window() -> None:
    engine = Engine(pack(NEWDEST))
    day = 24 * HOUR
    run(engine, [ev("0312345678", T0)])  # the line exists from T0
    first = run(engine, [ev("0102201000001", T0 + day)])
    assert first == []
    # a full window after first seen, Gambia is part of the line's normal
    later = [ev(f"0102201{i:06d}", T0 + day + HOUR + i) for i in range(5)]
    assert run(engine, later) == []


def test_new_destination_history_is_bounded_per_line() -> None:
    engine = Engine(pack(NEWDEST.replace("learn: 1d", "learn: 1d\n    max_destinations: 3")))
    codes = ["1212555", "4420794", "8610888", "4930123", "3314567"]
    run(engine, [ev(f"010{c}{i:04d}", T0 + i, call_id=f"h{i}") for i, c in enumerate(codes)])
    state = engine.lines["line-1"].states["n"]
    assert len(state.seen) == 3
    assert list(state.seen) == ["+86", "+49", "+33"]  # least recently called forgotten


# --------------------------------------------------------------------------- concurrent


CONCURRENT = """
  - id: k
    kind: concurrent
    window: 1h
    release_timeout: 30m
    warning: 2
    critical: 3
"""


def legs(
    engine: Engine, call_id: str, callee: str, answer: int, release: int | None
) -> list[ControlSignal]:
    events = [
        ev(callee, answer - 5000, call_id=call_id),
        ev(None, answer, call_id=call_id, etype="answer"),
    ]
    if release is not None:
        events.append(
            ev(
                None,
                release,
                call_id=call_id,
                etype="release",
                duration_s=(release - answer) / 1000,
            )
        )
    return run(engine, events)


def test_concurrent_counts_live_calls_from_answer_to_release() -> None:
    engine = Engine(pack(CONCURRENT))
    out: list[ControlSignal] = []
    out += legs(engine, "a", f"{SL}100001", T0 + 10_000, T0 + 20_000)
    out += legs(engine, "b", f"{SL}100002", T0 + 30_000, None)
    out += legs(engine, "c", f"{SL}100003", T0 + 40_000, None)
    assert actions(out) == [("alert", "k")]  # b and c up at once; a had ended
    out += legs(engine, "d", f"{SL}100004", T0 + 50_000, None)
    assert actions(out) == [("alert", "k"), ("block", "k")]
    assert out[1].evidence is not None and out[1].evidence.value == 3


def test_concurrent_release_that_never_comes_times_out() -> None:
    engine = Engine(pack(CONCURRENT))
    out: list[ControlSignal] = []
    out += legs(engine, "a", f"{SL}100001", T0 + 10_000, None)  # never released
    # 31 minutes later two more calls: the lost one no longer counts
    out += legs(engine, "b", f"{SL}100002", T0 + 31 * MIN + 10_000, None)
    assert actions(out) == []
    live = engine.lines["line-1"].states["k"]
    assert list(live.calls) == ["b"]


def test_domestic_calls_do_not_count_towards_international_concurrency() -> None:
    engine = Engine(pack(CONCURRENT))
    out: list[ControlSignal] = []
    for i in range(5):
        out += legs(engine, f"d{i}", f"0312345{i:03d}", T0 + 10_000 + i, None)
    assert out == []


# --------------------------------------------------------------------------- long call


LONG = """
  - id: g
    kind: long_call
    window: 1h
    release_timeout: 6h
    warning: 1h
    critical: 2h
"""


def test_long_call_is_flagged_while_still_up_on_the_event_time_watermark() -> None:
    engine = Engine(pack(LONG))
    out = legs(engine, "long", f"{SL}100001", T0, None)
    assert out == []
    # other traffic in the shard moves event time on
    out += run(engine, [ev("0312345678", T0 + HOUR - 1, line="other")])
    assert out == []
    out += run(engine, [ev("0312345679", T0 + HOUR, line="other")])
    assert actions(out) == [("alert", "g")]
    assert out[0].line_id == "line-1" and out[0].evidence is not None
    assert out[0].evidence.value == 3600
    assert out[0].reason == "a call to Sierra Leone (+232) up for 1 h, limit 1 h"
    out += run(engine, [ev("0312345670", T0 + 2 * HOUR, line="other")])
    assert actions(out) == [("alert", "g"), ("block", "g")]


def test_long_call_released_in_time_is_not_flagged() -> None:
    engine = Engine(pack(LONG))
    out = legs(engine, "short", f"{SL}100001", T0, T0 + 30 * MIN)
    out += run(engine, [ev("0312345679", T0 + 3 * HOUR, line="other")])
    assert out == []


def test_long_call_release_reporting_a_long_duration_decides() -> None:
    engine = Engine(pack(LONG))
    out = run(engine, [ev(f"{SL}100001", T0, call_id="z")])
    # no answer event seen, but the release says it lasted 2.5 h
    out += run(engine, [ev(None, T0 + 9_000_000, call_id="z", etype="release", duration_s=9000)])
    assert actions(out) == [("block", "g")]


def test_release_without_callee_long_after_its_setup_still_ends_the_call() -> None:
    rules = CONCURRENT + SPEND.replace("id: s", "id: s2")
    engine = Engine(pack(rules))
    out = legs(engine, "a", f"{SL}100001", T0 + 10_000, None)
    # later setups on the line push the remembered setup of "a" out
    out += run(engine, [ev(f"010121255501{i:02d}", T0 + 20 * MIN + i) for i in range(3)])
    assert "a" not in (engine.lines["line-1"].legs or {})
    assert list(engine.lines["line-1"].states["k"].calls) == ["a"]
    out += run(engine, [ev(None, T0 + 25 * MIN, call_id="a", etype="release", duration_s=1490)])
    assert engine.lines["line-1"].states["k"].calls == {}
    # spend corrected from the 60 s estimate to 1490 s at 1.00/min (+ 3 x 0.01 to the US)
    assert engine.lines["line-1"].states["s2"].total == 24_833_333 + 30_000
    assert out == [] or all(s.rule_id == "s2" for s in out)
