"""The hot list and the rate table, checked against libphonenumber rather than trusted."""

from __future__ import annotations

import phonenumbers
import pytest

from tollguard.numbering import DestinationTable
from tollguard.numbering.rates import MICRO, RateTable, load_hot_list

HOT = load_hot_list()
RATES = RateTable.load_default()


def _country_code(prefix: str) -> int:
    for n in (1, 2, 3):
        if phonenumbers.region_code_for_country_code(int(prefix[:n])) != "ZZ":
            return int(prefix[:n])
    raise AssertionError(f"{prefix} starts with no country calling code")


@pytest.mark.parametrize("entry", HOT, ids=[h.prefix for h in HOT])
def test_hot_list_prefix_belongs_to_its_region(entry: object) -> None:
    prefix, region = entry.prefix, entry.region  # type: ignore[attr-defined]
    cc = _country_code(prefix)
    regions = phonenumbers.region_codes_for_country_code(cc)
    assert region in regions, f"+{prefix}: {region} not in {regions}"
    if cc == 1:
        # Caribbean ranges inside +1: the area code itself must be the region's,
        # which is what makes "+1 242 is international from the US" true.
        example = phonenumbers.example_number(region)
        assert example is not None
        national = str(example.national_number)
        assert prefix[1:] == national[:3], f"+{prefix} is not an area code of {region}"


def test_hot_list_ranges_resolve_to_the_same_region_in_the_destination_table() -> None:
    table = DestinationTable.load_default()
    for entry in HOT:
        dest = table.lookup("+" + entry.prefix + "5550123")
        assert dest is not None and dest.region == entry.region, entry


def test_hot_list_covers_the_incident_destinations() -> None:
    listed = {h.prefix for h in HOT}
    # ../shared/INCIDENTS.md: seed case, PSL case, US weekend, historic list
    for prefix in ("232", "220", "252", "53", "371", "370", "387", "381", "670", "960"):
        assert prefix in listed
    for caribbean in ("1242", "1664", "1876"):
        assert caribbean in listed


def test_every_rate_prefix_starts_with_a_real_calling_code() -> None:
    for prefix, per_minute in RATES:  # type: ignore[attr-defined]
        _country_code(prefix)
        assert 0 <= per_minute <= 10 * MICRO


def test_rates_longest_prefix_wins_and_defaults() -> None:
    assert RATES.per_minute("+23276123456") == round(0.65 * MICRO)
    assert RATES.per_minute("+23230123456") == round(0.60 * MICRO)
    assert RATES.per_minute("+12425550123") == round(0.25 * MICRO)
    assert RATES.per_minute("+12125550123") == round(0.01 * MICRO)
    assert RATES.per_minute("+99912345") == 0
    merged = RATES.with_overrides({"+999": 1.5}, 0.2)
    assert merged.per_minute("+99912345") == round(1.5 * MICRO)
    assert merged.per_minute("+7912345") == round(0.2 * MICRO)


def test_hot_destinations_cost_more_than_mainstream_ones() -> None:
    mainstream = max(RATES.per_minute("+" + p) for p in ("1212", "4420", "8130", "4930", "331"))
    for entry in HOT:
        assert RATES.per_minute("+" + entry.prefix + "5550123") > mainstream, entry
