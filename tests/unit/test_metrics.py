"""The bulk lag histogram counts exactly what one observation per event would."""

from __future__ import annotations

import random

from tollguard.app.metrics import BulkHistogram

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
