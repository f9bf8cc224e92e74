"""The embedded Tansu broker is what `tollguard demo` runs on; keep it working."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tollguard.brokers.admin import TopicSpec, admin_client, ensure_topics
from tollguard.brokers.embedded import EmbeddedBroker

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(tmp_path_factory.mktemp("tansu")) as broker:
        yield broker


def test_start_reports_loopback_bootstrap(embedded: EmbeddedBroker) -> None:
    assert embedded.is_running()
    assert embedded.bootstrap.startswith("127.0.0.1:")


def test_round_trip(embedded: EmbeddedBroker) -> None:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition  # type: ignore[import-untyped]

    ensure_topics(embedded.bootstrap, [TopicSpec("calls", 3)])
    ensure_topics(embedded.bootstrap, [TopicSpec("calls", 3)])  # idempotent here too
    with admin_client(embedded.bootstrap) as admin:
        (described,) = admin.describe_topics(["calls"])
    assert len(described["partitions"]) == 3

    producer = KafkaProducer(bootstrap_servers=embedded.bootstrap, acks="all")
    for i in range(200):
        producer.send("calls", key=f"caller-{i % 17}".encode(), value=f"cdr-{i}".encode())
    producer.flush(timeout=30)
    producer.close()

    consumer = KafkaConsumer(bootstrap_servers=embedded.bootstrap, auto_offset_reset="earliest")
    consumer.assign([TopicPartition("calls", p) for p in range(3)])
    values: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(values) < 200 and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            values.extend(r.value for r in records)
    consumer.close()

    assert sorted(values) == sorted(f"cdr-{i}".encode() for i in range(200))


def test_consumer_group_reads_everything(embedded: EmbeddedBroker) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    # The demo consumes through a group; Tansu holds the first join for about
    # half the session timeout, so keep that short.
    ensure_topics(embedded.bootstrap, [TopicSpec("alerts", 2)])
    producer = KafkaProducer(bootstrap_servers=embedded.bootstrap)
    for i in range(20):
        producer.send("alerts", value=f"a{i}".encode())
    producer.flush(timeout=30)
    producer.close()

    consumer = KafkaConsumer(
        "alerts",
        bootstrap_servers=embedded.bootstrap,
        group_id="tollguard-embedded-test",
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    values: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(values) < 20 and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            values.extend(r.value for r in records)
    consumer.close()

    assert sorted(values) == sorted(f"a{i}".encode() for i in range(20))


def test_stop_frees_the_port_and_restart_comes_back_empty(tmp_path: Path) -> None:
    broker = EmbeddedBroker(tmp_path)
    bootstrap = broker.start()
    try:
        ensure_topics(bootstrap, [TopicSpec("gone", 1)])
        assert broker.restart() == bootstrap
        with admin_client(bootstrap) as admin:
            assert "gone" not in admin.list_topics()  # memory-only, as documented
        broker.kill()
        assert not broker.is_running()
    finally:
        broker.stop()
