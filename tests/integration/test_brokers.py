"""The broker harness itself: if these fail, every other integration test is suspect."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import pytest

from tollguard.brokers.admin import TopicSpec, admin_client, ensure_topics, parse_broker_url


class BrokerHandle(Protocol):
    """The slice of conftest's handle these tests use."""

    bootstrap: str
    kind: str

    def restart(self, timeout: float = ...) -> str: ...
    def kill(self) -> None: ...
    def start(self, timeout: float = ...) -> str: ...
    def is_running(self) -> bool: ...


pytestmark = pytest.mark.integration


# kafka-python is imported inside helpers: ruff's isort mistakes it for first-party
# because of the scripts/kafka/ directory.


def _produce(bootstrap: str, topic: str, n: int, *, prefix: str = "v") -> None:
    from kafka import KafkaProducer  # type: ignore[import-untyped]

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        for i in range(n):
            producer.send(topic, key=f"k{i}".encode(), value=f"{prefix}{i}".encode())
        producer.flush(timeout=30)
    finally:
        producer.close()


def _consume_all(bootstrap: str, topic: str, partitions: int, expected: int) -> list[bytes]:
    """Read every partition from the start until `expected` records or 30 s."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        values: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(values) < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                values.extend(r.value for r in records)
        return values
    finally:
        consumer.close()


def test_round_trip_three_partitions(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(partitions=3)
    n = 500
    _produce(kafka_bootstrap, topic, n)

    values = _consume_all(kafka_bootstrap, topic, 3, n)

    assert len(values) == n
    assert sorted(values) == sorted(f"v{i}".encode() for i in range(n))


def test_keys_spread_over_all_partitions(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    from kafka import KafkaConsumer, TopicPartition

    topic = topic_factory(partitions=3)
    _produce(kafka_bootstrap, topic, 60)
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in range(3)]
        ends = consumer.end_offsets(tps)
    finally:
        consumer.close()
    # 60 distinct keys hashed over 3 partitions: none stays empty.
    assert all(ends[tp] > 0 for tp in tps), ends


def test_restart_keeps_data(kafka_broker: BrokerHandle, topic_factory: Callable[..., str]) -> None:
    if kafka_broker.kind != "apache":
        pytest.skip(f"restart keeps data only on Apache Kafka, not on {kafka_broker.kind}")
    topic = topic_factory(partitions=3)
    _produce(kafka_broker.bootstrap, topic, 100, prefix="before-")
    bootstrap = kafka_broker.bootstrap

    assert kafka_broker.restart() == bootstrap  # same port: clients can reconnect
    _produce(kafka_broker.bootstrap, topic, 50, prefix="after-")
    values = _consume_all(kafka_broker.bootstrap, topic, 3, 150)

    assert len(values) == 150
    assert sum(v.startswith(b"before-") for v in values) == 100


def test_kill_then_start_recovers_acked_data(
    kafka_broker: BrokerHandle, topic_factory: Callable[..., str]
) -> None:
    if kafka_broker.kind != "apache":
        pytest.skip(f"kill/start is only exercised on Apache Kafka, not on {kafka_broker.kind}")
    topic = topic_factory(partitions=1)
    _produce(kafka_broker.bootstrap, topic, 20)

    kafka_broker.kill()
    assert not kafka_broker.is_running()
    kafka_broker.start()

    assert len(_consume_all(kafka_broker.bootstrap, topic, 1, 20)) == 20


def test_ensure_topics_is_idempotent(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    name = topic_factory(partitions=2)
    compacted = f"{name}-table"
    specs = [TopicSpec(name, 2), TopicSpec(compacted, 4, compacted=True)]

    ensure_topics(kafka_bootstrap, specs)
    ensure_topics(kafka_bootstrap, specs)  # second call: no error, nothing changes

    with admin_client(kafka_bootstrap) as admin:
        described = {t["name"]: t for t in admin.describe_topics([name, compacted])}
    assert len(described[name]["partitions"]) == 2
    assert len(described[compacted]["partitions"]) == 4
    assert all(p["leader_id"] >= 0 for t in described.values() for p in t["partitions"])


def test_ensure_topics_sets_compaction(
    kafka_broker: BrokerHandle, topic_factory: Callable[..., str]
) -> None:
    from kafka.admin import ConfigResource, ConfigResourceType  # type: ignore[import-untyped]

    name = topic_factory(partitions=1, compacted=True, config={"segment.ms": "60000"})
    with admin_client(kafka_broker.bootstrap) as admin:
        # "all": Tansu labels explicit topic configs DEFAULT_CONFIG, so the
        # default "modified" filter would hide them there.
        result = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name)], config_filter="all"
        )
    configs = result["topic"][name]
    assert configs["cleanup.policy"]["value"] == "compact"
    assert configs["segment.ms"]["value"] == "60000"


def test_ensure_topics_rejects_bad_specs(kafka_bootstrap: str) -> None:
    with pytest.raises(ValueError):
        ensure_topics(kafka_bootstrap, [TopicSpec("x", 0)])
    with pytest.raises(ValueError):
        ensure_topics(kafka_bootstrap, [TopicSpec("x", 1), TopicSpec("x", 1)])


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("kafka://localhost:9092", "localhost:9092"),
        ("kafka://h1:1,h2:2", "h1:1,h2:2"),
        ("h1:1,h2:2", "h1:1,h2:2"),
        ("kafka://a:1;kafka://b:2", "a:1,b:2"),
        ("tcp://127.0.0.1:9093/", "127.0.0.1:9093"),
        ("broker", "broker:9092"),
        (" 127.0.0.1:1234 ", "127.0.0.1:1234"),
    ],
)
def test_parse_broker_url(url: str, expected: str) -> None:
    assert parse_broker_url(url) == expected


@pytest.mark.parametrize("url", ["", "kafka://", "http://h:1", "h:notaport"])
def test_parse_broker_url_rejects(url: str) -> None:
    with pytest.raises(ValueError):
        parse_broker_url(url)
