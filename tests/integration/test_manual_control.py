"""`tollguard block/unblock/blocks` against a real broker: manual signals with their actor."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tollguard.app.topics import ensure_tollguard_topics
from tollguard.cli.control import manual_signal, parse_scope, parse_ttl
from tollguard.config import Settings
from tollguard.signals.schema import validate_control_signal
from tollguard.testing.worker_process import isolated_settings, read_until, run_cli

pytestmark = pytest.mark.integration


def _cli(settings: Settings, *argv: str) -> str:
    result = run_cli(settings, *argv)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_block_unblock_and_the_block_list(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = isolated_settings(kafka_bootstrap, tmp_path, partitions=2)
    ensure_tollguard_topics(settings)

    _cli(
        settings,
        "block",
        "pbx-17",
        "--ttl",
        "1h",
        "--reason",
        "customer called",
        "--actor",
        "noc-ana",
    )
    _cli(settings, "block", "pbx-18", "--scope", "+232,+220", "--actor", "noc-ben")
    _cli(settings, "block", "pbx-19", "--scope", "all", "--actor", "noc-ben")
    _cli(settings, "unblock", "pbx-19", "--actor", "noc-cy")

    signals = read_until(kafka_bootstrap, settings.topic_control, lambda seen: len(seen) >= 4)
    assert len(signals) == 4
    for s in signals:
        validate_control_signal(s)
        assert s["source"] == "manual"
    by_line = {(s["line_id"], s["action"]): s for s in signals}
    first = by_line[("pbx-17", "block")]
    assert first["actor"] == "noc-ana"
    assert first["reason"] == "customer called"
    assert first["expires_at"] is not None
    assert by_line[("pbx-18", "block")]["scope"] == {
        "kind": "destinations",
        "prefixes": ["+232", "+220"],
    }
    assert by_line[("pbx-18", "block")]["expires_at"] is None
    assert by_line[("pbx-19", "unblock")]["actor"] == "noc-cy"

    blocks = read_until(kafka_bootstrap, settings.topic_blocks, lambda seen: len(seen) >= 4)
    assert {s["signal_id"] for s in blocks} == {s["signal_id"] for s in signals}

    listed = json.loads(_cli(settings, "blocks", "--json"))
    assert [s["line_id"] for s in listed] == ["pbx-17", "pbx-18"]
    table = _cli(settings, "blocks")
    assert "pbx-17" in table and "noc-ana" in table and "pbx-19" not in table


def test_manual_signals_are_deterministic_and_valid() -> None:
    now = int(time.time() * 1000)
    a = manual_signal("block", "l1", "ana", "why", now, scope=parse_scope("+232"), ttl_s=3600)
    b = manual_signal("block", "l1", "ana", "why", now, scope=parse_scope("+232"), ttl_s=3600)
    c = manual_signal("block", "l1", "ben", "why", now, scope=parse_scope("+232"), ttl_s=3600)
    assert a.signal_id == b.signal_id != c.signal_id
    validate_control_signal(a.to_dict(now))
    assert parse_ttl("90m") == 5400 and parse_ttl("none") is None and parse_ttl("2d") == 172800
    with pytest.raises(ValueError):
        parse_scope("232")
    with pytest.raises(ValueError):
        parse_ttl("soon")
