"""Shared fixtures: the Kafka broker the integration and e2e tests run against.

The broker is started lazily, once per session, by the first test that asks
for it, so a unit-only run never starts a JVM. Which broker it was is always
printed, because a green run against the embedded fallback proves much less
than one against Apache Kafka.

`TOLLGUARD_TEST_BROKER` picks the broker:
  unset          Apache Kafka (KRaft) from cached Maven jars; the embedded
                 Tansu broker, with a loud warning, if java or mvn is missing
  host:port      an external broker (also `kafka://host:port,...`)
  apache         Apache Kafka, failing instead of falling back
  embedded       the embedded Tansu broker
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from tollguard.brokers._process import ManagedProcess, wait_until
from tollguard.brokers.admin import TopicSpec, broker_ready, ensure_topics, parse_broker_url
from tollguard.brokers.apache import DEFAULT_KAFKA_VERSION, ApacheKafkaBroker, tools_available
from tollguard.brokers.embedded import EmbeddedBroker

ENV = "TOLLGUARD_TEST_BROKER"


@dataclass
class BrokerHandle:
    """What tests see: a bootstrap string, the broker's kind, and (if we own it) control.

    `restart()`, `kill()` and `start()` exist only for brokers this session
    started; fault tests should `pytest.skip` unless `kind == "apache"`.
    """

    bootstrap: str
    kind: str  # "apache" | "embedded" | "external"
    description: str
    process: ManagedProcess | None = None
    startup_seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def _owned(self) -> ManagedProcess:
        if self.process is None:
            pytest.skip(f"the {self.kind} broker at {self.bootstrap} is not controlled by tests")
        return self.process

    def restart(self, timeout: float = 60.0) -> str:
        """Stop and start again on the same port; Apache keeps its data, embedded does not."""
        return self._owned().restart(timeout)

    def kill(self) -> None:
        """SIGKILL the broker; call `start()` to bring it back on the same port and data."""
        self._owned().kill()

    def start(self, timeout: float = 60.0) -> str:
        return self._owned().start(timeout)

    def is_running(self) -> bool:
        return self.process.is_running() if self.process is not None else True


_HANDLE_KEY = pytest.StashKey[BrokerHandle]()
_FALLBACK_BANNER = """\
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
WARNING: tollguard integration tests ran against the EMBEDDED Tansu broker,
NOT Apache Kafka: {reason}
Tansu differs from Kafka (group join delay, ListOffsets, transactions,
compaction); a pass here does not prove Kafka behaviour. Install java (17+)
and maven, or set {env}=host:port to use a real Kafka.
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"""


def _planned_broker() -> str:
    choice = os.environ.get(ENV, "").strip()
    if choice == "embedded":
        return "embedded Tansu broker (requested)"
    if choice and choice != "apache":
        return f"external broker at {parse_broker_url(choice)} ({ENV})"
    missing = tools_available()
    if missing is None:
        return f"Apache Kafka {DEFAULT_KAFKA_VERSION} (KRaft), started on first use"
    if choice == "apache":
        return f"Apache Kafka requested but unavailable: {missing}"
    return f"EMBEDDED Tansu fallback (not Kafka!): {missing}"


def pytest_report_header(config: pytest.Config) -> str:
    return f"tollguard integration broker: {_planned_broker()}"


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    handle = config.stash.get(_HANDLE_KEY, None)
    if handle is None:
        return  # no test asked for a broker
    if handle.kind == "embedded" and handle.warnings:
        terminalreporter.write_line(
            _FALLBACK_BANNER.format(reason=handle.warnings[0], env=ENV), yellow=True, bold=True
        )
    else:
        terminalreporter.write_line(
            f"tollguard integration broker: {handle.description} "
            f"(ready in {handle.startup_seconds:.1f}s)",
            bold=True,
        )


def _start_owned(
    broker: ManagedProcess, describe: Callable[[], str], warning: str | None = None
) -> BrokerHandle:
    started = time.monotonic()
    broker.start(timeout=120)
    return BrokerHandle(
        bootstrap=broker.bootstrap,
        kind=broker.kind,
        description=describe(),
        process=broker,
        startup_seconds=time.monotonic() - started,
        warnings=[warning] if warning else [],
    )


@pytest.fixture(scope="session")
def kafka_broker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrokerHandle]:
    """The session's broker; see the module docstring for how it is chosen."""
    choice = os.environ.get(ENV, "").strip()
    handle: BrokerHandle
    if choice and choice not in ("apache", "embedded"):
        bootstrap = parse_broker_url(choice)
        started = time.monotonic()
        # Fail once, clearly, rather than every test timing out on its own.
        if not wait_until(lambda: broker_ready(bootstrap), 30):
            pytest.fail(f"{ENV}={choice}: no Kafka answered metadata at {bootstrap} in 30s")
        handle = BrokerHandle(
            bootstrap,
            "external",
            f"external broker at {bootstrap} ({ENV})",
            startup_seconds=time.monotonic() - started,
        )
    else:
        workdir = tmp_path_factory.mktemp("broker")
        missing = None if choice == "embedded" else tools_available()
        if choice == "embedded" or missing is not None:
            if choice == "apache":
                pytest.fail(f"{ENV}=apache but {missing}")
            embedded = EmbeddedBroker(workdir)
            warning = f"requested by {ENV}=embedded" if choice == "embedded" else str(missing)
            handle = _start_owned(embedded, embedded.describe, warning=warning)
        else:
            apache = ApacheKafkaBroker(workdir)
            handle = _start_owned(apache, apache.describe)
    request.config.stash[_HANDLE_KEY] = handle
    try:
        yield handle
    finally:
        if handle.process is not None:
            handle.process.stop()
            if handle.kind == "apache" and not os.environ.get("TOLLGUARD_KEEP_BROKER_DIR"):
                # Kafka preallocates segment indexes; do not pile them up in /tmp across runs.
                shutil.rmtree(handle.process.workdir / "data", ignore_errors=True)


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: BrokerHandle) -> str:
    return kafka_broker.bootstrap


TopicFactory = Callable[..., str]


@pytest.fixture
def topic_factory(kafka_bootstrap: str, request: pytest.FixtureRequest) -> TopicFactory:
    """Create topics named after the test plus a random suffix, so tests never share one.

    Call as `topic_factory(partitions=3, compacted=False, config=None, prefix=None)`;
    it returns the topic name once every partition has a leader.
    """
    stem = re.sub(r"[^a-zA-Z0-9._-]+", "-", request.node.name)[:80].strip("-")

    def make(
        partitions: int = 1,
        *,
        compacted: bool = False,
        config: dict[str, str] | None = None,
        prefix: str | None = None,
    ) -> str:
        name = f"{prefix or stem}-{uuid.uuid4().hex[:8]}"
        ensure_topics(
            kafka_bootstrap,
            [TopicSpec(name, partitions, compacted=compacted, config=dict(config or {}))],
        )
        return name

    return make
