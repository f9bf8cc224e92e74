"""Running `tollguard worker` as a real process and reading what it publishes.

Shared by the end-to-end tests and the benchmarks, so both drive the worker
exactly as an operator would: a separate process configured by environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition  # type: ignore[import-untyped]
from prometheus_client.parser import text_string_to_metric_families

from tollguard.app.topics import ensure_tollguard_topics
from tollguard.brokers._process import free_port, kill_group, stop_group, tail
from tollguard.config import Settings, load_settings


def isolated_settings(
    bootstrap: str, tmp_path: Path, partitions: int = 4, **extra: Any
) -> Settings:
    """Settings with topic names and a group of their own, so tests never share state."""
    tag = uuid.uuid4().hex[:8]
    return load_settings(
        env={},
        broker=f"kafka://{bootstrap}",
        app_id=f"tollguard-test-{tag}",
        topic_events=f"calls.events-{tag}",
        topic_control=f"tollguard.control-{tag}",
        topic_blocks=f"tollguard.blocks-{tag}",
        topic_rules=f"tollguard.rules-{tag}",
        topic_deadletter=f"tollguard.deadletter-{tag}",
        event_partitions=partitions,
        data_dir=str(tmp_path / f"worker-{tag}"),
        **extra,
    )


def settings_env(settings: Settings) -> dict[str, str]:
    """Every setting as its TOLLGUARD_* variable, so the child sees exactly `settings`."""
    return {f"TOLLGUARD_{f.name.upper()}": str(getattr(settings, f.name)) for f in fields(settings)}


def run_cli(settings: Settings, *argv: str) -> subprocess.CompletedProcess[str]:
    """`tollguard <argv>` as its own process under exactly `settings` (no config file)."""
    env = {**os.environ, **settings_env(settings)}
    env.pop("TOLLGUARD_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "tollguard.cli.main", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@dataclass
class WorkerProcess:
    settings: Settings
    log_path: Path
    web_port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        ensure_tollguard_topics(self.settings)
        self.web_port = self.web_port or free_port()
        env = {**os.environ, **settings_env(self.settings)}
        env["TOLLGUARD_WEB_PORT"] = str(self.web_port)
        env.pop("TOLLGUARD_CONFIG", None)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tollguard.cli.main", "worker"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"worker exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                self.metrics()
                return
            except OSError:
                time.sleep(0.3)
        raise AssertionError(f"worker did not serve /metrics in {timeout}s:\n{self.log_tail()}")

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        url = f"http://127.0.0.1:{self.web_port}/metrics"
        with urllib.request.urlopen(url, timeout=2) as resp:
            text = resp.read().decode()
        out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return out

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics().get((name, tuple(sorted(labels.items()))), 0.0)

    def log_tail(self, lines: int = 60) -> str:
        return tail(self.log_path, lines)

    def kill(self) -> None:
        """SIGKILL, no shutdown hooks: a crash, not a stop."""
        if self.proc is not None:
            kill_group(self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc)


def produce(
    bootstrap: str, topic: str, items: Iterable[tuple[bytes | None, bytes]], **config: Any
) -> int:
    """Produce and flush; `config` adds client settings (e.g. TLS/SASL)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, **config)
    n = 0
    try:
        for key, value in items:
            producer.send(topic, key=key, value=value)
            n += 1
        producer.flush(30)
    finally:
        producer.close()
    return n


def events_as_records(events: Iterable[dict[str, Any]]) -> Iterable[tuple[bytes, bytes]]:
    for event in events:
        yield str(event["line_id"]).encode(), orjson.dumps(event)


def read_until(
    bootstrap: str,
    topic: str,
    done: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 60,
) -> list[dict[str, Any]]:
    """Read a topic from the start, decoding JSON values, until `done(all so far)`."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=500,
    )
    try:
        partitions = None
        deadline = time.monotonic() + timeout
        while partitions is None and time.monotonic() < deadline:
            partitions = consumer.partitions_for_topic(topic)
        assert partitions, f"topic {topic} has no partitions"
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        seen: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            for msg in consumer:
                seen.append(orjson.loads(msg.value))
            if done(seen):
                return seen
        return seen
    finally:
        consumer.close()
