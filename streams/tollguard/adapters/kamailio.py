"""`tollguard enforce kamailio`: control signals to a Kamailio `htable`.

The enforcer keeps the *desired* block list (line -> scope, expiry) and makes
Kamailio's htable match it through JSON-RPC (`jsonrpcs` over HTTP):

* at start it rebuilds the list from the compacted `tollguard.blocks` topic,
  makes the htable match (deleting entries no longer wanted), then follows
  `tollguard.control` from where that snapshot was taken;
* a block becomes `htable.setxs <table> <line> <scope> <seconds left>` (the
  entry expires in Kamailio by itself, even if the enforcer is gone), an
  unblock becomes `htable.delete`;
* shadow-mode signals and alerts are counted, never applied; a `signal_id`
  seen before is ignored;
* while Kamailio is unreachable the changed lines stay pending and are retried
  with exponential backoff; when it answers again the whole table is re-synced
  (a restarted Kamailio has an empty htable), and so it is every
  `enforce_resync_s` seconds.

The htable value is the block's scope: `all`, `international`, or
`destinations:+232,+220`; see deploy/kamailio/kamailio.cfg for how a proxy
reads it. There is no detection logic here.
"""

from __future__ import annotations

import logging
import math
import signal
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from tollguard.app.metrics import LATENCY_BUCKETS, BulkHistogram
from tollguard.config import Settings

log = logging.getLogger("tollguard.enforce.kamailio")

LAG_BUCKETS = (*LATENCY_BUCKETS, 30.0, 60.0, 300.0)


class KamailioDown(ConnectionError):
    """The RPC endpoint did not answer (connection refused, timeout, HTTP error)."""


class RpcError(RuntimeError):
    """Kamailio answered with a JSON-RPC error."""

    def __init__(self, method: str, error: Any) -> None:
        super().__init__(f"{method}: {error}")
        self.error = error


class KamailioRpc:
    """A minimal JSON-RPC 2.0 client for Kamailio's `jsonrpcs` over HTTP.

    Numeric parameters must be sent as JSON numbers: Kamailio reads a JSON
    string where it expects an integer as 0.
    """

    def __init__(self, url: str, timeout: float = 2.0) -> None:
        self.url = url
        self.timeout = timeout
        self._id = 0

    def call(self, method: str, *params: str | int) -> Any:
        self._id += 1
        body = orjson.dumps(
            {"jsonrpc": "2.0", "method": method, "params": list(params), "id": self._id}
        )
        req = urllib.request.Request(
            self.url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            # jsonrpcs answers RPC errors with an HTTP error status and a JSON body.
            raw = exc.read() if exc.fp is not None else b""
            if not raw:
                raise KamailioDown(f"{method}: HTTP {exc.code}") from None
        except (OSError, TimeoutError) as exc:
            raise KamailioDown(f"{method}: {exc}") from None
        try:
            answer = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise KamailioDown(f"{method}: not JSON: {raw[:80]!r}") from None
        if isinstance(answer, dict) and answer.get("error") is not None:
            raise RpcError(method, answer["error"])
        return answer.get("result") if isinstance(answer, dict) else None


def parse_time_ms(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        try:
            return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
        except ValueError:
            return None
    return None


def scope_value(scope: Any) -> str:
    """The htable value for a block scope; unknown scopes block everything."""
    if isinstance(scope, dict):
        kind = scope.get("kind")
        if kind == "international":
            return "international"
        if kind == "destinations":
            prefixes = [str(p) for p in scope.get("prefixes") or [] if str(p)]
            if prefixes:
                return "destinations:" + ",".join(prefixes)
            return "international"
    return "all"


@dataclass(frozen=True, slots=True)
class Wanted:
    signal_id: str
    rule_id: str | None
    value: str
    expires_at: int | None  # epoch ms, None for indefinite
    issued_at: int | None


@dataclass
class BlockList:
    """The desired htable contents, from signals; pure (time is passed in)."""

    max_seen: int = 100_000
    wanted: dict[str, Wanted] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)
    # line -> issued_at of the accepted signal not yet applied (for the lag metric)
    fresh: dict[str, int] = field(default_factory=dict)
    _seen: OrderedDict[str, None] = field(default_factory=OrderedDict)

    def offer(self, sig: Any, now_ms: int) -> str:
        """Take one control signal; returns what became of it (a metric label)."""
        if not isinstance(sig, dict):
            return "invalid"
        sid, action, line = sig.get("signal_id"), sig.get("action"), sig.get("line_id")
        if not (isinstance(sid, str) and isinstance(line, str) and sid and line):
            return "invalid"
        if sid in self._seen:
            return "duplicate"
        self._seen[sid] = None
        while len(self._seen) > self.max_seen:
            self._seen.popitem(last=False)
        if action == "alert":
            return "ignored"
        if action not in ("block", "unblock"):
            return "invalid"
        if sig.get("mode") == "shadow":
            return "shadow"
        if action == "block":
            expires = parse_time_ms(sig.get("expires_at"))
            if expires is not None and expires <= now_ms:
                return "expired"
            self.wanted[line] = Wanted(
                sid,
                sig.get("rule_id"),
                scope_value(sig.get("scope")),
                expires,
                parse_time_ms(sig.get("issued_at")),
            )
            self._touch(line, sig)
            return "accepted"
        current = self.wanted.get(line)
        rule = sig.get("rule_id")
        if (
            current is not None
            and sig.get("source") == "expiry"
            and rule is not None
            and current.rule_id is not None
            and rule != current.rule_id
        ):
            return "stale"  # expiry of another rule's block; the current one stays
        self.wanted.pop(line, None)
        self._touch(line, sig)
        return "accepted"

    def _touch(self, line: str, sig: dict[str, Any]) -> None:
        self.dirty.add(line)
        issued = parse_time_ms(sig.get("issued_at"))
        if issued is not None:
            self.fresh[line] = issued
        else:
            self.fresh.pop(line, None)

    def expire(self, now_ms: int) -> None:
        for line, w in list(self.wanted.items()):
            if w.expires_at is not None and w.expires_at <= now_ms:
                del self.wanted[line]
                self.dirty.add(line)

    def op(self, line: str, now_ms: int) -> tuple[str, str, int | None]:
        """("set", value, seconds or None) or ("delete", "", None) for a line."""
        w = self.wanted.get(line)
        if w is None:
            return ("delete", "", None)
        if w.expires_at is None:
            return ("set", w.value, None)
        return ("set", w.value, max(1, math.ceil((w.expires_at - now_ms) / 1000)))

    def mark_all(self) -> None:
        self.dirty.update(self.wanted)


class EnforcerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry()
        self.signals = Counter(
            "tollguard_enforcer_signals_total",
            "Control signals read, by action and what became of them",
            ["action", "outcome"],
            registry=r,
        )
        self.applied = Counter(
            "tollguard_enforcer_applied_total",
            "htable changes Kamailio accepted, by operation (set, delete)",
            ["op"],
            registry=r,
        )
        self.failed = Counter(
            "tollguard_enforcer_failed_total",
            "htable changes that failed (to be retried), by operation",
            ["op"],
            registry=r,
        )
        self.resyncs = Counter(
            "tollguard_enforcer_resyncs_total", "Full re-syncs of the htable", registry=r
        )
        self.up = Gauge(
            "tollguard_enforcer_kamailio_up", "1 if Kamailio answered the last call", registry=r
        )
        self.active = Gauge(
            "tollguard_enforcer_active_blocks", "Lines the enforcer wants blocked", registry=r
        )
        self.pending = Gauge(
            "tollguard_enforcer_pending_lines", "Lines whose change is not yet applied", registry=r
        )
        self.lag = BulkHistogram(
            "tollguard_enforcer_lag_seconds",
            "Time from a signal's issued_at to its change being applied in Kamailio",
            LAG_BUCKETS,
        )
        r.register(self.lag)
        # From 0, so increase() sees a first failure (an alert waits for one).
        for op in ("set", "delete"):
            self.applied.labels(op=op)
            self.failed.labels(op=op)


@dataclass
class Enforcer:
    """Applies a BlockList to Kamailio with retries; I/O but no Kafka."""

    rpc: KamailioRpc
    table: str
    metrics: EnforcerMetrics
    blocks: BlockList = field(default_factory=BlockList)
    clock: Callable[[], float] = time.time
    backoff_s: float = 0.2
    max_backoff_s: float = 5.0
    up: bool = False
    _retry_at: float = 0.0
    _delay: float = 0.0
    _need_sync: bool = True

    def offer_all(self, signals: Iterable[Any]) -> None:
        now = self._now_ms()
        for sig in signals:
            outcome = self.blocks.offer(sig, now)
            action = sig.get("action") if isinstance(sig, dict) else None
            label = action if action in ("block", "unblock", "alert") else "other"
            self.metrics.signals.labels(action=label, outcome=outcome).inc()

    def request_resync(self) -> None:
        self._need_sync = True

    def step(self) -> None:
        """Apply what is pending, unless backing off; never raises for Kamailio trouble."""
        now_s = self.clock()
        self.blocks.expire(int(now_s * 1000))
        self.metrics.active.set(len(self.blocks.wanted))
        if now_s < self._retry_at:
            self.metrics.pending.set(len(self.blocks.dirty))
            return
        try:
            if self._need_sync:
                self._sync()
            self._flush()
        except KamailioDown as exc:
            self._down(str(exc))
        self.metrics.pending.set(len(self.blocks.dirty))

    def _sync(self) -> None:
        """Make the htable equal the wanted list: delete strays, re-set everything."""
        present = self._keys()
        self._mark_up()
        for key in present - self.blocks.wanted.keys():
            self.blocks.dirty.add(key)
        self.blocks.mark_all()
        self._need_sync = False
        self.metrics.resyncs.inc()

    def _keys(self) -> set[str]:
        try:
            dump = self.rpc.call("htable.dump", self.table)
        except RpcError as exc:
            log.warning("htable.dump failed: %s", exc)
            return set()
        keys: set[str] = set()
        stack = [dump]
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                name = item.get("name")
                if isinstance(name, str) and "value" in item:
                    keys.add(name)
                stack.extend(v for v in item.values() if isinstance(v, dict | list))
            elif isinstance(item, list):
                stack.extend(item)
        return keys

    def _flush(self) -> None:
        for line in sorted(self.blocks.dirty):
            now_ms = self._now_ms()
            op, value, ttl = self.blocks.op(line, now_ms)
            try:
                if op == "set":
                    if ttl is None:
                        self.rpc.call("htable.sets", self.table, line, value)
                    else:
                        self.rpc.call("htable.setxs", self.table, line, value, ttl)
                else:
                    self.rpc.call("htable.delete", self.table, line)
            except KamailioDown:
                self.metrics.failed.labels(op=op).inc()
                raise
            except RpcError as exc:
                if op == "delete":
                    pass  # deleting an absent key is what we wanted
                else:
                    # Kamailio refused it (e.g. no such htable): retrying at once
                    # would spin; the next periodic re-sync tries again.
                    self.metrics.failed.labels(op=op).inc()
                    log.warning("%s for a line failed: %s", op, exc)
                    self.blocks.dirty.discard(line)
                    continue
            self._mark_up()
            self.blocks.dirty.discard(line)
            self.metrics.applied.labels(op=op).inc()
            issued = self.blocks.fresh.pop(line, None)
            if issued is not None:  # once per signal, not on every re-sync
                self.metrics.lag.observe(max(0.0, (now_ms - issued) / 1000))

    def _mark_up(self) -> None:
        if not self.up:
            log.info("Kamailio answers at %s", self.rpc.url)
        self.up = True
        self._delay = 0.0
        self.metrics.up.set(1)

    def _down(self, why: str) -> None:
        if self.up:
            log.warning("Kamailio unreachable (%s); retrying with backoff", why)
        self.up = False
        self._need_sync = True  # it may come back empty (restart)
        self._delay = min(self.max_backoff_s, max(self.backoff_s, self._delay * 2))
        self._retry_at = self.clock() + self._delay
        self.metrics.up.set(0)

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)


def _consumer(settings: Settings) -> Any:
    from kafka import KafkaConsumer  # type: ignore[import-untyped]

    from tollguard.kafka_security import kafka_python_config

    return KafkaConsumer(
        **kafka_python_config(settings),
        enable_auto_commit=False,
        group_id=None,
        check_crcs=False,
    )


def _partitions(consumer: Any, topic: str, timeout: float = 30.0) -> list[Any]:
    from kafka import TopicPartition

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return [TopicPartition(topic, p) for p in sorted(parts)]
        time.sleep(0.2)
    raise SystemExit(
        f"tollguard: topic {topic} not found on {consumer.config['bootstrap_servers']}"
    )


def _decode(value: bytes | None) -> Any:
    if value is None:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return None


def rebuild(consumer: Any, topic: str, enforcer: Enforcer, timeout: float = 60.0) -> int:
    """Read the compacted blocks topic to its end and offer the latest per line."""
    tps = _partitions(consumer, topic)
    ends = consumer.end_offsets(tps)
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    latest: dict[bytes, Any] = {}
    deadline = time.monotonic() + timeout
    while any(consumer.position(tp) < ends[tp] for tp in tps):
        if time.monotonic() > deadline:
            raise SystemExit(f"tollguard: could not read {topic} to its end in {timeout:.0f}s")
        for records in consumer.poll(timeout_ms=500).values():
            for rec in records:
                if rec.key is not None:
                    latest[rec.key] = _decode(rec.value)
    enforcer.offer_all(v for v in latest.values() if v is not None)
    enforcer.blocks.fresh.clear()  # the lag metric is about live signals, not the backlog
    return len(latest)


def run_enforcer(settings: Settings, rpc_url: str, table: str, web_port: int | None) -> int:
    metrics = EnforcerMetrics()
    if web_port:
        start_http_server(web_port, addr=settings.web_host, registry=metrics.registry)
    enforcer = Enforcer(KamailioRpc(rpc_url), table, metrics)
    stop = False

    def _stop(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    consumer = _consumer(settings)
    try:
        control = _partitions(consumer, settings.topic_control)
        start_at = consumer.end_offsets(control)  # before the snapshot: nothing is missed
        n = rebuild(consumer, settings.topic_blocks, enforcer)
        consumer.assign(control)
        for tp, offset in start_at.items():
            consumer.seek(tp, offset)
        print(
            f"tollguard enforce kamailio: {n} lines from {settings.topic_blocks}, "
            f"{len(enforcer.blocks.wanted)} blocked; following {settings.topic_control}; "
            f"htable {table} at {rpc_url}",
            flush=True,
        )
        next_resync = time.monotonic() + settings.enforce_resync_s
        while not stop:
            batch = consumer.poll(timeout_ms=200, max_records=500)
            for records in batch.values():
                enforcer.offer_all(s for s in (_decode(r.value) for r in records) if s is not None)
            if time.monotonic() >= next_resync:
                enforcer.request_resync()
                next_resync = time.monotonic() + settings.enforce_resync_s
            enforcer.step()
    finally:
        consumer.close()
    return 0
