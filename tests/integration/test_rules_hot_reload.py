"""Hot reload on a real broker: `tollguard rules push` reaches a running worker.

A worker starts on the default pack file; a pushed pack replaces it without a
restart (its version shows in `tollguard_rules_version_info` and on the
signals it produces); an invalid pack on the topic is rejected with a logged
reason and counted while the pack in force stays; a restarted worker starts
on the newest *valid* pack on the topic, not on its file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tollguard.testing.worker_process import (
    WorkerProcess,
    events_as_records,
    isolated_settings,
    produce,
    read_until,
    settings_env,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

PUSHED = """\
pack: default
version: hot-2
dial_plan: JP
rules:
  # Targets anything: a tiny threshold so the test sees the new pack decide.
  - id: tiny
    window: 1h
    critical: 3
    ttl: 1h
"""

BROKEN = b"""\
pack: default
version: broken
rules:
  - id: Not Valid
    window: soon
"""


def wait_for(
    check: Callable[[], bool], what: str, worker: WorkerProcess, timeout: float = 60
) -> None:
    """Poll until `check()`; a deadline for a condition, not a timing assertion."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert worker.proc is not None and worker.proc.poll() is None, worker.log_tail()
        try:
            if check():
                return
        except OSError:  # /metrics not answering this instant
            pass
        time.sleep(0.3)
    raise AssertionError(f"{what} did not happen; worker log:\n{worker.log_tail()}")


def version(worker: WorkerProcess, v: str) -> float:
    return worker.metric("tollguard_rules_version_info", version=v)


def test_push_applies_without_restart_and_invalid_packs_are_rejected(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = isolated_settings(kafka_bootstrap, tmp_path, partitions=2)
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        default_version = (REPO / "rules" / "default.yaml").read_text().split('version: "')[1]
        default_version = default_version.split('"')[0]
        wait_for(lambda: version(worker, default_version) == 1, "default pack in force", worker)

        # 1. `tollguard rules push` validates and publishes; the worker applies it live.
        pack_file = tmp_path / "pushed.yaml"
        pack_file.write_text(PUSHED)
        env = dict(os.environ, **settings_env(settings))
        env.pop("TOLLGUARD_CONFIG", None)
        pushed = subprocess.run(
            [sys.executable, "-m", "tollguard.cli.main", "rules", "push", str(pack_file)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert pushed.returncode == 0, pushed.stderr
        assert "pushed pack default version hot-2" in pushed.stdout
        wait_for(lambda: version(worker, "hot-2") == 1, "pushed pack applied", worker)
        assert version(worker, default_version) == 0

        # 2. The CLI refuses an invalid pack before touching Kafka ...
        bad_file = tmp_path / "bad.yaml"
        bad_file.write_bytes(BROKEN)
        refused = subprocess.run(
            [sys.executable, "-m", "tollguard.cli.main", "rules", "push", str(bad_file)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert refused.returncode == 1
        assert f"{bad_file}:4:" in refused.stderr
        # ... and a worker rejects one that reaches the topic anyway, keeping hot-2.
        produce(kafka_bootstrap, settings.topic_rules, [(b"default", BROKEN)])
        wait_for(lambda: worker.metric("tollguard_rules_rejected_total") >= 1, "rejection", worker)
        assert version(worker, "hot-2") == 1 and version(worker, "broken") == 0
        log = (tmp_path / "worker.log").read_text(errors="replace")
        assert "rejected rule pack 'default'" in log and "keeping the one in force" in log

        # 3. Signals come from the pushed pack and carry its version.
        start = int(time.time() * 1000) - 600_000
        events = [
            {
                "call_id": f"hot-{i}",
                "ts": start + i * 1000,
                "line_id": "pbx-hot-1",
                "callee": f"01023276{100000 + i}",
            }
            for i in range(4)
        ]
        produce(kafka_bootstrap, settings.topic_events, events_as_records(events))
        signals = read_until(
            kafka_bootstrap,
            settings.topic_control,
            lambda seen: any(s["action"] == "block" for s in seen),
            timeout=60,
        )
        blocks = [s for s in signals if s["action"] == "block"]
        assert blocks, worker.log_tail()
        assert (blocks[0]["rule_id"], blocks[0]["rules_version"]) == ("tiny", "hot-2")
    finally:
        worker.stop()

    # 4. A new worker starts on the newest valid pack on the topic, not its file.
    again = WorkerProcess(settings, tmp_path / "worker2.log").start()
    try:
        wait_for(lambda: version(again, "hot-2") == 1, "restart on pushed pack", again)
        assert again.metric("tollguard_rules_rejected_total") == 1  # the broken one, logged
    finally:
        again.stop()
