"""The instruction-count bench runs under real callgrind (CI checks that it works)."""

from __future__ import annotations

import json

import pytest

from bench import instructions

pytestmark = pytest.mark.e2e


def test_instruction_bench_counts_what_an_event_costs_on_each_path(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert instructions.main(["--events", "3000", "--lines", "300", "--parts"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    paths = result["paths"]
    assert set(paths) == {"envelopes", "single"}
    assert paths["single"]["records"] == 3000
    assert paths["envelopes"]["records"] < 3000 / 100
    # Parsing alone takes thousands of instructions an event, and a record
    # per event costs more than a share of an envelope: that is why envelopes exist.
    envelopes, single = (paths[p]["instructions_per_event"] for p in ("envelopes", "single"))
    assert 1000 < envelopes < single
    # The envelope path's steps each cost something and add up to the whole.
    parts = paths["envelopes"]["parts"]
    assert list(parts) == [what for _, what in instructions.PARTS]
    assert all(n > 0 for n in parts.values()), parts
    assert abs(sum(parts.values()) - envelopes) <= len(parts), parts
    assert "parts" not in paths["single"]
