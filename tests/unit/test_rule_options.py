"""What every rule can carry: schedule, scope, allow-lists, overrides, TTL, cooldown, shadow."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tollguard.engine import Engine, Schedule
from tollguard.engine.schedule import parse_hours
from tollguard.rulepacks import load_pack_text
from tollguard.signals.model import ControlSignal

from .helpers import T0
from .test_rule_kinds import MIN, SL, actions, ev, pack, run


def utc(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


# --------------------------------------------------------------------------- schedules


def test_schedule_hours_wrap_midnight_in_the_rule_time_zone() -> None:
    s = Schedule("Asia/Tokyo", hours=(parse_hours("22:00-06:00"),))  # type: ignore[arg-type]
    assert s.active(utc("2026-11-30T13:00:00"))  # 22:00 JST
    assert s.active(utc("2026-11-30T20:59:59"))  # 05:59 JST
    assert not s.active(utc("2026-11-30T21:00:00"))  # 06:00 JST: end is exclusive
    assert not s.active(utc("2026-11-30T12:59:00"))  # 21:59 JST


def test_schedule_follows_dst_start_in_new_york() -> None:
    s = Schedule("America/New_York", hours=((22 * 60, 6 * 60),))
    # 2027-03-14: clocks go from 02:00 EST to 03:00 EDT.
    assert s.active(utc("2027-03-13T10:30:00"))  # 05:30 EST, the day before
    assert not s.active(utc("2027-03-14T10:30:00"))  # 06:30 EDT (a fixed -5 would say 05:30)
    assert s.active(utc("2027-03-14T09:30:00"))  # 05:30 EDT


def test_schedule_repeated_hour_at_dst_end() -> None:
    s = Schedule("America/New_York", hours=((60, 120),))  # 01:00-02:00 local
    # 2026-11-01: 01:00-02:00 happens twice, first EDT (05:00Z) then EST (06:00Z).
    assert s.active(utc("2026-11-01T05:30:00"))
    assert s.active(utc("2026-11-01T06:30:00"))
    assert not s.active(utc("2026-11-01T07:30:00"))


def test_schedule_weekends_holidays_and_days() -> None:
    s = Schedule(
        "Asia/Tokyo",
        hours=((9 * 60, 10 * 60),),
        days=frozenset({0}),  # Mondays 09-10
        all_day=frozenset({6}),  # Sundays
        holidays=frozenset({datetime(2027, 1, 1).date()}),
    )
    assert s.active(utc("2026-11-30T00:30:00"))  # Mon 09:30 JST
    assert not s.active(utc("2026-12-01T00:30:00"))  # Tue 09:30 JST
    assert s.active(utc("2026-12-05T18:00:00"))  # Sun 03:00 JST
    assert s.active(utc("2026-12-31T16:00:00"))  # Fri 2027-01-01 01:00 JST, a holiday
    assert not s.active(utc("2026-12-31T14:00:00"))  # Thu 23:00 JST


def test_schedule_cache_is_per_utc_minute_and_exact_at_the_edge() -> None:
    s = Schedule("Asia/Tokyo", hours=((22 * 60, 6 * 60),))
    edge = utc("2026-11-30T13:00:00")
    assert not s.active(edge - 1)
    assert s.active(edge)
    assert not s.active(edge - 1)


def test_scheduled_rule_only_counts_calls_inside_its_schedule() -> None:
    rules = pack(
        """
  - id: night
    window: 1h
    critical: 3
    schedule: {timezone: Asia/Tokyo, hours: "22:00-06:00"}
"""
    )
    engine = Engine(rules)
    day = utc("2026-11-30T03:00:00")  # 12:00 JST
    assert run(engine, [ev(f"{SL}10000{i}", day + i) for i in range(5)]) == []
    night = utc("2026-11-30T14:00:00")  # 23:00 JST
    out = run(engine, [ev(f"{SL}20000{i}", night + i) for i in range(3)])
    assert actions(out) == [("block", "night")]


# --------------------------------------------------------------------------- scope, allow


def test_scope_tenants_and_lines() -> None:
    rules = pack(
        """
  - id: t
    window: 1h
    critical: 2
    scope: {tenants: [acme]}
  - id: l
    window: 1h
    critical: 2
    scope: {lines: [line-9]}
"""
    )
    engine = Engine(rules)
    out = run(engine, [ev(f"{SL}10000{i}", T0 + i, tenant="other") for i in range(3)])
    assert out == []
    out = run(engine, [ev(f"{SL}10000{i}", T0 + i, line="a", tenant="acme") for i in range(3)])
    assert actions(out) == [("block", "t")]
    out = run(engine, [ev(f"{SL}10000{i}", T0 + i, line="line-9") for i in range(3)])
    assert actions(out) == [("block", "l")]


def test_allow_lists_of_lines_and_numbers() -> None:
    rules = pack(
        """
  - id: a
    window: 1h
    critical: 3
    allow: {lines: [hotel-1], numbers: ["+2327612"]}
"""
    )
    engine = Engine(rules)
    assert run(engine, [ev(f"{SL}10000{i}", T0 + i, line="hotel-1") for i in range(9)]) == []
    assert run(engine, [ev(f"{SL}12000{i}", T0 + i) for i in range(9)]) == []
    out = run(engine, [ev(f"{SL}30000{i}", T0 + 100 + i) for i in range(3)])
    assert actions(out) == [("block", "a")]


def test_destination_filter_prefixes_exclude_and_domestic() -> None:
    rules = pack(
        """
  - id: any
    window: 1h
    critical: 3
    match: {international: false, exclude_prefixes: ["+81"]}
"""
    )
    engine = Engine(rules)
    assert run(engine, [ev(f"0312345{i:03d}", T0 + i) for i in range(5)]) == []
    out = run(engine, [ev(f"0102201{i:06d}", T0 + 10 + i) for i in range(3)])
    assert actions(out) == [("block", "any")]


def test_hot_list_filter_catches_caribbean_ranges_inside_plus_one() -> None:
    rules = pack(
        "  - id: h\n    window: 1h\n    critical: 3\n    match: {hot_list: true}\n", "NANP"
    )
    engine = Engine(rules)
    from .helpers import parser as make_parser

    p = make_parser("NANP")
    us = [
        p.from_dict({"call_id": f"u{i}", "ts": T0 + i, "line_id": "l", "callee": f"1212555{i:04d}"})
        for i in range(5)
    ]
    assert run(engine, us) == []
    bahamas = [
        p.from_dict(
            {"call_id": f"b{i}", "ts": T0 + 10 + i, "line_id": "l", "callee": f"1242555{i:04d}"}
        )
        for i in range(3)
    ]
    out = run(engine, bahamas)
    assert actions(out) == [("block", "h")]
    assert "Bahamas" in out[0].reason


# --------------------------------------------------------------------------- overrides


OVERRIDES = """
  - id: o
    window: 1h
    warning: 2
    critical: 4
    overrides:
      tenants:
        callcentre: {warning: 10, critical: 20}
        trial: {mode: shadow}
        off: {enabled: false}
      lines:
        cc-vip: {critical: 6}
"""


@pytest.mark.parametrize(
    ("line", "tenant", "expected"),
    [
        # the rule's own thresholds
        ("plain", "acme", [("alert", 2), ("block", 4)]),
        # tenant override
        ("cc-1", "callcentre", [("alert", 10), ("block", 20)]),
        # line beats tenant; fields it leaves out come from the rule (warning 2), not the tenant
        ("cc-vip", "callcentre", [("alert", 2), ("block", 6)]),
        # disabled for a tenant
        ("x", "off", []),
    ],
)
def test_override_precedence_line_then_tenant_then_rule(
    line: str, tenant: str, expected: list[tuple[str, int]]
) -> None:
    engine = Engine(pack(OVERRIDES))
    out = run(engine, [ev(f"{SL}{i:06d}", T0 + i, line=line, tenant=tenant) for i in range(25)])
    got = [(s.action, int(s.evidence.threshold)) for s in out if s.evidence is not None]
    assert got == expected


def test_override_mode_shadow_for_a_tenant() -> None:
    engine = Engine(pack(OVERRIDES))
    out = run(engine, [ev(f"{SL}{i:06d}", T0 + i, tenant="trial") for i in range(5)])
    assert [(s.action, s.mode) for s in out] == [("alert", "shadow"), ("block", "shadow")]
    assert engine.active_blocks() == 0


def test_override_thresholds_raise_the_count_window_cap() -> None:
    rule = pack(OVERRIDES).rules[0]
    assert rule.cap == 20


# --------------------------------------------------------------------------- blocks


def test_one_block_per_line_whichever_rule_crosses_first() -> None:
    rules = pack(
        """
  - id: first
    window: 1h
    critical: 3
  - id: second
    kind: distinct
    window: 1h
    critical: 4
"""
    )
    engine = Engine(rules)
    out = run(engine, [ev(f"{SL}{i:06d}", T0 + i) for i in range(10)])
    assert actions(out) == [("block", "first")]


def test_cooldown_after_unblock_suppresses_new_signals_for_a_while() -> None:
    rules = pack(
        """
  - id: c
    window: 10m
    warning: 2
    critical: 3
    ttl: 30m
    cooldown: 1h
"""
    )
    engine = Engine(rules)
    out: list[ControlSignal] = []
    ts = T0
    for i in range(200):  # one call a minute for 200 minutes
        out.extend(engine.expire(ts))
        engine.process(ev(f"{SL}{i:06d}", ts), out)
        ts += MIN
    # block at minute 2, unblock at 32, cooldown to 92, block again at 92, unblock at 122, ...
    got = [(s.action, (int(s.event_ts or 0) - T0) // MIN) for s in out]
    assert got[:4] == [("alert", 1), ("block", 2), ("unblock", 32), ("block", 92)]


def test_without_cooldown_a_running_attack_is_blocked_again_at_once() -> None:
    rules = pack("  - id: c\n    window: 10m\n    critical: 3\n    ttl: 30m\n")
    engine = Engine(rules)
    out: list[ControlSignal] = []
    ts = T0
    for i in range(40):
        out.extend(engine.expire(ts))
        engine.process(ev(f"{SL}{i:06d}", ts), out)
        ts += MIN
    got = [(s.action, (int(s.event_ts or 0) - T0) // MIN) for s in out]
    assert got == [("block", 2), ("unblock", 32), ("block", 32)]


def test_signals_carry_the_rules_version_and_a_stable_id() -> None:
    a = run(Engine(pack(OVERRIDES)), [ev(f"{SL}{i:06d}", T0 + i) for i in range(5)])
    b = run(Engine(pack(OVERRIDES)), [ev(f"{SL}{i:06d}", T0 + i) for i in range(5)])
    assert {s.rules_version for s in a} == {"v1"}
    assert [s.signal_id for s in a] == [s.signal_id for s in b]


def test_new_pack_keeps_state_of_rules_with_the_same_id_and_kind() -> None:
    rule = "  - id: x\n    window: 1h\n    critical: 5\n"
    engine = Engine(pack(rule))
    run(engine, [ev(f"{SL}{i:06d}", T0 + i) for i in range(4)])
    engine.set_pack(load_pack_text(f"pack: t\nversion: v2\ndial_plan: JP\nrules:\n{rule}"))
    out = run(engine, [ev(f"{SL}900000", T0 + 10)])
    assert [(s.action, s.rules_version) for s in out] == [("block", "v2")]
    # the same id with another kind starts afresh
    engine.set_pack(pack("  - id: x\n    kind: repeat\n    window: 1h\n    critical: 5\n"))
    assert "x" not in engine.lines["line-1"].states
