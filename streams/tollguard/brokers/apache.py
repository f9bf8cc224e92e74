"""A real Apache Kafka broker (KRaft, single node) on loopback, from Maven Central jars.

Integration tests, benchmarks and fault drills need the broker tollguard will
meet in production, not a look-alike: the embedded Tansu broker differs in
group joins, offsets and transactions. There is no Kafka tarball on the
registries this project may use, so the broker's jars are resolved with Maven
(`scripts/kafka/pom.xml`) once and cached.

    python -m tollguard.brokers.apache fetch          # prefetch jars (CI)
    python -m tollguard.brokers.apache run --port N   # foreground broker
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

from tollguard.brokers._process import (
    BrokerStartError,
    ManagedProcess,
    free_port,
    port_is_free,
    tail,
    wait_until,
)

DEFAULT_KAFKA_VERSION = "4.1.1"
DEFAULT_HEAP = "512m"

_REPO_ROOT = Path(__file__).resolve().parents[3]
_MARKER = ".tollguard-complete"
#: Broker and controller share one JVM; node id 1 is arbitrary but fixed.
_NODE_ID = 1


class MissingToolError(RuntimeError):
    """java or mvn is absent; the message says what to install."""


def _say(message: str) -> None:
    print(f"tollguard: {message}", file=sys.stderr, flush=True)


def default_cache_dir(version: str = DEFAULT_KAFKA_VERSION) -> Path:
    """Where the jars of `version` live: `$TOLLGUARD_CACHE_DIR/kafka-V/libs` or the repo's `.cache`.

    The repo-local default (git-ignored) keeps the ~45 MB of jars next to the
    checkout, shared by every test run, benchmark and demo from it.
    """
    root = os.environ.get("TOLLGUARD_CACHE_DIR")
    base = Path(root).expanduser() if root else _REPO_ROOT / ".cache"
    return base / f"kafka-{version}" / "libs"


def pom_path() -> Path:
    """`scripts/kafka/pom.xml` of this checkout, or `$TOLLGUARD_KAFKA_POM`."""
    override = os.environ.get("TOLLGUARD_KAFKA_POM")
    return Path(override) if override else _REPO_ROOT / "scripts" / "kafka" / "pom.xml"


def find_java(java_home: str | None = None) -> str:
    """The java executable: `java_home`, then `$JAVA_HOME`, then PATH."""
    for home in (java_home, os.environ.get("JAVA_HOME")):
        if home:
            candidate = Path(home) / "bin" / "java"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
            if home == java_home:
                raise MissingToolError(f"no executable bin/java under java_home={java_home!r}")
    found = shutil.which("java")
    if found is None:
        raise MissingToolError(
            "java not found: Apache Kafka 4.x needs Java 17 or newer "
            "(Debian/Ubuntu: apt-get install openjdk-17-jre-headless)"
        )
    return found


def find_mvn() -> str:
    found = shutil.which("mvn")
    if found is None:
        raise MissingToolError(
            "mvn not found: it fetches the Kafka broker jars from Maven Central "
            "(Debian/Ubuntu: apt-get install maven)"
        )
    return found


def tools_available(java_home: str | None = None) -> str | None:
    """None when the Apache harness can run here, else why not (for fallbacks)."""
    try:
        find_java(java_home)
        find_mvn()
    except MissingToolError as exc:
        return str(exc)
    return None


def _marker_text(version: str, pom: Path) -> str:
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:16]
    return f"kafka={version} pom={digest}\n"


def _jars_complete(libs: Path, expected_marker: str | None) -> bool:
    marker = libs / _MARKER
    if not marker.is_file() or not any(libs.glob("kafka_2.13-*.jar")):
        return False
    # An unreadable pom (installed package) still trusts an existing cache.
    return expected_marker is None or marker.read_text() == expected_marker


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise fetches: parallel test runs must not both fill one cache dir."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_kafka_jars(version: str = DEFAULT_KAFKA_VERSION, cache_dir: Path | None = None) -> Path:
    """Make sure the broker's classpath is on disk and return its directory.

    Fast and silent when a complete copy exists (a marker file, keyed by the
    pom's hash, is written last). Otherwise runs Maven in batch mode into a
    temporary sibling and renames it into place, so an interrupted fetch never
    leaves a half-filled classpath. Maven's own `~/.m2` repository is used as
    usual, so a second cache dir for the same version costs no download.
    """
    libs = Path(cache_dir) if cache_dir is not None else default_cache_dir(version)
    pom = pom_path()
    expected = _marker_text(version, pom) if pom.is_file() else None
    if _jars_complete(libs, expected):
        return libs
    if expected is None:
        raise FileNotFoundError(
            f"{pom} not found: fetching Kafka jars needs a tollguard checkout "
            "(or TOLLGUARD_KAFKA_POM pointing at its scripts/kafka/pom.xml)"
        )
    mvn = find_mvn()

    with _locked(libs.parent / f".{libs.name}.lock"):
        if _jars_complete(libs, expected):
            return libs  # another process fetched while we waited
        _say(
            f"fetching Apache Kafka {version} jars from Maven Central (first run only) "
            f"into {libs} ..."
        )
        started = time.monotonic()
        staging = Path(tempfile.mkdtemp(prefix=f".{libs.name}.", dir=libs.parent))
        try:
            _run_maven(mvn, pom, version, staging)
            jars = sorted(p.name for p in staging.glob("*.jar"))
            if not any(j.startswith("kafka_2.13-") for j in jars):
                raise RuntimeError(f"Maven finished but put no kafka_2.13 jar in {staging}")
            (staging / _MARKER).write_text(expected)
            if libs.exists():
                shutil.rmtree(libs)
            staging.rename(libs)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        _say(f"Apache Kafka {version}: {len(jars)} jars ready ({time.monotonic() - started:.1f}s)")
    return libs


def _run_maven(mvn: str, pom: Path, version: str, out_dir: Path) -> None:
    argv = [
        mvn,
        "-B",
        "-Dstyle.color=never",
        "-f",
        str(pom),
        f"-Dkafka.version={version}",
        f"-DoutputDirectory={out_dir}",
        "dependency:copy-dependencies",
    ]
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    assert proc.stdout is not None
    recent: list[str] = []
    downloads = 0
    last_report = time.monotonic()
    for line in proc.stdout:
        line = line.rstrip()
        recent = [*recent[-59:], line]
        if "Downloaded from" in line:
            downloads += 1
        # A heartbeat rather than Maven's hundreds of lines.
        if downloads and time.monotonic() - last_report >= 5:
            _say(f"  ... {downloads} files downloaded so far")
            last_report = time.monotonic()
    code = proc.wait()
    if code != 0:
        raise RuntimeError(
            f"Maven could not resolve Apache Kafka {version} (exit {code}); "
            "last output:\n" + "\n".join(recent)
        )


def _cds_archive_path(libs: Path, java: str) -> Path | None:
    """Where the class-data archive for this jar set and this JVM lives (None: disabled)."""
    if os.environ.get("TOLLGUARD_KAFKA_CDS", "1") == "0":
        return None
    # An archive is only valid for the JVM that wrote it.
    key = hashlib.sha256(os.path.realpath(java).encode()).hexdigest()[:12]
    return libs.parent / f"broker-classes-{key}.jsa"


def _cluster_id() -> str:
    """A Kafka-style cluster id (22-char URL-safe base64 of a UUID), without a JVM.

    One starting with "-" would be read as an option by StorageTool's parser,
    so draw again (Kafka's own Uuid.randomUuid does the same).
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


_LOG4J2 = """\
# Written by tollguard.brokers.apache: the broker logs to a rolling file, not stdout.
status = error
name = tollguard-broker
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = {log}
appender.file.filePattern = {log}.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 2
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
# Per-request and state-change chatter drowns the lines that explain failures.
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


class ApacheKafkaBroker(ManagedProcess):
    """One KRaft node (broker + controller in one JVM) bound to 127.0.0.1.

    Ports and the log dir are chosen once and kept, so `restart()` brings the
    same broker back at the same bootstrap with its data: clients reconnect
    as they would after a real broker bounce.

    Topics are not auto-created (`auto_create_topics=False` by default): a
    producer writing to a topic nobody provisioned should fail in tests the
    way it would in a locked-down cluster.
    """

    kind = "apache"

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        version: str = DEFAULT_KAFKA_VERSION,
        java_home: str | None = None,
        *,
        controller_port: int | None = None,
        heap: str = DEFAULT_HEAP,
        auto_create_topics: bool = False,
        extra_config: Mapping[str, str] | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        super().__init__(workdir, port)
        self.version = version
        self.java_home = java_home
        self.controller_port = controller_port
        self.heap = heap
        self.auto_create_topics = auto_create_topics
        self.extra_config = dict(extra_config or {})
        self.cache_dir = cache_dir
        self._cds_archive: Path | None = None

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def config_path(self) -> Path:
        return self.workdir / "server.properties"

    def describe(self) -> str:
        return f"Apache Kafka {self.version} (KRaft) at {self.bootstrap}"

    def _launch(self, timeout: float) -> None:
        libs = ensure_kafka_jars(self.version, self.cache_dir)
        java = find_java(self.java_home)
        if self.controller_port is None:
            self.controller_port = free_port(self.host)
        assert self.port is not None
        # After a stop the old JVM's listeners may take a moment to let go.
        ports = (self.port, self.controller_port)
        if not wait_until(lambda: all(port_is_free(self.host, p) for p in ports), 15):
            raise BrokerStartError(f"ports {ports} are still held by another process")
        self._write_configs()
        classpath = str(libs / "*")
        self._cds_archive = _cds_archive_path(libs, java)
        if not (self.data_dir / "meta.properties").exists():
            self._format(java, classpath)
        self._spawn(
            [
                *self._java_argv(java, classpath),
                *self._cds_flags(dump=True),
                "kafka.Kafka",
                str(self.config_path),
            ]
        )
        self._wait_ready(timeout)

    def _cds_flags(self, dump: bool) -> list[str]:
        """Class-data sharing: cut broker start by roughly a third on a busy 2-core box.

        The first broker that stops gracefully dumps the classes it loaded
        (into its workdir, then renamed into the jar cache, so a torn write is
        never used); later starts map that archive. A stale or foreign archive
        is only a warning to the JVM, which then starts without it.
        """
        archive = self._cds_archive
        if archive is None:
            return []
        if archive.is_file():
            return [f"-XX:SharedArchiveFile={archive}"]
        return [f"-XX:ArchiveClassesAtExit={self.workdir / 'classes.jsa'}"] if dump else []

    def stop(self, timeout: float = 30.0) -> None:
        super().stop(timeout)
        dumped = self.workdir / "classes.jsa"
        if not dumped.is_file():
            return
        archive = self._cds_archive
        # A JVM killed mid-dump leaves a torn archive: only a clean exit counts.
        clean = self.last_exit_code is not None and self.last_exit_code >= 0
        if archive is not None and clean and not archive.exists():
            os.replace(dumped, archive)
        else:
            dumped.unlink()

    def _java_argv(self, java: str, classpath: str) -> list[str]:
        return [
            java,
            f"-Xmx{self.heap}",
            "-Xms128m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.workdir}",
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
            "-cp",
            classpath,
        ]

    def _write_configs(self) -> None:
        listeners = (
            f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}"
        )
        props: dict[str, str] = {
            "process.roles": "broker,controller",
            "node.id": str(_NODE_ID),
            "controller.quorum.bootstrap.servers": f"{self.host}:{self.controller_port}",
            "listeners": listeners,
            "advertised.listeners": listeners,
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "auto.create.topics.enable": str(self.auto_create_topics).lower(),
            # Single node: every internal topic must fit on one replica.
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # Fewer internal partitions: 50 each makes the first group join slow on 2 cores.
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.num.partitions": "4",
            # Tests join groups constantly; do not hold the first join for 3 s.
            "group.initial.rebalance.delay.ms": "0",
            # After a SIGKILL the new JVM cannot register until the old
            # registration's session expires (9 s by default).
            "broker.session.timeout.ms": "4000",
            "broker.heartbeat.interval.ms": "1000",
        }
        props.update(self.extra_config)
        body = "".join(f"{k}={v}\n" for k, v in props.items())
        self.config_path.write_text("# Written by tollguard.brokers.apache\n" + body)
        (self.workdir / "log4j2.properties").write_text(_LOG4J2.format(log=self.log_path))

    def _format(self, java: str, classpath: str) -> None:
        argv = [
            *self._java_argv(java, classpath),
            *self._cds_flags(dump=False),
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            _cluster_id(),
            "--config",
            str(self.config_path),
            "--standalone",
            "--ignore-formatted",
        ]
        result = subprocess.run(
            argv,
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=120,
            check=False,
        )
        (self.workdir / "format.out").write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            raise BrokerStartError(
                f"kafka.tools.StorageTool format failed (exit {result.returncode}):\n"
                + tail(self.workdir / "format.out", 40)
            )

    def restart(self, timeout: float = 60.0) -> str:
        """Graceful stop, then start on the same ports and log dir (data kept)."""
        self.stop()
        return self.start(timeout)


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tollguard.brokers.apache",
        description="Fetch the Apache Kafka jars, or run a single-node KRaft broker on loopback.",
    )
    parser.add_argument("--version", default=DEFAULT_KAFKA_VERSION, help="Kafka release")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch", help="download the broker jars into the cache (for CI)")
    run = sub.add_parser("run", help="run a broker in the foreground until Ctrl-C")
    run.add_argument("--port", type=int, default=None, help="client port (default: a free one)")
    run.add_argument("--workdir", type=Path, default=None, help="data dir (default: a temp dir)")
    run.add_argument("--heap", default=DEFAULT_HEAP)
    run.add_argument(
        "--auto-create-topics", action="store_true", help="let producers create topics"
    )
    args = parser.parse_args(argv)

    try:
        if args.command == "fetch":
            libs = ensure_kafka_jars(args.version)
            print(libs)
            return 0
        return _run_foreground(args)
    except MissingToolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _run_foreground(args: argparse.Namespace) -> int:
    keep = args.workdir is not None
    workdir = Path(args.workdir) if keep else Path(tempfile.mkdtemp(prefix="tollguard-kafka-"))
    broker = ApacheKafkaBroker(
        workdir,
        port=args.port,
        version=args.version,
        heap=args.heap,
        auto_create_topics=args.auto_create_topics,
    )
    # SIGTERM should shut the broker down as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()
    try:
        broker.start()
        print(broker.bootstrap, flush=True)
        _say(
            f"{broker.describe()} ready in {time.monotonic() - started:.1f}s; "
            f"log {broker.log_path}; Ctrl-C to stop"
        )
        while broker.is_running():
            time.sleep(0.5)
        _say("broker exited unexpectedly:\n" + tail(broker.log_path, 30))
        return 1
    except KeyboardInterrupt:
        _say("stopping broker ...")
        return 0
    finally:
        broker.stop()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(_main())
