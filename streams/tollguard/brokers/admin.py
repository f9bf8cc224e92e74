"""Topic provisioning and broker addressing that work on any Kafka-compatible broker.

tollguard's topics are created explicitly (the Apache harness runs with
`auto.create.topics.enable=false`), so that a partition count is a decision,
not whatever the broker's default happened to be.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

#: Replication 1 is the only choice on the single-node harness brokers.
DEFAULT_REPLICATION = 1


@dataclass(frozen=True)
class TopicSpec:
    """What a topic must look like; `compacted` sets `cleanup.policy=compact`."""

    name: str
    partitions: int
    compacted: bool = False
    config: dict[str, str] = field(default_factory=dict)
    replication: int = DEFAULT_REPLICATION

    def topic_config(self) -> dict[str, str]:
        cfg = dict(self.config)
        if self.compacted:
            cfg.setdefault("cleanup.policy", "compact")
        return cfg


_SCHEMES = ("kafka", "tcp", "plaintext", "aiokafka")


def parse_broker_url(url: str) -> str:
    """Turn `kafka://h1:p1,h2:p2` (or plain `h1:p1,h2`) into a bootstrap list.

    Faust spells brokers as URLs while kafka clients want `host:port`; the CLI
    and the test fixture accept either so nobody has to remember which.
    Faust's `;`-separated, scheme-per-host form is accepted too. A missing
    port means 9092.
    """
    hosts: list[str] = []
    for raw in re.split(r"[,;]", url):
        part = raw.strip()
        if "://" in part:
            scheme, _, part = part.partition("://")
            if scheme.lower() not in _SCHEMES:
                raise ValueError(f"unsupported broker URL scheme {scheme!r} in {url!r}")
        part = part.strip().rstrip("/")
        if not part:
            continue
        split = urlsplit(f"//{part}")
        try:
            port = split.port
        except ValueError as exc:
            raise ValueError(f"bad port in broker URL {url!r}") from exc
        host = split.hostname
        if not host or split.path:
            raise ValueError(f"cannot read host:port from {part!r} in {url!r}")
        if ":" in host:
            host = f"[{host}]"
        hosts.append(f"{host}:{port or 9092}")
    if not hosts:
        raise ValueError(f"no brokers in {url!r}")
    return ",".join(hosts)


@contextlib.contextmanager
def admin_client(bootstrap: str, timeout: float = 10.0, **config: Any) -> Iterator[Any]:
    """A kafka-python admin client that is always closed, even if bootstrap fails.

    kafka-python starts its IO thread before bootstrapping and does not stop it
    when bootstrap raises; the readiness probe retries many times, so a plain
    constructor call would leak one thread per attempt.
    """
    from kafka import KafkaAdminClient  # type: ignore[import-untyped]

    timeout_ms = max(1, int(timeout * 1000))
    config.setdefault("client_id", "tollguard-admin")
    config.setdefault("request_timeout_ms", timeout_ms)
    config.setdefault("bootstrap_timeout_ms", timeout_ms)
    admin = KafkaAdminClient.__new__(KafkaAdminClient)
    try:
        admin.__init__(bootstrap_servers=parse_broker_url(bootstrap).split(","), **config)
    except BaseException:
        net = admin.__dict__.get("_net")
        if net is not None:
            with contextlib.suppress(Exception):
                net.stop(timeout_ms=2000)
        raise
    try:
        yield admin
    finally:
        with contextlib.suppress(Exception):
            admin.close()


def broker_ready(bootstrap: str, timeout: float = 2.0) -> bool:
    """True once a metadata request lists at least one broker.

    An open port is not enough: a KRaft broker accepts connections before it is
    unfenced, and a just-started Tansu listens before it can serve.
    """
    from kafka.errors import KafkaError  # type: ignore[import-untyped]

    try:
        with admin_client(bootstrap, timeout, client_id="tollguard-probe") as admin:
            cluster = admin.describe_cluster()
            return bool(cluster.get("brokers"))
    except (KafkaError, OSError, ValueError, RuntimeError):
        return False


def ensure_topics(
    bootstrap: str,
    specs: Sequence[TopicSpec],
    timeout: float = 30,
    client_config: dict[str, Any] | None = None,
) -> None:
    """Create whatever of `specs` is missing and wait until every partition has a leader.

    Idempotent: existing topics are left as they are (their partition count is
    not changed, since shrinking is impossible and growing reshuffles keys).
    Waiting for leaders matters because CreateTopics returns before the new
    partitions are in the metadata cache, and a producer racing that gets
    UnknownTopicOrPartition. `client_config` carries TLS/SASL settings
    (tollguard.kafka_security.kafka_python_config, without bootstrap_servers).
    """
    if not specs:
        return
    from kafka.errors import KafkaTimeoutError, TopicAlreadyExistsError

    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate topic names in {names}")
    for spec in specs:
        if spec.partitions < 1:
            raise ValueError(f"topic {spec.name!r} needs at least one partition")

    deadline = time.monotonic() + timeout
    with admin_client(bootstrap, timeout, **(client_config or {})) as admin:
        existing = set(admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        if missing:
            request = {
                s.name: {
                    "num_partitions": s.partitions,
                    "replication_factor": s.replication,
                    "configs": s.topic_config(),
                }
                for s in missing
            }
            # raise_errors=False: a concurrent creator winning the race is fine,
            # any other per-topic error is raised below with its topic name.
            result = admin.create_topics(
                request, timeout_ms=int(timeout * 1000), raise_errors=False
            )
            _raise_topic_errors(result, ok=(0, TopicAlreadyExistsError.errno))
        remaining_ms = max(1000, int((deadline - time.monotonic()) * 1000))
        try:
            admin.wait_for_topics(names, timeout_ms=remaining_ms)
        except KafkaTimeoutError as exc:
            raise TimeoutError(f"topics not ready on {bootstrap} after {timeout}s: {exc}") from exc


def _raise_topic_errors(result: dict[str, Any], ok: tuple[int, ...]) -> None:
    from kafka.errors import for_code

    failures = []
    for topic in result.get("topics", []):
        code = topic.get("error_code", 0)
        if code not in ok:
            message = topic.get("error_message") or for_code(code).__name__
            failures.append(f"{topic.get('name')}: {message}")
    if failures:
        raise RuntimeError("CreateTopics failed: " + "; ".join(failures))
