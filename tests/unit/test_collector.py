"""The worker's own pacing of garbage collections."""

from __future__ import annotations

import gc

from tollguard.app.collector import YoungCollections
from tollguard.numbering import DestinationTable


def test_young_collections_come_every_so_many_events_and_the_middle_one_every_tenth() -> None:
    pace = YoungCollections(every_events=5_000, middle_every=10)
    assert pace.due(4_999) is None
    assert pace.due(1) == 0
    # Envelopes count their events, not their records (fractional averages add up).
    assert [pace.due(2_500.5) for _ in range(4)] == [None, 0, None, 0]
    due = [pace.due(5_000) for _ in range(17)]
    assert due.count(1) == 2 and due[6] == 1 and due[16] == 1
    assert set(due) == {0, 1}


def test_a_call_leg_holding_its_destination_leaves_the_collector_at_its_first_look() -> None:
    # Legs live for hours on busy lines; tracked, every collection walks them.
    dest = DestinationTable.load_default().lookup("+23276123456")
    leg = (1_700_000_000_000, "+23276123456", dest, True)
    gc.collect()
    assert dest is not None and not gc.is_tracked(dest)
    assert not gc.is_tracked(leg)
