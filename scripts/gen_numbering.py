#!/usr/bin/env python3
"""Regenerate ``rules/numbering/destinations.csv`` and ``dialplans.yaml`` from ``phonenumbers``.

The numbering data is derived, never hand-typed, so that a ``phonenumbers`` upgrade is a
one-command refresh and reviewers can diff the result.  ``phonenumbers`` is a dev-only
dependency: the detector reads the generated files and never imports it at runtime.

Shared calling codes (+1, +7, +44, ...) are split into finer prefixes by replaying
libphonenumber's own region-resolution rule (``_region_code_for_number_from_list``) over the
*prefix tree* of each code instead of over single numbers: at every node we ask which
regions can still own some completion, and stop as soon as one region wins every valid
completion.  Patterns are walked as NFAs (tiny parser below) so the search is exact and,
thanks to memoisation on NFA state sets, takes about a second for the whole world.

Usage::

    .venv/bin/python scripts/gen_numbering.py            # writes rules/numbering/*
    .venv/bin/python scripts/gen_numbering.py --check    # exit 1 if files are stale
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import phonenumbers
import yaml
from phonenumbers import PhoneMetadata
from phonenumbers.carrierdata import CARRIER_DATA
from phonenumbers.geodata.locale import LOCALE_DATA

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "rules" / "numbering"
DIGITS = "0123456789"

# Regions libphonenumber has no English display name for.
MISSING_NAMES = {
    "AC": "Ascension Island",
    "TA": "Tristan da Cunha",
    "XK": "Kosovo",
}

# Non-geographic ("001") calling codes: ITU service names, since there is no country name.
NON_GEO_NAMES = {
    "800": "International Freephone (UIFN)",
    "808": "International Shared Cost Service",
    "870": "Inmarsat (satellite)",
    "878": "Universal Personal Telecommunications",
    "881": "Global Mobile Satellite System",
    "882": "International Networks",
    "883": "International Networks",
    "888": "OCHA Disaster Relief Telecommunications",
    "979": "International Premium Rate Service",
}

# Allocations libphonenumber does not model because no numbers are in service there, but
# that the ITU assigns to a non-main region; without them a fraudulent call to the range
# would be attributed to the main region.  Keep this list tiny and sourced.
ITU_OVERRIDES = {
    # +7 6xx is allocated to Kazakhstan (ITU-T E.164 Annex to OB 1114); libphonenumber
    # only knows +7 7xx because 6xx is not yet in service.
    "76": "KZ",
}

# Only these national lengths are attributed.  NANP numbers reached from outside a local
# area are always ten digits; Canada's seven-digit "310-xxxx" service numbers would
# otherwise carve Canadian rows out of Los Angeles' 310 area code.
SPLIT_LENGTHS = {1: frozenset({10})}

# The bare +1 row is also the fallback for NANP-wide ranges (8xx toll-free, 5xx personal,
# unassigned area codes), so its name must not pretend they are all in the US.
ROOT_NAMES = {"1": "United States / NANP"}

# Names that read better in a label than libphonenumber's CLDR-derived title case.
_LOWER_WORDS = ("And", "Of", "The", "Da", "De")


# --------------------------------------------------------------------------------------------
# A minimal regex -> NFA compiler for libphonenumber's pattern dialect.
#
# libphonenumber patterns only use digits, [classes], \d, (?:groups), |, ?, {n} and {n,m}.
# A private parser keeps us off ``re._parser`` (private, changes across Pythons) and makes
# any new syntax fail loudly instead of silently producing wrong prefixes.
# --------------------------------------------------------------------------------------------

Node = tuple[Any, ...]


class _Parser:
    def __init__(self, pattern: str) -> None:
        self.s = pattern
        self.i = 0

    def parse(self) -> Node:
        node = self._alt()
        if self.i != len(self.s):
            raise ValueError(f"unsupported pattern syntax at {self.i}: {self.s!r}")
        return node

    def _peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def _alt(self) -> Node:
        branches = [self._seq()]
        while self._peek() == "|":
            self.i += 1
            branches.append(self._seq())
        return ("alt", branches) if len(branches) > 1 else branches[0]

    def _seq(self) -> Node:
        items: list[Node] = []
        while self._peek() not in ("", "|", ")"):
            items.append(self._quantified(self._atom()))
        return ("seq", items)

    def _atom(self) -> Node:
        c = self._peek()
        if c == "(":
            if self.s.startswith("(?:", self.i):
                self.i += 3
            else:
                self.i += 1
            inner = self._alt()
            if self._peek() != ")":
                raise ValueError(f"unbalanced group in {self.s!r}")
            self.i += 1
            return inner
        if c == "[":
            end = self.s.index("]", self.i)
            body = self.s[self.i + 1 : end]
            self.i = end + 1
            chars: set[str] = set()
            j = 0
            while j < len(body):
                if body.startswith("\\d", j):
                    chars.update(DIGITS)
                    j += 2
                elif j + 2 < len(body) and body[j + 1] == "-":
                    chars.update(chr(k) for k in range(ord(body[j]), ord(body[j + 2]) + 1))
                    j += 3
                else:
                    chars.add(body[j])
                    j += 1
            if not chars <= set(DIGITS):
                raise ValueError(f"non-digit class in {self.s!r}")
            return ("set", frozenset(chars))
        if self.s.startswith("\\d", self.i):
            self.i += 2
            return ("set", frozenset(DIGITS))
        if c.isdigit():
            self.i += 1
            return ("set", frozenset(c))
        raise ValueError(f"unsupported pattern syntax {c!r} in {self.s!r}")

    def _quantified(self, atom: Node) -> Node:
        c = self._peek()
        if c == "?":
            self.i += 1
            return ("rep", atom, 0, 1)
        if c == "{":
            end = self.s.index("}", self.i)
            spec = self.s[self.i + 1 : end]
            self.i = end + 1
            lo, _, hi = spec.partition(",")
            if not hi and "," in spec:
                raise ValueError(f"unbounded repeat in {self.s!r}")
            return ("rep", atom, int(lo), int(hi) if hi else int(lo))
        if c in ("*", "+"):
            raise ValueError(f"unbounded repeat in {self.s!r}")
        return atom


@dataclass
class NFA:
    """Thompson NFA over digits; state 0 is the start, ``accept`` the single final state."""

    eps: list[list[int]] = field(default_factory=list)
    edges: list[list[tuple[frozenset[str], int]]] = field(default_factory=list)
    accept: int = -1

    def new(self) -> int:
        self.eps.append([])
        self.edges.append([])
        return len(self.eps) - 1

    def build(self, node: Node, start: int) -> int:
        kind = node[0]
        if kind == "set":
            end = self.new()
            self.edges[start].append((node[1], end))
            return end
        if kind == "seq":
            cur = start
            for item in node[1]:
                cur = self.build(item, cur)
            return cur
        if kind == "alt":
            end = self.new()
            for branch in node[1]:
                s = self.new()
                self.eps[start].append(s)
                self.eps[self.build(branch, s)].append(end)
            return end
        if kind == "rep":
            _, inner, lo, hi = node
            cur = start
            for _ in range(lo):
                cur = self.build(inner, cur)
            end = self.new()
            for _ in range(hi - lo):
                self.eps[cur].append(end)
                cur = self.build(inner, cur)
            self.eps[cur].append(end)
            return end
        raise AssertionError(kind)

    def closure(self, states: Iterable[int]) -> frozenset[int]:
        seen = set(states)
        stack = list(seen)
        while stack:
            for t in self.eps[stack.pop()]:
                if t not in seen:
                    seen.add(t)
                    stack.append(t)
        return frozenset(seen)

    def step(self, states: frozenset[int], digit: str) -> frozenset[int]:
        return self.closure(t for s in states for cs, t in self.edges[s] if digit in cs)


def metadata(region: str) -> PhoneMetadata:
    md = PhoneMetadata.metadata_for_region(region)
    if md is None or md.general_desc is None:
        raise SystemExit(f"phonenumbers has no metadata for region {region}")
    return md


@cache
def compile_nfa(pattern: str) -> NFA:
    nfa = NFA()
    start = nfa.new()
    nfa.accept = nfa.build(_Parser(pattern).parse(), start)
    return nfa


# --------------------------------------------------------------------------------------------
# Shared-code splitting: replay libphonenumber's region choice over the prefix tree.
# --------------------------------------------------------------------------------------------

FULL = "FULL"  # sentinel: a leading_digits pattern matched, region owns the whole subtree

_TYPE_DESCS = (
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "fixed_line",
    "mobile",
)


@dataclass(frozen=True)
class RegionMatcher:
    """How libphonenumber decides a number belongs to one region of a shared code.

    A region with ``leading_digits`` wins on a prefix match of that pattern alone; any
    other region wins when the number is valid for it (general desc and some number type).
    """

    region: str
    leading: NFA | None
    general: NFA | None
    typed: NFA | None

    @classmethod
    def for_region(cls, region: str) -> RegionMatcher:
        md = metadata(region)
        if md.leading_digits:
            return cls(region, compile_nfa(md.leading_digits), None, None)
        pats = [
            d.national_number_pattern
            for d in (getattr(md, name) for name in _TYPE_DESCS)
            if d is not None and d.national_number_pattern
        ]
        assert md.general_desc is not None
        general = md.general_desc.national_number_pattern
        return cls(
            region,
            None,
            compile_nfa(general) if general else None,
            compile_nfa("|".join(f"(?:{p})" for p in pats)) if pats else None,
        )


State = Any  # FULL | frozenset[int] | tuple[frozenset[int], frozenset[int]]


@dataclass
class Splitter:
    """Finds, for one shared calling code, the minimal prefix set that reproduces
    libphonenumber's region attribution for every valid number."""

    matchers: Sequence[RegionMatcher]
    # National number lengths worth attributing; None means all of them.
    lengths: frozenset[int] | None = None
    memo: dict[tuple[int, tuple[State, ...]], tuple[str | None, dict[str, str]]] = field(
        default_factory=dict
    )

    def initial(self) -> tuple[State, ...]:
        out: list[State] = []
        for m in self.matchers:
            if m.leading is not None:
                out.append(m.leading.closure([0]))
            elif m.general is not None and m.typed is not None:
                out.append((m.general.closure([0]), m.typed.closure([0])))
            else:
                out.append(frozenset())
        return tuple(out)

    def _step(self, key: tuple[State, ...], digit: str) -> tuple[State, ...]:
        out: list[State] = []
        decided = False
        for m, st in zip(self.matchers, key, strict=True):
            if decided:
                out.append(frozenset())  # an earlier region owns everything from here on
            elif st == FULL:
                out.append(FULL)
                decided = True
            elif m.leading is not None:
                nxt = m.leading.step(st, digit)
                if m.leading.accept in nxt:
                    out.append(FULL)
                    decided = True
                else:
                    out.append(nxt)
            elif isinstance(st, tuple):
                assert m.general is not None and m.typed is not None
                out.append((m.general.step(st[0], digit), m.typed.step(st[1], digit)))
            else:
                out.append(frozenset())
        return tuple(out)

    @staticmethod
    def _alive(st: State) -> bool:
        if st == FULL:
            return True
        if isinstance(st, tuple):
            return bool(st[0]) and bool(st[1])
        return bool(st)

    def _terminal_winner(self, key: tuple[State, ...], depth: int) -> str | None:
        if self.lengths is not None and depth not in self.lengths:
            return None
        for m, st in zip(self.matchers, key, strict=True):
            if st == FULL:
                return m.region
            if isinstance(st, tuple):
                assert m.general is not None and m.typed is not None
                if m.general.accept in st[0] and m.typed.accept in st[1]:
                    return m.region
        return None

    def solve(self, key: tuple[State, ...], depth: int) -> tuple[str | None, dict[str, str]]:
        """Return (default region of this subtree, {relative longer prefix: region})."""
        cached = self.memo.get((depth, key))
        if cached is not None:
            return cached
        alive = [m.region for m, st in zip(self.matchers, key, strict=True) if self._alive(st)]
        if self.lengths is not None and depth > max(self.lengths):
            alive = []
        if not alive:
            result: tuple[str | None, dict[str, str]] = (None, {})
        elif key[self._index(alive[0])] == FULL or (len(alive) == 1 and self.lengths is None):
            # With a length filter a lone live region may still have no completion of a
            # wanted length, so that case is left to the recursion (memoised, so cheap).
            result = (alive[0], {})
        else:
            result = self._merge(key, depth, None)
        self.memo[(depth, key)] = result
        return result

    def _index(self, region: str) -> int:
        return next(i for i, m in enumerate(self.matchers) if m.region == region)

    def _merge(
        self, key: tuple[State, ...], depth: int, forced: str | None
    ) -> tuple[str | None, dict[str, str]]:
        children = {d: self.solve(self._step(key, d), depth + 1) for d in DIGITS}
        votes: Counter[str] = Counter(r for r, _ in children.values() if r is not None)
        terminal = self._terminal_winner(key, depth)
        if terminal is not None:
            votes[terminal] += 1
        if forced is not None:
            default: str | None = forced
        elif votes:
            order = {m.region: i for i, m in enumerate(self.matchers)}
            default = min(votes, key=lambda r: (-votes[r], order[r]))
        else:
            default = None
        overrides: dict[str, str] = {}
        for d, (region, sub) in children.items():
            if region is not None and region != default:
                overrides[d] = region
            for suffix, r in sub.items():
                overrides[d + suffix] = r
        return default, overrides

    def split(self, main: str) -> dict[str, str]:
        return self._merge(self.initial(), 0, main)[1]


# --------------------------------------------------------------------------------------------
# Output assembly
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Row:
    prefix: str
    country_code: str
    region: str
    name: str


def region_name(region: str) -> str:
    entry = LOCALE_DATA.get(region, {})
    name: str = entry.get("en", "")
    if name.startswith("*"):  # "*xx" means "same as language xx"
        name = entry.get(name[1:], "")
    name = name or MISSING_NAMES.get(region, "")
    if not name:
        raise SystemExit(f"no English name for region {region}; add it to MISSING_NAMES")
    words = name.split(" ")
    return " ".join(w.lower() if i > 0 and w in _LOWER_WORDS else w for i, w in enumerate(words))


def shared_code_rows(cc: int, regions: Sequence[str]) -> list[Row]:
    main = regions[0]
    matchers = [RegionMatcher.for_region(r) for r in regions]
    overrides = Splitter(matchers, SPLIT_LENGTHS.get(cc)).split(main)
    code = str(cc)
    for suffix, region in ITU_OVERRIDES.items():
        if suffix.startswith(code):
            overrides[suffix[len(code) :]] = region
    rows = [Row(code, code, main, ROOT_NAMES.get(code, region_name(main)))]
    rows += [Row(code + s, code, r, region_name(r)) for s, r in overrides.items()]
    return rows


def non_geo_rows(cc: int) -> list[Row]:
    code = str(cc)
    base = NON_GEO_NAMES.get(code, f"Non-geographic (+{code})")
    rows = [Row(code, code, "001", base)]
    # Satellite systems and international networks are the classic IRSF targets, so keep
    # the per-operator ranges libphonenumber's carrier data knows about.
    for prefix, names in CARRIER_DATA.items():
        if prefix.startswith(code) and len(prefix) > len(code) and "en" in names:
            carrier = names["en"]
            if carrier.islower():
                carrier = carrier.title()
            rows.append(Row(prefix, code, "001", f"{base}: {carrier}"))
    return rows


def build_rows() -> list[Row]:
    rows: list[Row] = []
    for cc, regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items():
        if regions == ("001",):
            rows += non_geo_rows(cc)
        elif len(regions) == 1:
            rows.append(Row(str(cc), str(cc), regions[0], region_name(regions[0])))
        else:
            rows += shared_code_rows(cc, regions)
    rows.sort(key=lambda r: (r.prefix, r.region))
    prefixes = [r.prefix for r in rows]
    if len(prefixes) != len(set(prefixes)):
        raise SystemExit("duplicate prefixes generated")
    return rows


def render_csv(rows: Sequence[Row]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["prefix", "country_code", "region", "name"])
    for r in rows:
        w.writerow([r.prefix, r.country_code, r.region, r.name])
    return buf.getvalue()


# Dial-plan specs: only the choices libphonenumber cannot make for us.  Prefixes and
# national lengths are read from its metadata so they follow upstream changes.
PLAN_SPECS: dict[str, dict[str, Any]] = {
    "E164": {},
    "JP": {
        "region": "JP",
        # Carrier-select codes followed by 010 (KDDI 001, NTT Com 0033, SoftBank 0041,
        # 0061): a PBX that blocks only 010 is a classic bypass route, so recognise them.
        "extra_international_prefixes": ["001010", "0033010", "0041010", "0061010"],
    },
    "NANP": {
        "region": "US",
        "domestic_regions": ["US", "CA"],
        # Ten-digit dialling (no leading 1) is the norm for local and toll calls.
        "bare_national": True,
    },
    "GB": {"region": "GB"},
    "DE": {"region": "DE"},
    "FR": {"region": "FR"},
}


def build_dial_plans() -> dict[str, Any]:
    plans: dict[str, Any] = {}
    for name, spec in PLAN_SPECS.items():
        if "region" not in spec:
            plans[name] = {
                "country_code": None,
                "international_prefixes": ["00"],
                "trunk_prefix": None,
                "domestic_regions": [],
                "national_number_lengths": None,
                "bare_national": False,
            }
            continue
        region = spec["region"]
        md = metadata(region)
        desc = md.general_desc
        assert desc is not None
        intl = md.preferred_international_prefix or md.international_prefix
        if not intl or not intl.isdigit():
            raise SystemExit(f"{region}: international prefix {intl!r} is not a plain string")
        plans[name] = {
            "country_code": str(md.country_code),
            "international_prefixes": [intl, *spec.get("extra_international_prefixes", [])],
            "trunk_prefix": md.national_prefix,
            "domestic_regions": spec.get("domestic_regions", [region]),
            "national_number_lengths": sorted(desc.possible_length),
            "bare_national": spec.get("bare_national", False),
        }
    return plans


def render_yaml(plans: dict[str, Any]) -> str:
    header = (
        "# Generated by scripts/gen_numbering.py from phonenumbers "
        f"{phonenumbers.__version__}; edit PLAN_SPECS there, not this file.\n"
        "# E164 has no home country: only '+' or '00' international numbers normalise,\n"
        "# and every destination is international.\n"
    )
    body = yaml.safe_dump({"dial_plans": plans}, sort_keys=False, default_flow_style=None)
    return header + body


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--out", type=Path, default=OUT_DIR)
    ap.add_argument("--check", action="store_true", help="fail if the files are stale")
    args = ap.parse_args(argv)
    outputs = {
        "destinations.csv": render_csv(build_rows()),
        "dialplans.yaml": render_yaml(build_dial_plans()),
    }
    stale = False
    for fname, text in outputs.items():
        path: Path = args.out / fname
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale = True
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path} ({text.count(chr(10))} lines)")
    if args.check and stale:
        print("numbering data is stale: run scripts/gen_numbering.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
