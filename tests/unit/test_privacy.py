"""Privacy: no line id or phone number in any metric label; numbers masked in logs below DEBUG."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

from tollguard.adapters.hep_collector import CollectorMetrics
from tollguard.adapters.kamailio import EnforcerMetrics
from tollguard.app.metrics import Metrics
from tollguard.app.processor import BatchProcessor, RawRecord
from tollguard.numbering import DestinationTable, load_default_dial_plans
from tollguard.privacy import for_log, mask_numbers
from tollguard.rulepacks import load_pack
from tollguard.simulate.traffic import AttackSpec, BackgroundSpec, attack, background, merge

from .helpers import T0

PACK = Path(__file__).resolve().parents[2] / "rules" / "default.yaml"
ALLOWED_LABELS = {
    "type",
    "reason",
    "country",
    "action",
    "rule",
    "severity",
    "mode",
    "version",
    "op",
    "outcome",
    "le",
    "generation",  # the garbage collector's: 0, 1 or 2
    "quantile",
}
PHONE_LIKE = re.compile(r"\d{6,}")


def _labels(registry: CollectorRegistry) -> list[tuple[str, dict[str, str]]]:
    return [(s.name, s.labels) for fam in registry.collect() for s in fam.samples]


def _records() -> tuple[list[RawRecord], set[str]]:
    end = T0 + 6 * 3_600_000
    events: list[dict[str, Any]] = list(
        merge(
            background(BackgroundSpec(lines=30, calls_per_hour=10, intl_share=0.3), T0, end, 2),
            attack(AttackSpec(calls=80, interval_ms=30_000), T0 + 3_600_000, 2),
        )
    )
    # The same number again and again, and a malformed event naming a line.
    events += [
        {"call_id": f"r{i}", "ts": end + i * 10_000, "line_id": "+81312349999", "callee": n}
        for i, n in enumerate(["01023276123456"] * 40)
    ]
    secrets: set[str] = set()
    for e in events:
        secrets.update(str(e.get(k)) for k in ("line_id", "callee", "caller", "tenant") if e.get(k))
    records = [
        RawRecord("calls.events", 0, i, str(e["line_id"]).encode(), orjson.dumps(e))
        for i, e in enumerate(events)
    ]
    bad = b'{"call_id":"x","ts":1,"line_id":"+81399999999","callee":"0102327612"}'
    records.append(RawRecord("calls.events", 0, len(records), b"+81399999999", bad))
    secrets.add("+81399999999")
    return records, secrets


def test_metric_labels_carry_no_line_ids_or_numbers() -> None:
    metrics = Metrics()
    proc = BatchProcessor(
        load_pack(PACK), load_default_dial_plans(), DestinationTable.load_default(), metrics
    )
    records, secrets = _records()
    out = proc.process(records, T0)
    out.signals.extend(proc.expire(T0 + 30 * 86_400_000).signals)
    proc.refresh_gauges()
    assert out.signals, "the attack should have produced signals"
    for name, labels in _labels(metrics.registry):
        assert set(labels) <= ALLOWED_LABELS, (name, labels)
        for value in labels.values():
            assert value not in secrets, (name, labels)
            assert not PHONE_LIKE.search(value), (name, labels)


def test_adapter_metrics_have_bounded_label_names() -> None:
    for metrics in (EnforcerMetrics(CollectorRegistry()), CollectorMetrics(CollectorRegistry())):
        registry = next(v for v in vars(metrics).values() if isinstance(v, CollectorRegistry))
        for fam in registry.collect():
            for sample in fam.samples:
                assert set(sample.labels) <= ALLOWED_LABELS, (fam.name, sample.labels)


def test_numbers_are_masked_in_logs_below_debug() -> None:
    reason = "12 calls to the same number +23276123456 in 10 min, limit 10 (+232)"
    masked = mask_numbers(reason)
    assert "+23276123456" not in masked
    assert "+23276" in masked and "12 calls" in masked and "(+232)" in masked
    logger = logging.getLogger("tollguard.test-privacy")
    logger.setLevel(logging.INFO)
    assert for_log(logger, reason) == masked
    logger.setLevel(logging.DEBUG)
    assert for_log(logger, reason) == reason
