"""The throughput bench runs end to end (CI checks that it works, never how fast)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import throughput

pytestmark = pytest.mark.e2e


def test_throughput_bench_runs_and_reports_every_pipeline(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOLLGUARD_BENCH_BROKER", kafka_bootstrap)
    out = tmp_path / "bench.json"
    args = ["--events", "30000", "--lines", "3000", "--faust-events", "2000"]
    args += ["--latency-lines", "10", "--repeat", "2", "--json", str(out)]
    assert throughput.main(args) == 0
    results = json.loads(out.read_text())
    assert results["events"] == 30000
    assert len(results["pipelines"]) == 9
    assert sum("envelopes" in name for name in results["pipelines"]) == 4
    assert all(rate > 0 for rate in results["pipelines"].values())
    workers = {name for name in results["pipelines"] if name.startswith("tollguard worker")}
    assert set(results["adjacent_raw"]) == workers and len(workers) == 4
    assert all(a["raw"] > 0 and a["ratio"] > 0 for a in results["adjacent_raw"].values())
    assert all(0 <= a["gc_share_of_busy"] < 1 for a in results["adjacent_raw"].values())
    # One process is the goal's row: run --repeat times, each after its own raw run.
    runs = {name: len(a["runs"]) for name, a in results["adjacent_raw"].items()}
    assert runs == {name: 2 if name.endswith("1 process") else 1 for name in workers}
    for name, a in results["adjacent_raw"].items():
        rates = sorted(r["worker"] for r in a["runs"])
        assert rates[0] <= results["pipelines"][name] <= rates[-1]
    assert {path: r["samples"] for path, r in results["latency"].items()} == {
        "envelopes": 10,
        "single": 10,
    }
    floors = {path: r["floor"]["samples"] for path, r in results["latency"].items()}
    assert floors == {"envelopes": 10, "single": 10}
    # The worker's collector pauses, read from its own metrics, per generation.
    assert all(set(r["gc"]) == {"0", "1", "2"} for r in results["latency"].values())
    assert results["latency_warmup"]["samples"] == 10
