"""Prometheus metrics (SPEC section 5).

Updating a labelled prometheus_client metric costs about a microsecond, which
is more than the engine spends on an event, so the worker tallies a batch in
plain dicts and adds the totals once per batch. Histograms are observed in
bulk through a small collector of our own for the same reason.
"""

from __future__ import annotations

import gc
import time
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

from tollguard.engine.events import REJECT_REASONS

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
GC_PAUSE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)


class BulkHistogram(Collector):
    """A label-free histogram that accepts many observations per call."""

    def __init__(self, name: str, documentation: str, buckets: Sequence[float]) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = tuple(buckets)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def observe_many(self, values: Iterable[float]) -> None:
        counts, bounds = self.counts, self.bounds
        total = 0.0
        for v in values:
            counts[bisect_left(bounds, v)] += 1
            total += v
        self.sum += total

    def observe_lags(self, now_ms: int, event_times: list[int]) -> None:
        """Observe `now_ms - t` in seconds for each event time, at C speed.

        One sort and a bisect per bucket instead of a Python step per event:
        the detector observes every event's lag.
        """
        if not event_times:
            return
        times = sorted(event_times)
        n = len(times)
        counts = self.counts
        # lag <= bound  <=>  t >= now - bound; walk bounds from the largest lag down
        above = 0  # events with a lag above the previous (larger) bound
        for i in range(len(self.bounds) - 1, -1, -1):
            upto = n - bisect_left(times, now_ms - self.bounds[i] * 1000)
            counts[i + 1] += n - upto - above
            above = n - upto
        counts[0] += n - above
        self.sum += (now_ms * n - sum(times)) / 1000

    def cumulative(self) -> list[tuple[str, float]]:
        """Bucket counts as Prometheus wants them: each includes all below it."""
        buckets: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            running += n
            buckets.append((repr(bound), running))
        running += self.counts[-1]
        buckets.append(("+Inf", running))
        return buckets

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation)
        family.add_metric([], self.cumulative(), self.sum)
        yield family


class GcPauses(Collector):
    """How long the cyclic garbage collector stops the worker, by generation.

    No event is decided while a collection runs, and a full one walks every
    tracked object in the process: a pause shows as a step in decision
    latency that nothing else explains (docs/performance.md).
    """

    name = "tollguard_gc_pause_seconds"

    def __init__(self) -> None:
        self.generations = [
            BulkHistogram(self.name, "", GC_PAUSE_BUCKETS) for _ in range(len(gc.get_count()))
        ]
        self._started = 0.0

    def on_gc(self, phase: str, info: dict[str, int]) -> None:
        # A collection holds the GIL from start to stop and they never nest.
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.generations[info["generation"]].observe(time.perf_counter() - self._started)

    def watch(self) -> None:
        if self.on_gc not in gc.callbacks:
            gc.callbacks.append(self.on_gc)

    def unwatch(self) -> None:
        if self.on_gc in gc.callbacks:
            gc.callbacks.remove(self.on_gc)

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(
            self.name,
            "Time the cyclic garbage collector stopped the worker, by generation (2 is full)",
            labels=["generation"],
        )
        for generation, histogram in enumerate(self.generations):
            family.add_metric([str(generation)], histogram.cumulative(), histogram.sum)
        yield family


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "tollguard_events_total", "Call events accepted, by type", ["type"], registry=r
        )
        self.rejected = Counter(
            "tollguard_events_rejected_total",
            "Events rejected (sent to the dead-letter topic), by reason",
            ["reason"],
            registry=r,
        )
        self.duplicates = Counter(
            "tollguard_events_duplicate_total",
            "Repeated (call_id, type) events counted once and otherwise ignored",
            registry=r,
        )
        self.replayed = Counter(
            "tollguard_events_replayed_total",
            "Re-read events skipped because restored line state already covers them",
            registry=r,
        )
        self.state_writes = Counter(
            "tollguard_state_writes_total",
            "Line states written to the state changelog (one per changed line per checkpoint)",
            registry=r,
        )
        self.signals = Counter(
            "tollguard_signals_total",
            "Control signals produced",
            ["action", "rule", "severity", "mode"],
            registry=r,
        )
        self.active_blocks = Gauge(
            "tollguard_active_blocks", "Lines currently blocked by this worker", registry=r
        )
        self.busy_seconds = Counter(
            "tollguard_busy_seconds_total",
            "Wall time spent fetching, deciding and publishing batches that held events; "
            "a rate near 1 means the worker runs at capacity",
            registry=r,
        )
        self.assigned_partitions = Gauge(
            "tollguard_assigned_partitions",
            "Input partitions this worker owns (restored and processing)",
            registry=r,
        )
        self.tracked_lines = Gauge(
            "tollguard_tracked_lines", "Lines with state held by this worker", registry=r
        )
        self.rules_version = Gauge(
            "tollguard_rules_version_info", "Rule pack version in force", ["version"], registry=r
        )
        self.rules_rejected = Counter(
            "tollguard_rules_rejected_total",
            "Rule packs read from the rules topic and rejected (the pack in force stays)",
            registry=r,
        )
        self.destination_calls = Counter(
            "tollguard_destination_calls_total",
            "International call attempts by destination calling code",
            ["country"],
            registry=r,
        )
        self.decision_latency = BulkHistogram(
            "tollguard_decision_latency_seconds",
            "Time from an event being consumed to its signal being produced",
            LATENCY_BUCKETS,
        )
        self.event_lag = BulkHistogram(
            "tollguard_event_lag_seconds",
            "Time from an event's switch timestamp to its processing",
            LAG_BUCKETS,
        )
        self.gc_pauses = GcPauses()
        r.register(self.decision_latency)
        r.register(self.event_lag)
        r.register(self.gc_pauses)

    def set_rules_version(self, version: str) -> None:
        self.rules_version.clear()
        self.rules_version.labels(version=version).set(1)

    def announce_rules(self, version: str, rules: Iterable[tuple[str, str]]) -> None:
        """Publish the pack version and a zero series per rule (id, mode) and reason.

        A labelled counter only appears at its first increment, and `rate()`
        or `increase()` cannot see that first step: a storm of blocks within
        one scrape would be invisible to alerts without these zeros.
        """
        self.set_rules_version(version)
        for rule_id, mode in rules:
            for action, severity in (("alert", "warning"), ("block", "critical")):
                self.signals.labels(action=action, rule=rule_id, severity=severity, mode=mode)
            self.signals.labels(action="unblock", rule=rule_id, severity="critical", mode=mode)
        for reason in REJECT_REASONS:
            self.rejected.labels(reason=reason)
