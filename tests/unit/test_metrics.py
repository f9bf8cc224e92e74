"""Histograms the worker keeps itself: bulk lag observations and collector pauses."""

from __future__ import annotations

import gc
import random

from tollguard.app.metrics import BulkHistogram, Metrics

BOUNDS = (0.005, 0.01, 0.1, 1.0, 10.0)


def test_bulk_lag_observation_matches_one_by_one() -> None:
    rng = random.Random(3)
    now = 1_795_910_400_000
    times = [
        now - rng.choice([0, 5, 6, 10, 11, 99, 100, 1_000, 10_000, 20_000]) for _ in range(500)
    ]
    bulk, single = BulkHistogram("a", "a", BOUNDS), BulkHistogram("b", "b", BOUNDS)
    bulk.observe_lags(now, times)
    single.observe_many((now - t) / 1000 for t in times)
    assert bulk.counts == single.counts
    assert abs(bulk.sum - single.sum) < 1e-6
    assert sum(bulk.counts) == 500


def test_garbage_collection_pauses_are_exported_by_generation() -> None:
    metrics = Metrics()

    def sample(suffix: str, generation: int) -> float | None:
        name = f"tollguard_gc_pause_seconds_{suffix}"
        return metrics.registry.get_sample_value(name, {"generation": str(generation)})

    assert [sample("count", g) for g in (0, 1, 2)] == [0, 0, 0]
    metrics.gc_pauses.watch()
    try:
        gc.collect()
        gc.collect()
    finally:
        metrics.gc_pauses.unwatch()
    assert sample("count", 2) == 2
    paused = sample("sum", 2)
    assert paused is not None and paused > 0
    gc.collect()  # no longer watched
    assert sample("count", 2) == 2
