"""Destination lookup and dial-plan normalisation for the detection core.

Every call event's number goes through a dial plan's normalisation and a destination lookup
(``EventParser`` spells both out, and skips the lookup where a plan's national numbers all
have one destination), so both are written for the hot path: one compiled regex for the
common national number, little allocation (that regex's match, or a couple of slices), and
no I/O (tables are loaded once at start-up from the generated files under
``rules/numbering``, see ``scripts/gen_numbering.py``).
"""

from __future__ import annotations

import csv
import importlib.resources
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from msgspec import Struct

__all__ = [
    "Destination",
    "DestinationTable",
    "DialPlan",
    "default_rules_dir",
    "load_default_dial_plans",
    "load_dial_plans",
]

RULES_DIR_ENV = "TOLLGUARD_RULES_DIR"
_DESTINATIONS_FILE = ("numbering", "destinations.csv")
_DIAL_PLANS_FILE = ("numbering", "dialplans.yaml")
_CSV_COLUMNS = ("prefix", "country_code", "region", "name")

# E.164 caps a number at 15 digits; fewer than 3 cannot even hold a country code plus a
# subscriber digit, so such strings are feature codes or typos, not destinations.
_MIN_DIGITS = 3
_MAX_DIGITS = 15


def default_rules_dir() -> Path:
    """Locate the ``rules/`` directory.

    Deployments point ``TOLLGUARD_RULES_DIR`` at their own (possibly customised) rules; an
    explicit setting is trusted as-is so a typo fails loudly instead of silently falling
    back.  Without it we look upwards from this file, which finds the repository's
    ``rules/`` in a source checkout or editable install, and finally try package data for a
    wheel that bundles the rules.
    """
    env = os.environ.get(RULES_DIR_ENV)
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "rules"
        if candidate.joinpath(*_DESTINATIONS_FILE).is_file():
            return candidate
    bundled = importlib.resources.files("tollguard").joinpath("rules")
    if bundled.is_dir():
        return Path(str(bundled))
    raise FileNotFoundError(
        f"cannot find the tollguard rules directory; set {RULES_DIR_ENV} to its path"
    )


class Destination(Struct, frozen=True, gc=False):
    """One row of the destination table: the unit that rules, counters and alerts are keyed
    on, so that a spike to "Jersey (+44 1534)" is not diluted into all of +44.

    A Struct without a collector header: a line's call legs hold their
    destination, and a tuple holding only untracked objects leaves the
    collector at its first look, where one holding a dataclass instance is
    walked by every collection for as long as the leg lives.
    """

    prefix: str
    country_code: str
    region: str
    name: str

    @property
    def label(self) -> str:
        """Human label; sub-ranges of a shared code show the range so analysts can tell
        e.g. the Bahamas (+1 242) from the rest of NANP at a glance."""
        cc = self.country_code
        if len(self.prefix) > len(cc):
            return f"{self.name} (+{cc} {self.prefix[len(cc) :]})"
        return f"{self.name} (+{cc})"


# A head whose answer depends on digits past the head: (longer prefix lengths, longest
# first; rows with those prefixes keyed with their "+"; answer if none of them matches).
_Deep = tuple[tuple[int, ...], dict[str, Destination], Destination | None]

# Digits covered by the head index.  Four resolves every country code and most sub-ranges
# (NANP area codes are 1+3 digits) in one probe while keeping the index at ~11k entries.
_HEAD_DIGITS = 4
_HEAD = 1 + _HEAD_DIGITS  # with the "+"


class DestinationTable:
    """Longest-prefix destination lookup over E.164 numbers.

    Every possible head ("+" and up to 4 digits) is pre-resolved at load time, so a
    typical lookup is one slice and one dict probe.  Only heads under which longer
    prefixes exist (+44 7700 9xx, Cocos/Christmas Island ranges, +1 800 1, ...) probe
    their own short list of longer lengths.  Rows need not be prefix-free or grouped by
    country code: plain longest-prefix semantics hold for any set of prefixes.
    """

    __slots__ = ("_deep", "_direct", "_rows")

    def __init__(self, rows: Iterable[Destination]) -> None:
        by_prefix: dict[str, Destination] = {}
        for row in rows:
            _validate_row(row)
            if row.prefix in by_prefix:
                raise ValueError(f"duplicate destination prefix {row.prefix!r}")
            by_prefix[row.prefix] = row
        self._rows: tuple[Destination, ...] = tuple(by_prefix.values())
        self._direct: dict[str, Destination] = {}  # heads that decide alone
        self._deep: dict[str, _Deep] = {}
        longer: dict[str, list[Destination]] = {}
        for row in self._rows:
            if len(row.prefix) > _HEAD_DIGITS:
                longer.setdefault(row.prefix[:_HEAD_DIGITS], []).append(row)
        for head in _all_digit_strings(_HEAD_DIGITS):
            best = next(
                (by_prefix[head[:n]] for n in range(len(head), 0, -1) if head[:n] in by_prefix),
                None,
            )
            deeper = longer.get(head) if len(head) == _HEAD_DIGITS else None
            if deeper:
                sub = {"+" + r.prefix: r for r in deeper}
                lengths = tuple(sorted({len(k) for k in sub}, reverse=True))
                self._deep["+" + head] = (lengths, sub, best)
            elif best is not None:
                self._direct["+" + head] = best

    def lookup(self, e164: str) -> Destination | None:
        """Destination for an E.164 number; ``+`` form is the fast path.

        ``"+232761234"`` is what ``DialPlan.normalize`` emits, so the index is keyed on it
        and such a lookup is one slice and one dict probe.  Bare digits (``"232761234"``,
        as some CDRs and Kafka keys carry) are accepted too, at the price of one string
        concatenation and a second probe.  Input is expected to be normalised already:
        a non-digit among the first characters simply misses and returns ``None``.
        """
        head = e164[:_HEAD]
        hit = self._direct.get(head)
        if hit is not None:
            return hit
        deep = self._deep.get(head)
        if deep is None:
            if e164 and e164[0] != "+":
                return self.lookup("+" + e164)
            return None
        lengths, sub, best = deep
        for n in lengths:
            found = sub.get(e164[:n])
            if found is not None:
                return found
        return best

    def sole(self, prefix: str) -> Destination | None:
        """The destination of every number under ``prefix`` (digits), if it is one row.

        None when longer prefixes split the range (+1 into NANP countries, +44
        into Jersey, Guernsey, ...) or no row covers it. Lets the event parser
        place a national number without a lookup: for most dial plans every
        one of them is the home country's row.
        """
        if any(r.prefix.startswith(prefix) and len(r.prefix) > len(prefix) for r in self._rows):
            return None
        return self.lookup("+" + prefix)

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[Destination]:
        return iter(self._rows)

    @classmethod
    def from_csv(cls, path: str | os.PathLike[str]) -> DestinationTable:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if tuple(reader.fieldnames or ()) != _CSV_COLUMNS:
                raise ValueError(f"{path}: expected columns {','.join(_CSV_COLUMNS)}")
            rows = [
                Destination(
                    prefix=rec["prefix"].strip(),
                    country_code=rec["country_code"].strip(),
                    region=rec["region"].strip(),
                    name=rec["name"].strip(),
                )
                for rec in reader
            ]
        try:
            return cls(rows)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc

    @classmethod
    def load_default(cls) -> DestinationTable:
        """Load the shipped table; read once at start-up, the result is immutable."""
        return cls.from_csv(default_rules_dir().joinpath(*_DESTINATIONS_FILE))


def _all_digit_strings(max_len: int) -> Iterator[str]:
    frontier = [""]
    for _ in range(max_len):
        frontier = [s + d for s in frontier for d in "0123456789"]
        yield from frontier


def _validate_row(row: Destination) -> None:
    if not (row.prefix.isascii() and row.prefix.isdigit()):
        raise ValueError(f"prefix {row.prefix!r} is not E.164 digits (no '+')")
    cc = row.country_code
    if not (cc.isascii() and cc.isdigit() and 1 <= len(cc) <= 3 and cc[0] != "0"):
        raise ValueError(f"bad country code {cc!r} for prefix {row.prefix!r}")
    if not row.prefix.startswith(cc):
        raise ValueError(f"prefix {row.prefix!r} does not start with country code {cc!r}")
    if not row.region or not row.name:
        raise ValueError(f"prefix {row.prefix!r} lacks a region or name")


def _international(digits: str) -> str | None:
    if _MIN_DIGITS <= len(digits) <= _MAX_DIGITS and digits[0] != "0":
        return "+" + digits
    return None


@dataclass(frozen=True, slots=True)
class DialPlan:
    """How a given switch/PBX population dials, so raw dialled strings become E.164.

    Normalisation is deliberately strict: anything that cannot be turned into an
    unambiguous E.164 number returns ``None`` rather than a guess, because a guessed
    country is worse than "unknown" when deciding whether a call is fraud.
    """

    name: str
    country_code: str | None
    international_prefixes: tuple[str, ...]
    trunk_prefix: str | None = None
    domestic_regions: frozenset[str] = field(default_factory=frozenset)
    national_number_lengths: frozenset[int] = field(default_factory=frozenset)
    # Whether national numbers may be dialled without the trunk prefix (NANP ten-digit
    # dialling).  Elsewhere digits without a prefix are local or service numbers whose
    # area we cannot know.
    bare_national: bool = False
    # International prefixes by their first `_lead` digits: a domestic number
    # (most calls) is ruled out with one dict probe.
    _lead: int = field(default=0, init=False, repr=False, compare=False)
    _by_lead: dict[str, tuple[str, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    # A national number in its usual form, matched in one call (its national
    # significant number in group 1; None where the plan has no such form), and
    # what goes before that in E.164. Public for the event parser, whose loop
    # over an envelope calls the match itself (see `EventParser._unresolved`).
    national_match: Callable[[str], re.Match[str] | None] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    national_lead: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Longest first so that a carrier-select form such as JP "0033010" wins over any
        # shorter prefix it happens to start with.
        ordered = tuple(sorted(self.international_prefixes, key=len, reverse=True))
        object.__setattr__(self, "international_prefixes", ordered)
        lead = min((len(p) for p in ordered), default=0)
        by_lead: dict[str, tuple[str, ...]] = {}
        for p in ordered:
            by_lead[p[:lead]] = (*by_lead.get(p[:lead], ()), p)
        object.__setattr__(self, "_lead", lead)
        object.__setattr__(self, "_by_lead", by_lead)
        for p in (*ordered, self.trunk_prefix or "0", self.country_code or "1"):
            if not (p.isascii() and p.isdigit()):
                raise ValueError(f"dial plan {self.name}: {p!r} is not a digit string")
        pattern = self._national_pattern()
        if pattern is not None:
            object.__setattr__(self, "national_match", re.compile(pattern).fullmatch)
            object.__setattr__(self, "national_lead", "+" + str(self.country_code))

    def _national_pattern(self) -> str | None:
        """What `normalize` turns into "+" + country code + group 1, as one regex.

        Most calls are national, and the step-by-step rules cost 0.9-1.6 us
        for one in Python where this regex takes ~0.4 (measured); tests hold
        the two to the same answers. Anything it does not match takes the rules.
        """
        cc, trunk = self.country_code, self.trunk_prefix
        if not cc or cc[0] == "0" or not (trunk or self.bare_national):
            return None
        fits = range(max(1, _MIN_DIGITS - len(cc)), _MAX_DIGITS - len(cc) + 1)
        lengths = sorted(
            n for n in fits if not self.national_number_lengths or n in self.national_number_lengths
        )
        if not lengths:
            return None
        runs: list[list[int]] = []
        for n in lengths:
            if runs and runs[-1][1] == n - 1:
                runs[-1][1] = n
            else:
                runs.append([n, n])
        digits = "|".join(f"[0-9]{{{a},{b}}}" for a, b in runs)
        # Both forms below refuse a string that starts with the trunk prefix
        # twice, so an international prefix that does ("00..." where the trunk
        # prefix is "0") needs no lookahead of its own: JP's plan had five.
        doubled = trunk * 2 if trunk else None
        not_intl = "".join(
            f"(?!{re.escape(p)})"
            for p in self.international_prefixes
            if doubled is None or not p.startswith(doubled)
        )
        forms = []
        if trunk:
            forms.append(f"{re.escape(trunk)}(?!{re.escape(trunk)})")
        if self.bare_national:
            forms.append(f"(?!{re.escape(trunk)})" if trunk else "")
        return f"{not_intl}(?:{'|'.join(forms)})((?:{digits}))"

    def normalize(self, dialled: str) -> str | None:
        """E.164 with a leading ``+`` for a dialled string, or ``None`` if not a number.

        Dialled strings that start with the trunk prefix twice (JP/GB "00...", which is not
        an international prefix in Japan, or NANP "11...") are carrier or service codes;
        no national significant number starts with the trunk digit, so they are rejected.
        """
        national = self.national_match
        if national is not None:
            found = national(dialled)
            if found is not None:
                return self.national_lead + found[1]
        return self.normalize_by_rules(dialled)

    def normalize_by_rules(self, dialled: str) -> str | None:
        """`normalize` step by step, without the one-regex shortcut for national numbers."""
        # Non-ASCII is rejected outright: str.isdigit() accepts e.g. Arabic-Indic and
        # superscript digits, which no switch sends and int() would happily misread.
        if not dialled.isascii():
            return None
        s = dialled
        if not s.isdigit():  # fast path: CDRs mostly carry bare digits
            if s[:1] == "+" and s[1:].isdigit():  # SIP and most CDRs: already E.164
                return _international(s[1:])
            s = (
                s.replace(" ", "")
                .replace("-", "")
                .replace(".", "")
                .replace("(", "")
                .replace(")", "")
            )
            if s[:1] == "+":
                s = s[1:]
                return _international(s) if s.isdigit() else None
            if not s.isdigit():
                return None
        for prefix in self._by_lead.get(s[: self._lead], ()):
            if s.startswith(prefix):
                return _international(s[len(prefix) :])
        cc = self.country_code
        if cc is None:
            return None
        trunk = self.trunk_prefix
        if trunk and s.startswith(trunk):
            nsn = s[len(trunk) :]
            if nsn.startswith(trunk):
                return None
        elif self.bare_national:
            nsn = s
        else:
            return None
        if not nsn:
            return None
        lengths = self.national_number_lengths
        if lengths and len(nsn) not in lengths:
            return None
        return _international(cc + nsn)

    def is_international(self, dest: Destination) -> bool:
        """Whether a call to ``dest`` leaves this plan's domestic area.

        Decided by region rather than calling code, because sharing +1 does not make the
        Bahamas domestic for a US PBX: those calls are billed, and abused, as international.
        """
        return dest.region not in self.domestic_regions


def load_dial_plans(path: str | os.PathLike[str]) -> dict[str, DialPlan]:
    """Parse a dial-plan YAML file (``dial_plans: {NAME: {...}}``) into plans by name."""
    with open(path, encoding="utf-8") as fh:
        doc = yaml.safe_load(fh)
    if not isinstance(doc, Mapping) or not isinstance(doc.get("dial_plans"), Mapping):
        raise ValueError(f"{path}: expected a top-level 'dial_plans' mapping")
    plans: dict[str, DialPlan] = {}
    for name, spec in doc["dial_plans"].items():
        try:
            plans[str(name)] = _plan_from_spec(str(name), spec)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: dial plan {name}: {exc}") from exc
    return plans


def load_default_dial_plans() -> dict[str, DialPlan]:
    return load_dial_plans(default_rules_dir().joinpath(*_DIAL_PLANS_FILE))


def _str_list(value: Any, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"{key} must be a list of strings")
    return list(value)


def _plan_from_spec(name: str, spec: Any) -> DialPlan:
    if not isinstance(spec, Mapping):
        raise TypeError("must be a mapping")
    known = {
        "country_code",
        "international_prefixes",
        "trunk_prefix",
        "domestic_regions",
        "national_number_lengths",
        "bare_national",
    }
    unknown = set(spec) - known
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}")
    cc = spec.get("country_code")
    if cc is not None:
        cc = str(cc)  # YAML may read an unquoted 81 as int
    trunk = spec.get("trunk_prefix")
    if trunk is not None:
        trunk = str(trunk)
    intl = _str_list(spec.get("international_prefixes", []), "international_prefixes")
    if "domestic_regions" in spec:
        domestic = _str_list(spec["domestic_regions"], "domestic_regions")
    elif cc is None:
        domestic = []
    elif len(name) == 2 and name.isalpha() and name.isupper():
        domestic = [name]  # a plan named after its region is domestic to that region
    else:
        raise ValueError("domestic_regions is required when the plan name is not a region")
    raw_lengths = spec.get("national_number_lengths") or []
    if not isinstance(raw_lengths, list) or not all(
        isinstance(n, int) and not isinstance(n, bool) for n in raw_lengths
    ):
        raise TypeError("national_number_lengths must be a list of integers")
    bare = spec.get("bare_national", False)
    if not isinstance(bare, bool):
        raise TypeError("bare_national must be true or false")
    return DialPlan(
        name=name,
        country_code=cc,
        international_prefixes=tuple(intl),
        trunk_prefix=trunk,
        domestic_regions=frozenset(domestic),
        national_number_lengths=frozenset(raw_lengths),
        bare_national=bare,
    )
