"""Numbering layer: dial-plan normalisation, destination lookup, and the generated data.

The data tests check ``rules/numbering/destinations.csv`` against libphonenumber itself
instead of trusting the generator: a wrong prefix here means fraud to the Caribbean is
scored as a domestic US call.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import orjson
import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st
from phonenumbers import PhoneMetadata, PhoneNumberType

from tollguard.engine.events import CallEvent, EnvelopeItemError, EventParser
from tollguard.numbering import (
    Destination,
    DestinationTable,
    DialPlan,
    default_rules_dir,
    load_default_dial_plans,
    load_dial_plans,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def table() -> DestinationTable:
    return DestinationTable.load_default()


@pytest.fixture(scope="module")
def plans() -> dict[str, DialPlan]:
    return load_default_dial_plans()


# --------------------------------------------------------------------------- dial plans


@pytest.mark.parametrize(
    ("dialled", "expected"),
    [
        ("010232761234", "+232761234"),  # JP international prefix 010
        ("010-232-76-1234", "+232761234"),
        ("0312345678", "+81312345678"),  # Tokyo, trunk 0
        ("03-1234-5678", "+81312345678"),
        ("(03) 1234.5678", "+81312345678"),
        ("090-1234-5678", "+819012345678"),  # mobile
        ("+232761234", "+232761234"),
        ("+81 3 1234 5678", "+81312345678"),
        ("0033010232761234", "+232761234"),  # NTT Com carrier select + 010
        ("001010441234567890", "+441234567890"),  # KDDI carrier select + 010
        ("00232761234", None),  # 00 is not international in Japan
        ("0012345", None),
        ("312345678", None),  # no trunk prefix: local number, area unknown
        ("0", None),
        ("010", None),
        ("01023", None),  # two digits after the prefix cannot be a destination
    ],
)
def test_jp_normalize(plans: dict[str, DialPlan], dialled: str, expected: str | None) -> None:
    assert plans["JP"].normalize(dialled) == expected


def test_jp_international_classification(
    plans: dict[str, DialPlan], table: DestinationTable
) -> None:
    jp = plans["JP"]
    sl = table.lookup(jp.normalize("010232761234") or "")
    assert sl is not None and sl.region == "SL"
    assert sl.label == "Sierra Leone (+232)"
    assert jp.is_international(sl)
    tokyo = table.lookup(jp.normalize("0312345678") or "")
    assert tokyo is not None and tokyo.region == "JP"
    assert not jp.is_international(tokyo)


@pytest.mark.parametrize(
    ("dialled", "expected"),
    [
        ("12423571234", "+12423571234"),
        ("1 (242) 357-1234", "+12423571234"),
        ("2423571234", "+12423571234"),  # ten-digit dialling
        ("4165550123", "+14165550123"),
        ("1-212-555-0123", "+12125550123"),
        ("011 44 20 7946 0000", "+442079460000"),
        ("+44 20 7946 0000", "+442079460000"),
        ("5550123", None),  # seven-digit local: area code unknown
        ("11234567890", None),  # 1 + 1xx is not a NANP number
        ("1234567890", None),  # after trunk 1 only nine digits remain
        ("0044207946000", None),  # NANP does not use 00
    ],
)
def test_nanp_normalize(plans: dict[str, DialPlan], dialled: str, expected: str | None) -> None:
    assert plans["NANP"].normalize(dialled) == expected


def test_nanp_caribbean_is_international(
    plans: dict[str, DialPlan], table: DestinationTable
) -> None:
    nanp = plans["NANP"]
    bahamas = table.lookup(nanp.normalize("1 242 357 1234") or "")
    assert bahamas is not None
    assert (bahamas.region, bahamas.prefix) == ("BS", "1242")
    assert bahamas.label == "Bahamas (+1 242)"
    assert nanp.is_international(bahamas)

    jamaica = table.lookup("+18765550123")
    assert jamaica is not None and jamaica.region == "JM" and nanp.is_international(jamaica)

    toronto = table.lookup(nanp.normalize("416 555 0123") or "")
    assert toronto is not None and toronto.region == "CA"
    assert not nanp.is_international(toronto)

    new_york = table.lookup(nanp.normalize("212 555 0123") or "")
    assert new_york is not None and new_york.region == "US"
    assert not nanp.is_international(new_york)

    toll_free = table.lookup("+18005550123")
    assert toll_free is not None and toll_free.region == "US" and toll_free.prefix == "1"
    assert toll_free.label == "United States / NANP (+1)"


def test_e164_plan(plans: dict[str, DialPlan], table: DestinationTable) -> None:
    e164 = plans["E164"]
    assert e164.country_code is None
    assert e164.normalize("+44 20 7946 0000") == "+442079460000"
    assert e164.normalize("0044 20 7946 0000") == "+442079460000"
    assert e164.normalize("020 7946 0000") is None  # national: no home country to add
    assert e164.normalize("442079460000") is None  # bare digits are ambiguous
    assert e164.normalize("000123") is None  # no country code starts with 0
    dest = table.lookup("+442079460000")
    assert dest is not None and dest.region == "GB"
    assert e164.is_international(dest)


@pytest.mark.parametrize(
    ("plan", "dialled", "expected"),
    [
        ("GB", "020 7946 0000", "+442079460000"),
        ("GB", "00 232 76 123456", "+23276123456"),
        ("GB", "07700 900123", "+447700900123"),
        ("DE", "030 123456", "+4930123456"),
        ("DE", "0049 30 123456", "+4930123456"),
        ("FR", "01 23 45 67 89", "+33123456789"),
        ("FR", "0123456", None),  # French numbers are 9 digits after the 0
    ],
)
def test_european_plans(
    plans: dict[str, DialPlan], plan: str, dialled: str, expected: str | None
) -> None:
    assert plans[plan].normalize(dialled) == expected


def test_crown_dependencies_are_international_from_gb(
    plans: dict[str, DialPlan], table: DestinationTable
) -> None:
    gb = plans["GB"]
    for number, region in [
        ("01534 123456", "JE"),
        ("01481 123456", "GG"),
        ("01624 123456", "IM"),
        ("020 7946 0000", "GB"),
    ]:
        dest = table.lookup(gb.normalize(number) or "")
        assert dest is not None and dest.region == region
        assert gb.is_international(dest) == (region != "GB")


@pytest.mark.parametrize(
    "junk",
    [
        "",
        " ",
        "+",
        "++442079460000",
        "+44+2079460000",
        "abc",
        "0312345678x",
        "+1 242 ABC 1234",
        "12",
        "+12",
        "+0442079460000",
        "+1234567890123456",  # 16 digits
        "010" + "1" * 16,
        "\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668",  # Arabic-Indic digits
        "\u00b2\u00b3\u00b9\u00b2\u00b3",  # superscripts pass str.isdigit
        "*67 212 555 0123",
        "#31#",
        "sip:+12125550123@example.com",
    ],
)
def test_junk_rejected(plans: dict[str, DialPlan], junk: str) -> None:
    for plan in plans.values():
        assert plan.normalize(junk) is None, plan.name


_SEPARATOR_TEXT = st.text(alphabet="0123456789+-. ()", max_size=25)


@given(st.one_of(st.text(max_size=40), _SEPARATOR_TEXT))
def test_normalize_total_and_well_formed(text: str) -> None:
    for plan in _PLANS.values():
        out = plan.normalize(text)
        assert out is None or (
            out[0] == "+" and out[1:].isascii() and out[1:].isdigit() and 3 <= len(out) - 1 <= 15
        )
        if out is not None:
            assert plan.normalize(out) == out  # idempotent
            _TABLE.lookup(out)
    _TABLE.lookup(text)  # lookup must not raise on garbage either


_PLANS = load_default_dial_plans()
_TABLE = DestinationTable.load_default()

# Shipped plans and shapes they do not cover: a trunk prefix of two digits,
# no length list, bare national dialling with and without a trunk prefix, and
# international prefixes that start with the trunk prefix twice (the shortcut
# leaves those to its trunk-prefix test, as for JP's "0033010").
_SHORTCUT_PLANS = [
    *_PLANS.values(),
    DialPlan("T2", "39", ("00", "12123"), trunk_prefix="12", domestic_regions=frozenset({"IT"})),
    DialPlan("BARE", "7", ("810", "880"), trunk_prefix="8", bare_national=True),
    DialPlan(
        "NOTRUNK", "61", ("0011",), bare_national=True, national_number_lengths=frozenset({9})
    ),
]


def _dialled_strings(plan: DialPlan, rng: random.Random, n: int) -> list[str]:
    heads = ["", "+", "0", "00", "1", "11", *plan.international_prefixes]
    if plan.trunk_prefix:
        heads += [plan.trunk_prefix, plan.trunk_prefix * 2]
    if plan.country_code:
        heads += ["+" + plan.country_code, plan.country_code]
    out = []
    for _ in range(n):
        body = "".join(rng.choices("0123456789", k=rng.randint(0, 18)))
        if rng.random() < 0.05:
            body += rng.choice(["-", " ", "\n", "\u0663", "x"])
        out.append(rng.choice(heads) + body)
    return out


@pytest.mark.parametrize("plan", _SHORTCUT_PLANS, ids=lambda p: p.name)
def test_national_shortcut_answers_as_the_rules_do(plan: DialPlan) -> None:
    strings = _dialled_strings(plan, random.Random(plan.name), 20_000)
    for dialled in strings:
        assert plan.normalize(dialled) == plan.normalize_by_rules(dialled), dialled
    # The shortcut must carry the plan's national numbers, or it only costs.
    national = [d for d in strings if plan.national_match is not None and plan.national_match(d)]
    if plan.country_code and (plan.trunk_prefix or plan.bare_national):
        assert len(national) > 100
    else:
        assert not national


@given(st.one_of(st.text(max_size=24), _SEPARATOR_TEXT))
def test_national_shortcut_on_any_text(text: str) -> None:
    for plan in _SHORTCUT_PLANS:
        assert plan.normalize(text) == plan.normalize_by_rules(text)


@pytest.mark.parametrize("plan", _SHORTCUT_PLANS, ids=lambda p: p.name)
def test_parser_resolves_numbers_as_normalize_and_lookup_do(
    plan: DialPlan, table: DestinationTable
) -> None:
    # The parser spells `normalize` out and skips the lookup for national
    # numbers when the home country is one row (JP, DE, FR, T2's Italy; not
    # NANP, GB, BARE's +7 or NOTRUNK's +61, which longer prefixes split).
    parser = EventParser(plan, table)
    strings = _dialled_strings(plan, random.Random(plan.name + "parser"), 5_000)
    events = [
        {"call_id": f"c{i}", "ts": 1_795_910_400_000, "line_id": "l", "callee": s}
        for i, s in enumerate(strings)
    ]
    resolved = 0
    for start in range(0, len(events), 500):
        items = parser.parse_envelope(orjson.dumps(events[start : start + 500]))
        for dialled, item in zip(strings[start : start + 500], items, strict=True):
            e164 = plan.normalize(dialled)
            if e164 is None:
                assert isinstance(item, EnvelopeItemError) and item.reason == "bad_number"
                continue
            assert isinstance(item, CallEvent), dialled
            dest = table.lookup(e164)
            abroad = dest is None or dest.region not in plan.domestic_regions
            assert (item.e164, item.dest, item.international) == (e164, dest, abroad), dialled
            resolved += 1
    assert resolved > 500


def test_sole_destination_of_a_range(table: DestinationTable) -> None:
    assert table.sole("81") == table.lookup("+81")
    assert table.sole("81") is not None and table.sole("81").region == "JP"  # type: ignore[union-attr]
    assert table.sole("1") is None  # NANP: Bahamas, Canada, ...
    assert table.sole("44") is None  # Jersey, Guernsey, Isle of Man
    jersey = table.sole("441534")
    assert jersey is not None and jersey.region == "JE"
    small = DestinationTable(
        [Destination("8", "8", "XX", "Eight"), Destination("90", "90", "TR", "T")]
    )
    assert small.sole("81") == small.lookup("+81") == Destination("8", "8", "XX", "Eight")
    assert small.sole("7") is None  # no row covers it


def test_dial_plan_file_shape(plans: dict[str, DialPlan]) -> None:
    assert set(plans) == {"E164", "JP", "NANP", "GB", "DE", "FR"}
    jp = plans["JP"]
    assert (jp.country_code, jp.trunk_prefix) == ("81", "0")
    assert jp.domestic_regions == frozenset({"JP"})
    assert "010" in jp.international_prefixes
    nanp = plans["NANP"]
    assert (nanp.country_code, nanp.trunk_prefix, nanp.international_prefixes) == (
        "1",
        "1",
        ("011",),
    )
    assert nanp.domestic_regions == {"US", "CA"}
    for name, cc in [("GB", "44"), ("DE", "49"), ("FR", "33")]:
        p = plans[name]
        assert (p.country_code, p.international_prefixes, p.trunk_prefix) == (cc, ("00",), "0")
        assert p.domestic_regions == {name}


def test_load_dial_plans_defaults_and_errors(tmp_path: Path) -> None:
    f = tmp_path / "plans.yaml"
    f.write_text(
        "dial_plans:\n  IT:\n    country_code: 39\n    international_prefixes: ['00']\n",
        encoding="utf-8",
    )
    it = load_dial_plans(f)["IT"]
    assert it.country_code == "39"
    assert it.domestic_regions == {"IT"}
    assert it.trunk_prefix is None
    assert it.normalize("0039 06 6988 1234") == "+390669881234"
    assert it.normalize("06 6988 1234") is None  # no trunk prefix, not bare_national

    f.write_text("dial_plans:\n  X:\n    countrycode: 1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unknown keys"):
        load_dial_plans(f)
    f.write_text("dial_plans:\n  Corp:\n    country_code: '1'\n", encoding="utf-8")
    with pytest.raises(ValueError, match="domestic_regions"):
        load_dial_plans(f)


# --------------------------------------------------------------------------- table mechanics


def _d(prefix: str, cc: str, region: str, name: str = "x") -> Destination:
    return Destination(prefix, cc, region, name)


def test_longest_prefix_and_plus_handling() -> None:
    t = DestinationTable(
        [
            _d("1", "1", "US"),
            _d("1242", "1", "BS"),
            _d("12423", "1", "ZZ"),
            _d("44", "44", "GB"),
            _d("232", "232", "SL"),
        ]
    )
    assert len(t) == 5
    assert [t.lookup(n) for n in ("12423571234", "+12423571234")] == [_d("12423", "1", "ZZ")] * 2
    hit = t.lookup("12421234")
    assert hit is not None and hit.region == "BS"
    hit = t.lookup("12125550123")
    assert hit is not None and hit.region == "US"
    hit = t.lookup("1242")
    assert hit is not None and hit.region == "BS"
    hit = t.lookup("4")
    assert hit is None
    for n in ("", "+", "3312345", "0", "23", "abc"):
        assert t.lookup(n) is None


def test_deep_prefixes_and_short_inputs() -> None:
    """Prefixes longer than the 4-character head index, and inputs shorter than it."""
    t = DestinationTable(
        [
            _d("7", "7", "RU"),
            _d("77", "7", "KZ"),
            _d("618916", "61", "AU"),
            _d("6189162", "61", "CC"),
            _d("61891621", "61", "ZZ"),
            _d("61", "61", "AU"),
        ]
    )
    cases = {
        "7": "RU",
        "77": "KZ",
        "+77": "KZ",
        "7912": "RU",
        "618": "AU",
        "61891": "AU",
        "618916": "AU",
        "+6189162": "CC",
        "6189162999": "CC",
        "61891621": "ZZ",
        "+618916219": "ZZ",
    }
    for number, region in cases.items():
        hit = t.lookup(number)
        assert hit is not None and hit.region == region, number


def test_table_rejects_inconsistent_rows() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        DestinationTable([_d("1", "1", "US"), _d("1", "1", "CA")])
    with pytest.raises(ValueError, match="does not start"):
        DestinationTable([_d("44", "1", "GB")])
    with pytest.raises(ValueError, match="digits"):
        DestinationTable([_d("+44", "44", "GB")])


def test_rules_dir_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "numbering").mkdir()
    (tmp_path / "numbering" / "destinations.csv").write_text(
        "prefix,country_code,region,name\n999,999,ZZ,Nowhere\n", encoding="utf-8"
    )
    monkeypatch.setenv("TOLLGUARD_RULES_DIR", str(tmp_path))
    assert default_rules_dir() == tmp_path
    t = DestinationTable.load_default()
    dest = t.lookup("+9991234")
    assert dest is not None and dest.label == "Nowhere (+999)"


def test_default_rules_dir_is_repo_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOLLGUARD_RULES_DIR", raising=False)
    assert default_rules_dir() == REPO / "rules"


# --------------------------------------------------------------------------- data vs phonenumbers


def _e164_digits(num: phonenumbers.PhoneNumber) -> str:
    return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)[1:]


def _attributable(num: phonenumbers.PhoneNumber) -> bool:
    """Canada's 7-digit "310-xxxx" service numbers are local-only and overlap Los Angeles'
    area code 310; the generator deliberately attributes only 10-digit NANP numbers."""
    return num.country_code != 1 or len(str(num.national_number)) == 10


def _example_numbers() -> list[tuple[str, phonenumbers.PhoneNumber]]:
    out: list[tuple[str, phonenumbers.PhoneNumber]] = []
    types = [
        t
        for t in PhoneNumberType.values()
        if t not in (PhoneNumberType.UNKNOWN, PhoneNumberType.FIXED_LINE_OR_MOBILE)
    ]
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for t in types:
            num = phonenumbers.example_number_for_type(region, t)
            if num is not None:
                out.append((region, num))
    for cc in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS):
        num = phonenumbers.example_number_for_non_geo_entity(cc)
        if num is not None:
            out.append(("001", num))
    return out


def test_every_calling_code_has_a_root_row(table: DestinationTable) -> None:
    roots = {d.prefix: d for d in table if d.prefix == d.country_code}
    for cc, regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items():
        root = roots.get(str(cc))
        assert root is not None, cc
        assert root.region == regions[0]


def test_example_numbers_resolve_to_their_region(table: DestinationTable) -> None:
    examples = _example_numbers()
    assert len(examples) > 1000
    mismatches: list[str] = []
    for region, num in examples:
        if not _attributable(num):
            continue
        # Where libphonenumber itself attributes a region's example elsewhere (overlapping
        # metadata, see the next test), its answer is the best the table can give.
        expected = phonenumbers.region_code_for_number(num)
        dest = table.lookup(_e164_digits(num))
        got = dest.region if dest else None
        if got != expected:
            mismatches.append(f"{region} {_e164_digits(num)}: table={got} phonenumbers={expected}")
    assert not mismatches, "\n".join(mismatches)


def test_libphonenumber_ambiguities_stay_within_shared_codes() -> None:
    """Some examples libphonenumber itself attributes to another region: NANP-wide toll-free
    and personal numbers go to US, overlapping Guadeloupe/St Martin/St Barthelemy ranges to
    whichever comes first, Western Sahara to Morocco.  That is only acceptable between
    regions sharing a calling code, and never for the main region of a code."""
    mains = {regs[0] for regs in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.values()}
    for region, num in _example_numbers():
        got = phonenumbers.region_code_for_number(num)
        if got != region:
            assert region not in mains, (region, num)
            assert num.country_code is not None
            assert got in phonenumbers.COUNTRY_CODE_TO_REGION_CODE[num.country_code]


_SHARED_CODES = sorted(
    cc for cc, regs in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items() if len(regs) > 1
)


@pytest.mark.parametrize("cc", _SHARED_CODES)
def test_random_valid_numbers_of_shared_codes(table: DestinationTable, cc: int) -> None:
    """Example numbers are one per type; sample the rest of each shared code's space."""
    rng = random.Random(cc)
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE[cc]
    lengths: set[int] = set()
    for r in regions:
        md = PhoneMetadata.metadata_for_region(r)
        assert md is not None and md.general_desc is not None
        lengths.update(md.general_desc.possible_length)
    checked = 0
    mismatches: list[str] = []
    for _ in range(5000):
        nsn = str(rng.randrange(1, 10)) + "".join(
            rng.choice("0123456789") for _ in range(rng.choice(sorted(lengths)) - 1)
        )
        num = phonenumbers.PhoneNumber(country_code=cc, national_number=int(nsn))
        if not phonenumbers.is_valid_number(num):
            continue
        if not _attributable(num):
            continue
        checked += 1
        dest = table.lookup(f"{cc}{nsn}")
        expected = phonenumbers.region_code_for_number(num)
        if dest is None or dest.region != expected:
            mismatches.append(f"+{cc}{nsn}: table={dest and dest.region} phonenumbers={expected}")
    assert checked > 50
    assert not mismatches, "\n".join(mismatches[:20])


def test_generated_files_are_current() -> None:
    """The data must be what the generator produces from the installed phonenumbers."""
    res = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen_numbering.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stderr


def test_random_valid_numbers_under_each_split_row(table: DestinationTable) -> None:
    """Uniform sampling almost never lands in narrow ranges such as Vatican City or the
    Cocos Islands, so also sample completions of every sub-range row."""
    rng = random.Random(7)
    checked = 0
    mismatches: list[str] = []
    for row in table:
        cc = int(row.country_code)
        if row.prefix == row.country_code or row.region == "001":
            continue
        regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE[cc]
        lengths: set[int] = set()
        for r in regions:
            md = PhoneMetadata.metadata_for_region(r)
            assert md is not None and md.general_desc is not None
            lengths.update(md.general_desc.possible_length)
        head = row.prefix[len(row.country_code) :]
        for _ in range(100):
            n = rng.choice(sorted(lengths))
            if n <= len(head):
                continue
            nsn = head + "".join(rng.choice("0123456789") for _ in range(n - len(head)))
            num = phonenumbers.parse("+" + row.country_code + nsn)
            if not phonenumbers.is_valid_number(num) or not _attributable(num):
                continue
            checked += 1
            dest = table.lookup(row.country_code + nsn)
            expected = phonenumbers.region_code_for_number(num)
            if dest is None or dest.region != expected:
                got = dest and dest.region
                mismatches.append(f"+{row.country_code}{nsn}: table={got} phonenumbers={expected}")
    assert checked > 1000
    assert not mismatches, "\n".join(mismatches[:20])
