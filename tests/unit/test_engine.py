from tollguard.engine import CountRule, Engine, EngineConfig, RulePack
from tollguard.signals.model import ControlSignal

from .helpers import T0, event

SL = "01023276"  # Sierra Leone mobile, dialled from Japan
MIN = 60_000


def pack(*rules: CountRule) -> RulePack:
    return RulePack(name="t", version="v1", dial_plan="JP", rules=rules)


INTL = CountRule(id="intl", window_ms=10 * MIN, warning=3, critical=5, ttl_ms=60 * MIN)


def feed(engine: Engine, calls: list[tuple[str, int]], line: str = "line-1") -> list[ControlSignal]:
    out: list[ControlSignal] = []
    for callee, ts in calls:
        engine.process(event(callee, ts, line), out)
    return out


def attack(n: int, start: int = T0, gap: int = 30_000) -> list[tuple[str, int]]:
    return [(f"{SL}{100000 + i}", start + i * gap) for i in range(n)]


def test_attack_gives_one_alert_then_one_block_not_one_per_event() -> None:
    engine = Engine(pack(INTL))
    signals = feed(engine, attack(50))
    assert [(s.action, s.severity) for s in signals] == [
        ("alert", "warning"),
        ("block", "critical"),
    ]
    block = signals[1]
    assert block.event_ts == T0 + 4 * 30_000  # the fifth call crossed critical=5
    assert block.expires_at == block.event_ts + 60 * MIN
    assert block.reason == "5 calls to Sierra Leone (+232) in 10 min, limit 5"
    assert block.evidence is not None
    assert block.evidence.value == 5
    assert block.evidence.destinations == (("+232", 5),)
    assert len(block.evidence.sample_callees) == 5
    assert block.scope == {"kind": "international"}


def test_domestic_calls_never_count() -> None:
    engine = Engine(pack(INTL))
    assert feed(engine, [(f"03{10000000 + i}", T0 + i * 1000) for i in range(100)]) == []


def test_slow_calls_stay_under_a_sliding_window() -> None:
    engine = Engine(pack(INTL))
    # one call every 4 minutes: never more than 3 in any 10-minute window
    assert [s.action for s in feed(engine, attack(40, gap=4 * MIN))] == ["alert"]


def test_lines_are_independent() -> None:
    engine = Engine(pack(INTL))
    out: list[ControlSignal] = []
    for i, (callee, ts) in enumerate(attack(8)):
        engine.process(event(callee, ts, line=f"line-{i % 2}"), out)
    # 8 calls over two lines: each line reaches warning (3), neither critical (5).
    assert sorted((s.action, s.line_id) for s in out) == [("alert", "line-0"), ("alert", "line-1")]


def test_expiry_unblocks_then_a_new_attack_is_blocked_again() -> None:
    engine = Engine(pack(INTL))
    first = feed(engine, attack(10))
    block = next(s for s in first if s.action == "block")
    assert engine.active_blocks() == 1
    assert engine.expire(block.expires_at - 1) == []
    unblocks = engine.expire(block.expires_at)
    assert len(unblocks) == 1
    unblock = unblocks[0]
    assert (unblock.action, unblock.source, unblock.line_id) == ("unblock", "expiry", "line-1")
    assert engine.active_blocks() == 0
    assert engine.expire(block.expires_at + 10 * MIN) == []
    # The window drained during the hour, so a new attack is a new episode.
    later = feed(engine, attack(10, start=block.expires_at + 1))
    assert [s.action for s in later] == ["alert", "block"]
    assert later[0].signal_id != block.signal_id


def test_replay_gives_identical_signal_ids() -> None:
    a, b = Engine(pack(INTL)), Engine(pack(INTL))
    assert [s.signal_id for s in feed(a, attack(20))] == [s.signal_id for s in feed(b, attack(20))]


def test_duplicates_count_once() -> None:
    engine = Engine(pack(INTL))
    out: list[ControlSignal] = []
    for _ in range(10):
        assert engine.process(event(f"{SL}123456", T0, call_id="same"), out) in (None, "duplicate")
    assert out == []
    assert engine.stats.duplicates == 9


def test_late_event_within_lateness_lands_in_its_window_and_older_is_rejected() -> None:
    engine = Engine(pack(INTL), EngineConfig(lateness_ms=MIN))
    out: list[ControlSignal] = []
    for callee, ts in attack(4, start=T0 + 5 * MIN, gap=1000):
        engine.process(event(callee, ts), out)
    assert [s.action for s in out] == ["alert"]
    # 30 s late: accepted and counted, so the fifth call blocks.
    assert engine.process(event(f"{SL}999999", T0 + 5 * MIN + 3000 - 30_000), out) is None
    assert [s.action for s in out] == ["alert", "block"]
    # 2 min late: rejected.
    assert engine.process(event(f"{SL}888888", T0 + 3 * MIN), out) == "late"
    assert engine.stats.late == 1


def test_shadow_rule_signals_in_shadow_mode_and_does_not_stop_enforcement() -> None:
    shadow = CountRule(id="shadow", window_ms=10 * MIN, critical=2, mode="shadow")
    engine = Engine(pack(shadow, INTL))
    signals = feed(engine, attack(10))
    assert [(s.action, s.mode, s.rule_id) for s in signals if s.action == "block"] == [
        ("block", "shadow", "shadow"),
        ("block", "enforce", "intl"),
    ]


def test_prefix_filter_and_destination_scope() -> None:
    hot = CountRule(
        id="hot", window_ms=60 * MIN, critical=3, prefixes=("+232",), block_scope="destinations"
    )
    engine = Engine(pack(hot))
    calls = [("0101212555" + str(1000 + i), T0 + i * 1000) for i in range(5)] + attack(3, T0 + 9000)
    signals = feed(engine, calls)
    assert [s.action for s in signals] == ["block"]
    assert signals[0].scope == {"kind": "destinations", "prefixes": ["+232"]}


def test_mixed_destinations_reason_names_the_top_ones() -> None:
    engine = Engine(pack(INTL))
    calls = [(f"{SL}10000{i}", T0 + i) for i in range(3)] + [
        ("01022012345" + str(i), T0 + 10 + i) for i in range(2)
    ]
    block = next(s for s in feed(engine, calls) if s.action == "block")
    assert block.reason == (
        "5 international calls in 10 min (Sierra Leone (+232) 3, Gambia (+220) 2), limit 5"
    )


def test_new_pack_keeps_windows_of_rules_that_stay() -> None:
    engine = Engine(pack(INTL))
    feed(engine, attack(4))
    engine.set_pack(RulePack(name="t", version="v2", dial_plan="JP", rules=(INTL,)))
    signals = feed(engine, attack(1, start=T0 + 5 * 30_000))
    assert [(s.action, s.rules_version) for s in signals] == [("block", "v2")]


def test_attack_running_through_expiry_is_blocked_again_at_its_next_call() -> None:
    engine = Engine(pack(INTL))
    calls = attack(200, gap=30_000)  # 100 minutes of calls, TTL 60 minutes
    out: list[ControlSignal] = []
    for callee, ts in calls:
        out.extend(engine.expire(ts))
        engine.process(event(callee, ts), out)
    assert [s.action for s in out] == ["alert", "block", "unblock", "block"]
