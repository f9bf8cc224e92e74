"""The default pack against INCIDENTS.md: attacks blocked early, legitimate lines never."""

from __future__ import annotations

import copy
from collections import Counter
from functools import cache
from pathlib import Path

import pytest

from tollguard.engine import Engine, RulePack
from tollguard.rulepacks import load_pack
from tollguard.signals.model import ControlSignal

from . import populations as pop
from .helpers import parser

REPO = Path(__file__).resolve().parents[2]


@cache
def default_pack() -> RulePack:
    return load_pack(REPO / "rules" / "default.yaml")


def replay(events: list[pop.Event], pack: RulePack | None = None) -> list[ControlSignal]:
    engine = Engine(pack or default_pack())
    out: list[ControlSignal] = []
    parse = parser("JP").from_dict
    for raw in events:
        event = parse(dict(raw))
        out.extend(engine.expire(event.ts_ms))
        engine.process(event, out)
    return out


def summary(signals: list[ControlSignal]) -> Counter[tuple[str, str | None]]:
    return Counter((s.action, s.rule_id) for s in signals)


@pytest.mark.parametrize(
    "population",
    [pop.call_centre, pop.hotel, pop.business_with_partners],
    ids=["call-centre", "hotel", "business-with-partners"],
)
def test_legitimate_populations_are_never_blocked(population: object) -> None:
    events = population()  # type: ignore[operator]
    signals = replay(events)
    blocks = [s for s in signals if s.action == "block" and s.mode == "enforce"]
    assert blocks == [], f"{summary(signals)}: {[b.reason for b in blocks][:3]}"


def test_seed_attack_on_a_fresh_line_is_blocked_within_20_calls() -> None:
    attack = pop.seed_attack("pbx-osaka-0042", pop.START + 30 * pop.HOUR)
    signals = replay(attack)
    block = next(s for s in signals if s.action == "block")
    setups = [e for e in attack if e["type"] == "setup"]
    assert block.event_ts is not None and block.event_ts <= int(setups[19]["ts"])  # type: ignore[call-overload]
    assert block.line_id == "pbx-osaka-0042" and block.rules_version == default_pack().version


def test_seed_attack_on_a_learned_line_is_blocked_within_20_calls_by_several_rules() -> None:
    line = "pbx-kobe-0007"
    history = pop.domestic_history(line, days=9)
    attack = pop.seed_attack(line, pop.START + 9 * pop.DAY + 2 * pop.HOUR, calls=200)
    signals = replay(pop.merge(history, attack))
    assert [s for s in signals if int(s.event_ts or 0) < pop.START + 9 * pop.DAY] == []
    block = next(s for s in signals if s.action == "block")
    setups = [e for e in attack if e["type"] == "setup"]
    assert int(block.event_ts or 0) <= int(setups[19]["ts"])  # type: ignore[call-overload]
    # Without the hot list the new-destination and spend signals still see it.
    rules = {s.rule_id for s in signals}
    assert {"hot-destinations", "new-destination"} <= rules


def test_seed_attack_without_the_hot_list_is_still_blocked() -> None:
    pack = default_pack()
    no_hot = RulePack(
        pack.name,
        pack.version,
        pack.dial_plan,
        tuple(r for r in pack.rules if r.id != "hot-destinations"),
    )
    line = "pbx-kobe-0008"
    history = pop.domestic_history(line, days=9)
    attack = pop.seed_attack(line, pop.START + 9 * pop.DAY + 2 * pop.HOUR, calls=200)
    signals = replay(pop.merge(history, attack), no_hot)
    block = next(s for s in signals if s.action == "block")
    setups = [e for e in attack if e["type"] == "setup"]
    assert int(block.event_ts or 0) <= int(setups[19]["ts"])  # type: ignore[call-overload]
    assert block.rule_id == "new-destination"


def test_a_batch_decides_exactly_as_one_event_at_a_time() -> None:
    """Most events take the engine's shortcut (admitted, nothing else to do); taking it
    must change nothing against the full path, one event at a time."""
    calls = sorted(
        pop.hotel() + pop.seed_attack("pbx-osaka-0042", pop.START + 30 * pop.HOUR),
        key=lambda e: int(e["ts"]),  # type: ignore[call-overload]
    )
    # Answers and releases without a callee, as many switches send them: the
    # engine finds their destination by the setup's call leg.
    calls = [{k: v for k, v in e.items() if k != "callee" or e["type"] == "setup"} for e in calls]
    stream = [e for i, e in enumerate(calls) for _ in range(2 if i % 7 == 0 else 1)]  # re-sent
    late = dict(stream[len(stream) // 2], call_id="late-1", ts=pop.START)
    stream.insert(len(stream) * 3 // 4, late)
    parse = parser("JP").from_dict

    full_path = copy.copy(default_pack())
    object.__setattr__(full_path, "quiet_domestic", frozenset())  # no shortcut
    one = Engine(full_path)
    one_out: list[ControlSignal] = []
    verdicts = [(e["call_id"], one.process(parse(dict(e)), one_out)) for e in stream]

    batch = Engine(default_pack())
    batch_out: list[ControlSignal] = []
    refused = batch.process_batch([parse(dict(e)) for e in stream], batch_out)

    assert [(stream[i]["call_id"], why) for i, why in refused] == [(c, v) for c, v in verdicts if v]
    assert {why for _, why in refused} == {"duplicate", "late"}
    assert [s.signal_id for s in batch_out] == [s.signal_id for s in one_out]
    assert any(s.action == "block" for s in batch_out)
    assert batch.lines == one.lines and batch.dirty == one.dirty
    assert batch.stats == one.stats
