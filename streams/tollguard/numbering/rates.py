"""Rate table and high-risk hot list: the numbering data the rules price and filter by.

Both are read once at start-up from ``rules/numbering/`` (``rates.csv``, ``hotlist.csv``)
and are immutable afterwards. Lookups are longest-prefix on E.164 numbers, with or
without the leading ``+``.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tollguard.numbering.plan import default_rules_dir

# Amounts are kept as integers of 1/MICRO of the currency unit, so window sums
# never drift the way float sums do.
MICRO = 1_000_000


class RateTable:
    """Per-minute rates by destination prefix, longest prefix wins."""

    __slots__ = ("_cache", "_default", "_head", "_lengths", "_rates")

    def __init__(self, rates: Mapping[str, float], default_per_minute: float = 0.0) -> None:
        table: dict[str, int] = {}
        for prefix, rate in rates.items():
            p = prefix.lstrip("+")
            if not (p.isascii() and p.isdigit() and 1 <= len(p) <= 15):
                raise ValueError(f"rate prefix {prefix!r} is not E.164 digits")
            if not rate >= 0:
                raise ValueError(f"rate for {prefix!r} must be 0 or more")
            table[p] = round(rate * MICRO)
        self._rates = table
        self._lengths = tuple(sorted({len(p) for p in table}, reverse=True))
        self._default = round(default_per_minute * MICRO)
        # Answers by the number's first digits (as long as the longest prefix):
        # one slice and one probe per call once a range has been seen.
        self._head = max(self._lengths, default=0)
        self._cache: dict[str, int] = {}

    def per_minute(self, e164: str) -> int:
        """Micro-units per minute for a number; the default rate if no prefix matches."""
        digits = e164[1:] if e164[:1] == "+" else e164
        head = digits[: self._head]
        cache = self._cache
        found = cache.get(head)
        if found is not None:
            return found
        rate = self._default
        rates = self._rates
        for n in self._lengths:
            hit = rates.get(head[:n])
            if hit is not None:
                rate = hit
                break
        if len(cache) >= 65_536:
            cache.clear()
        cache[head] = rate
        return rate

    def with_overrides(self, rates: Mapping[str, float], default: float | None) -> RateTable:
        merged = {p: r / MICRO for p, r in self._rates.items()}
        merged.update({p.lstrip("+"): r for p, r in rates.items()})
        return RateTable(merged, self._default / MICRO if default is None else default)

    def __len__(self) -> int:
        return len(self._rates)

    def __iter__(self) -> Iterable[tuple[str, int]]:
        return iter(self._rates.items())

    @classmethod
    def from_csv(cls, path: str | os.PathLike[str]) -> RateTable:
        rates: dict[str, float] = {}
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if tuple(reader.fieldnames or ()) != ("prefix", "per_minute"):
                raise ValueError(f"{path}: expected columns prefix,per_minute")
            for rec in reader:
                prefix = rec["prefix"].strip()
                if prefix in rates:
                    raise ValueError(f"{path}: duplicate rate prefix {prefix!r}")
                rates[prefix] = float(rec["per_minute"])
        return cls(rates)

    @classmethod
    def load_default(cls) -> RateTable:
        return cls.from_csv(default_rules_dir() / "numbering" / "rates.csv")


@dataclass(frozen=True, slots=True)
class HotEntry:
    prefix: str  # E.164 digits, no '+'
    region: str
    reason: str


def load_hot_list(path: str | os.PathLike[str] | None = None) -> tuple[HotEntry, ...]:
    """High-risk ranges (``hotlist.csv``): prefix, region, why it is listed."""
    path = path or default_rules_dir() / "numbering" / "hotlist.csv"
    out: list[HotEntry] = []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != ("prefix", "region", "reason"):
            raise ValueError(f"{path}: expected columns prefix,region,reason")
        for rec in reader:
            prefix = rec["prefix"].strip()
            if not (prefix.isascii() and prefix.isdigit()):
                raise ValueError(f"{path}: hot-list prefix {prefix!r} is not digits")
            out.append(HotEntry(prefix, rec["region"].strip(), rec["reason"].strip()))
    return tuple(out)
