"""The topics tollguard reads and writes (SPEC section 1), created up front.

Creating them before Faust starts means partition counts and compaction are
tollguard's decision, not a broker default, and an unreachable broker is
reported before any worker machinery spins up.
"""

from __future__ import annotations

from tollguard.brokers.admin import TopicSpec, ensure_topics
from tollguard.config import Settings
from tollguard.kafka_security import kafka_python_config, preflight


def topic_specs(settings: Settings, partitions: int | None = None) -> list[TopicSpec]:
    n = partitions or settings.event_partitions
    return [
        TopicSpec(settings.topic_events, n),
        TopicSpec(settings.topic_control, n),
        TopicSpec(settings.topic_blocks, n, compacted=True),
        TopicSpec(settings.topic_rules, 1, compacted=True),
        TopicSpec(settings.topic_deadletter, n),
        # Same partition count as the events: partition p's lines live in state partition p.
        TopicSpec(settings.state_topic, n, compacted=True),
    ]


def event_partition_count(settings: Settings) -> int:
    from kafka import KafkaConsumer  # type: ignore[import-untyped]

    consumer = KafkaConsumer(**kafka_python_config(settings))
    try:
        return len(consumer.partitions_for_topic(settings.topic_events) or ())
    finally:
        consumer.close()


def ensure_tollguard_topics(settings: Settings, timeout: float = 30.0) -> None:
    """Create missing topics; the state changelog copies the events topic's partitioning.

    Logs in once first, so wrong credentials or TLS files stop here with a
    clear message instead of every client retrying.
    """
    preflight(settings, timeout=min(timeout, 15.0))
    security = kafka_python_config(settings)
    del security["bootstrap_servers"]
    try:
        ensure_topics(settings.bootstrap, topic_specs(settings)[:1], timeout, security)
        n = event_partition_count(settings)
        ensure_topics(settings.bootstrap, topic_specs(settings, n)[1:], timeout, security)
    except Exception as exc:
        raise SystemExit(
            f"tollguard: cannot prepare topics on Kafka at {settings.broker}: {exc}\n"
            "Check that the broker is running and set TOLLGUARD_BROKER=kafka://host:port "
            "(or run `tollguard demo` for an embedded broker)."
        ) from None
