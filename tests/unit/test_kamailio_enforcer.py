"""The Kamailio enforcer's block list and its retry/re-sync logic, with a fake RPC."""

from __future__ import annotations

from typing import Any

import pytest

from tollguard.adapters.kamailio import (
    BlockList,
    Enforcer,
    EnforcerMetrics,
    KamailioDown,
    RpcError,
    scope_value,
)

NOW = 1_795_910_400_000


def sig(
    sid: str,
    action: str = "block",
    line: str = "pbx-1",
    *,
    mode: str = "enforce",
    expires_in_s: float | None = 20,
    scope: dict[str, Any] | None = None,
    source: str = "rule",
    rule: str = "hot",
) -> dict[str, Any]:
    from tollguard.signals.model import rfc3339

    return {
        "v": 1,
        "signal_id": sid,
        "action": action,
        "line_id": line,
        "scope": scope or {"kind": "international"},
        "mode": mode,
        "source": source,
        "rule_id": rule,
        "issued_at": rfc3339(NOW),
        "expires_at": rfc3339(NOW + int(expires_in_s * 1000)) if expires_in_s else None,
    }


class FakeRpc:
    """An htable in a dict; `down` makes every call fail like a dead Kamailio."""

    url = "fake://kamailio"

    def __init__(self) -> None:
        self.table: dict[str, tuple[str, int | None]] = {}
        self.calls: list[tuple[Any, ...]] = []
        self.down = False

    def call(self, method: str, *params: Any) -> Any:
        self.calls.append((method, *params))
        if self.down:
            raise KamailioDown("connection refused")
        if method == "htable.dump":
            return [
                {"entry": 1, "slot": [{"name": k, "value": v} for k, (v, _) in self.table.items()]}
            ]
        if method == "htable.setxs":
            _, key, value, ttl = params
            assert isinstance(ttl, int), "numeric RPC parameters must be JSON numbers"
            self.table[key] = (value, ttl)
            return "ok"
        if method == "htable.sets":
            _, key, value = params
            self.table[key] = (value, None)
            return "ok"
        if method == "htable.delete":
            if params[1] not in self.table:
                raise RpcError(method, {"code": 404, "message": "Key not found in htable."})
            del self.table[params[1]]
            return "ok"
        raise AssertionError(method)


class Clock:
    def __init__(self) -> None:
        self.t = NOW / 1000

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def setup() -> tuple[Enforcer, FakeRpc, Clock]:
    rpc, clock = FakeRpc(), Clock()
    enforcer = Enforcer(rpc, "tgblock", EnforcerMetrics(), clock=clock)  # type: ignore[arg-type]
    return enforcer, rpc, clock


def sample(enforcer: Enforcer, name: str, **labels: str) -> float:
    return enforcer.metrics.registry.get_sample_value(name, labels) or 0.0


def test_scope_values() -> None:
    assert scope_value({"kind": "all"}) == "all"
    assert scope_value({"kind": "international"}) == "international"
    assert scope_value({"kind": "destinations", "prefixes": ["+232", "+220"]}) == (
        "destinations:+232,+220"
    )
    assert scope_value({"kind": "destinations"}) == "international"
    assert scope_value(None) == "all"


def test_block_is_set_with_remaining_ttl_then_unblock_deletes(setup: Any) -> None:
    enforcer, rpc, clock = setup
    clock.t += 5
    enforcer.offer_all([sig("b1", expires_in_s=20)])
    enforcer.step()
    assert rpc.table == {"pbx-1": ("international", 15)}
    assert sample(enforcer, "tollguard_enforcer_applied_total", op="set") == 1
    assert sample(enforcer, "tollguard_enforcer_lag_seconds_count") == 1
    enforcer.offer_all([sig("u1", "unblock", source="expiry")])
    enforcer.step()
    assert rpc.table == {}
    assert sample(enforcer, "tollguard_enforcer_applied_total", op="delete") == 1


def test_indefinite_block_uses_sets(setup: Any) -> None:
    enforcer, rpc, _ = setup
    enforcer.offer_all([sig("b1", expires_in_s=None, scope={"kind": "all"})])
    enforcer.step()
    assert rpc.table == {"pbx-1": ("all", None)}


def test_duplicates_shadow_alerts_and_expired_are_not_applied(setup: Any) -> None:
    enforcer, rpc, clock = setup
    enforcer.offer_all([sig("b1"), sig("b1"), sig("s1", line="pbx-2", mode="shadow")])
    enforcer.offer_all([sig("a1", "alert", line="pbx-3"), {"nonsense": 1}, "text"])
    clock.t += 100
    enforcer.offer_all([sig("old", line="pbx-4", expires_in_s=20)])
    enforcer.step()
    assert rpc.table == {}  # b1 expired locally by now, so nothing is set
    counts = {
        outcome: sample(enforcer, "tollguard_enforcer_signals_total", action=a, outcome=outcome)
        for a, outcome in [
            ("block", "accepted"),
            ("block", "duplicate"),
            ("block", "shadow"),
            ("alert", "ignored"),
            ("block", "expired"),
        ]
    }
    assert counts == {"accepted": 1, "duplicate": 1, "shadow": 1, "ignored": 1, "expired": 1}
    assert (
        sample(enforcer, "tollguard_enforcer_signals_total", action="other", outcome="invalid") == 2
    )


def test_expiry_of_another_rules_block_keeps_the_current_one(setup: Any) -> None:
    enforcer, rpc, _ = setup
    enforcer.offer_all([sig("b1", rule="velocity")])
    enforcer.offer_all([sig("u0", "unblock", source="expiry", rule="hot")])
    enforcer.step()
    assert "pbx-1" in rpc.table
    enforcer.offer_all([sig("u1", "unblock", source="manual", rule="hot")])
    enforcer.step()
    assert rpc.table == {}


def test_retries_while_down_and_resyncs_when_back(setup: Any) -> None:
    enforcer, rpc, clock = setup
    enforcer.step()  # first contact: sync of an empty table
    assert enforcer.up
    rpc.down = True
    enforcer.offer_all([sig("b1"), sig("b2", line="pbx-2")])
    enforcer.step()
    assert not enforcer.up and rpc.table == {}
    assert sample(enforcer, "tollguard_enforcer_kamailio_up") == 0
    assert sample(enforcer, "tollguard_enforcer_failed_total", op="set") == 1
    calls = len(rpc.calls)
    enforcer.step()  # still backing off: no call at all
    assert len(rpc.calls) == calls
    # Kamailio restarted meanwhile: empty, but with a stray key to remove
    rpc.down = False
    rpc.table = {"stale-line": ("all", None)}
    for _ in range(10):
        clock.t += 1
        enforcer.step()
        if enforcer.up and not enforcer.blocks.dirty:
            break
    assert set(rpc.table) == {"pbx-1", "pbx-2"}
    assert sample(enforcer, "tollguard_enforcer_resyncs_total") == 2
    assert sample(enforcer, "tollguard_enforcer_pending_lines") == 0


def test_backoff_grows_and_is_capped(setup: Any) -> None:
    enforcer, rpc, clock = setup
    rpc.down = True
    delays = []
    for _ in range(8):
        enforcer.step()
        delays.append(enforcer._retry_at - clock.t)
        clock.t = enforcer._retry_at
    assert delays[0] == pytest.approx(0.2)
    assert delays == sorted(delays) and max(delays) == pytest.approx(5.0)


def test_seen_ids_are_bounded() -> None:
    blocks = BlockList(max_seen=5)
    for i in range(20):
        blocks.offer(sig(f"s{i}", "alert"), NOW)
    assert len(blocks._seen) == 5


def test_lag_is_observed_once_per_signal_not_per_resync(setup: Any) -> None:
    enforcer, _rpc, clock = setup
    enforcer.offer_all([sig("b1")])
    for _ in range(3):
        clock.t += 1
        enforcer.request_resync()
        enforcer.step()
    assert sample(enforcer, "tollguard_enforcer_applied_total", op="set") == 3
    assert sample(enforcer, "tollguard_enforcer_lag_seconds_count") == 1
    assert sample(enforcer, "tollguard_enforcer_lag_seconds_sum") == 1.0
