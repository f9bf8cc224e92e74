"""Single events -> `tollguard ingest pack` -> envelopes -> worker: the attack is still blocked."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from tests.conftest import TopicFactory
from tests.e2e.support import (
    WorkerProcess,
    events_as_records,
    isolated_settings,
    produce,
    read_until,
)
from tollguard.brokers._process import free_port, stop_group
from tollguard.simulate.traffic import AttackSpec, BackgroundSpec, attack, background, merge
from tollguard.testing.worker_process import settings_env

pytestmark = pytest.mark.e2e


def test_packed_envelopes_reach_the_same_decisions(
    kafka_bootstrap: str, tmp_path: Path, topic_factory: TopicFactory
) -> None:
    settings = isolated_settings(kafka_bootstrap, tmp_path, partitions=4)
    raw_topic = topic_factory(partitions=4)
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    env = {**os.environ, **settings_env(settings)}
    log = (tmp_path / "packer.log").open("wb")
    command = [sys.executable, "-m", "tollguard.cli.main", "ingest", "pack"]
    packer = subprocess.Popen(
        [*command, "--input-topic", raw_topic, "--web-port", str(free_port())],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        start = int(time.time() * 1000) - 6 * 3_600_000
        spec = AttackSpec(calls=60)
        bg = background(
            BackgroundSpec(lines=200, calls_per_hour=8), start, start + 4 * 3_600_000, 5
        )
        events = list(merge(bg, attack(spec, start + 3_600_000, 5)))
        bad = b'{"call_id": "x", "ts": "noon", "line_id": "line-x", "callee": "0312345678"}'
        records = list(events_as_records(events))
        records.insert(len(records) // 2, (b"line-x", bad))
        produce(kafka_bootstrap, raw_topic, records)

        signals = read_until(
            kafka_bootstrap,
            settings.topic_control,
            lambda seen: any(s["action"] == "block" for s in seen),
            timeout=90,
        )
        assert {s["line_id"] for s in signals if s["action"] == "block"} == {spec.line_id}, (
            worker.log_tail()
        )
        dead = read_until(
            kafka_bootstrap, settings.topic_deadletter, lambda seen: len(seen) >= 1, timeout=60
        )
        assert [d["reason"] for d in dead] == ["bad_timestamp"]
        # Packed with its neighbours, it is dead-lettered alone, as parsed.
        assert orjson.loads(dead[0]["raw"]) == orjson.loads(bad)
        assert isinstance(dead[0]["index"], int)

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if worker.metric("tollguard_events_total", type="setup") == len(events):
                break
            time.sleep(0.5)
        assert worker.metric("tollguard_events_total", type="setup") == len(events)
    finally:
        stop_group(packer)
        log.close()
        worker.stop()
