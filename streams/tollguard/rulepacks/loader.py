"""Rule packs: YAML text to a validated `RulePack`, or every error with its line.

An analyst editing a pack needs all the mistakes at once, each as
file:line: reason, and a running worker must never swap in a pack that fails,
so loading either returns a complete pack or raises with the full list.

Validation has two stages. First the published JSON Schema
(`rules/schema.json`, checked with `jsonschema`): structure, types, names,
enums. Then semantic checks the schema cannot express: durations, warning
below critical, known time zones and dial plans, fields that only some kinds
take. Every error is mapped back to the YAML line of the value it is about.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jsonschema
import yaml

from tollguard.engine.kinds.distinct import RANGES, DistinctParams
from tollguard.engine.kinds.live import LiveParams
from tollguard.engine.kinds.new_destination import NewDestinationParams
from tollguard.engine.kinds.spend import SpendParams
from tollguard.engine.rules import (
    CONCURRENT,
    COUNT,
    DISTINCT,
    LONG_CALL,
    NEW_DESTINATION,
    SPEND,
    Limits,
    Match,
    Rule,
    RulePack,
)
from tollguard.engine.schedule import DAY_NAMES, Schedule, parse_hours
from tollguard.numbering import default_rules_dir, load_default_dial_plans
from tollguard.numbering.rates import RateTable, load_hot_list
from tollguard.signals.model import ENFORCE

MAX_PACK_BYTES = 1024 * 1024
_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|min|h|d)?\s*$")
_UNITS_MS = {
    "ms": 1,
    "s": 1000,
    None: 1000,
    "m": 60_000,
    "min": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
}

# Fields only some kinds take.
KIND_FIELDS: dict[str, frozenset[str]] = {
    "rates": frozenset({SPEND}),
    "default_rate": frozenset({SPEND}),
    "default_call": frozenset({SPEND}),
    "currency": frozenset({SPEND}),
    "of": frozenset({DISTINCT}),
    "range_digits": frozenset({DISTINCT}),
    "learn": frozenset({NEW_DESTINATION}),
    "max_destinations": frozenset({NEW_DESTINATION}),
    "release_timeout": frozenset({CONCURRENT, LONG_CALL}),
}


@dataclass(frozen=True, slots=True)
class PackProblem:
    source: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.message}"


class RulePackError(ValueError):
    def __init__(self, problems: list[PackProblem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


class _Node:
    """A YAML value with the line it came from (1-based)."""

    __slots__ = ("line", "value")

    def __init__(self, value: Any, line: int) -> None:
        self.value = value
        self.line = line


MAX_PACK_NODES = 100_000
# A real pack nests about six levels; hostile nesting would exhaust the recursive composer.
MAX_PACK_DEPTH = 64


class _Converter:
    """YAML nodes to `_Node` values, with a budget so alias bombs cannot expand."""

    def __init__(self) -> None:
        self.loader = yaml.SafeLoader("")
        self.budget = MAX_PACK_NODES

    def convert(self, node: yaml.Node) -> _Node:
        self.budget -= 1
        if self.budget < 0:
            raise ValueError(f"the pack expands to more than {MAX_PACK_NODES} values")
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            out: dict[str, _Node] = {}
            for key_node, value_node in node.value:
                out[str(key_node.value)] = self.convert(value_node)
            return _Node(out, line)
        if isinstance(node, yaml.SequenceNode):
            return _Node([self.convert(v) for v in node.value], line)
        value = self.loader.construct_object(node)
        if isinstance(value, date):
            value = value.isoformat()  # unquoted 2026-12-31 is a date to YAML
        return _Node(value, line)


def _plain(node: _Node) -> Any:
    if isinstance(node.value, dict):
        return {k: _plain(v) for k, v in node.value.items()}
    if isinstance(node.value, list):
        return [_plain(v) for v in node.value]
    return node.value


def _node_at(root: _Node, path: Sequence[Any]) -> _Node:
    node = root
    for part in path:
        value = node.value
        in_dict = isinstance(value, dict) and part in value
        in_list = isinstance(value, list) and isinstance(part, int) and part < len(value)
        if not (in_dict or in_list):
            break
        node = value[part]
    return node


def parse_duration_ms(value: Any) -> int | None:
    """'10m', '90s', '1h', 600 (seconds) to milliseconds; None if unreadable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value * 1000 if value > 0 else None
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m and int(m.group(1)) > 0:
            return int(m.group(1)) * _UNITS_MS[m.group(2)]
    return None


@cache
def pack_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((default_rules_dir() / "schema.json").read_text())
    return schema


@cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(pack_schema())


@cache
def _default_rates() -> RateTable:
    return RateTable.load_default()


@cache
def _hot_prefixes() -> tuple[str, ...]:
    return tuple("+" + h.prefix for h in load_hot_list())


@cache
def _dial_plan_names() -> frozenset[str]:
    return frozenset(load_default_dial_plans())


def _schema_message(error: jsonschema.ValidationError) -> tuple[list[Any], str]:
    path = list(error.absolute_path)
    where = "/".join(str(p) for p in path) or "the pack"
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        schema = error.schema if isinstance(error.schema, dict) else {}
        allowed = set(schema.get("properties", {}))
        extra = sorted(k for k in error.instance if k not in allowed)
        if extra:
            return [*path, extra[0]], f"unknown field {extra[0]!r} in {where}"
    if error.validator == "required":
        return path, f"{where}: {error.message}"
    custom = error.schema.get("x-message") if isinstance(error.schema, dict) else None
    if custom:
        return path, f"{where}: {error.instance!r} {custom}"
    if error.validator == "anyOf" and error.context:
        best = jsonschema.exceptions.best_match(error.context)
        if best is not None:
            return path, f"{where}: {error.instance!r} is not valid ({best.message})"
    return path, f"{where}: {error.message}"


class _Builder:
    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[PackProblem] = []

    def fail(self, node: _Node, message: str) -> None:
        self.problems.append(PackProblem(self.source, node.line, message))

    def duration(self, node: _Node, name: str) -> int:
        ms = parse_duration_ms(node.value)
        if ms is None:
            self.fail(node, f"{name} {node.value!r} is not a duration like 90s, 10m, 1h or 2d")
            return 0
        return ms

    def threshold(self, node: _Node | None, name: str, kind: str) -> float | None:
        if node is None or node.value is None:
            return None
        value = node.value
        if kind == LONG_CALL:
            ms = parse_duration_ms(value)
            if ms is None:
                self.fail(node, f"{name} of a long_call rule must be a duration like 2h")
                return None
            return ms / 1000
        if isinstance(value, str):
            self.fail(node, f"{name} must be a number (durations are for long_call rules)")
            return None
        if kind in (COUNT, DISTINCT, "repeat", NEW_DESTINATION, CONCURRENT) and value != int(value):
            self.fail(node, f"{name} must be a whole number of calls for a {kind} rule")
            return None
        return float(value)

    def limits(
        self, fields: dict[str, _Node], kind: str, base: Limits | None, what: str, anchor: _Node
    ) -> Limits:
        warning = self.threshold(fields.get("warning"), "warning", kind)
        critical = self.threshold(fields.get("critical"), "critical", kind)
        mode = str(fields["mode"].value) if "mode" in fields else ENFORCE
        enabled = bool(fields["enabled"].value) if "enabled" in fields else True
        if base is not None:
            if "warning" not in fields:
                warning = base.warning
            if "critical" not in fields:
                critical = base.critical
            if "mode" not in fields:
                mode = base.mode
        given = "warning" in fields or "critical" in fields  # an invalid one is reported already
        if warning is None and critical is None and enabled and not given:
            self.fail(anchor, f"{what} needs a warning or a critical threshold")
        if warning is not None and critical is not None and warning > critical:
            self.fail(fields.get("warning", anchor), f"{what}: warning must not be above critical")
        return Limits(warning, critical, mode, enabled)

    def rule(self, node: _Node) -> Rule | None:
        f: dict[str, _Node] = node.value
        rule_id = str(f["id"].value)
        kind = str(f["kind"].value) if "kind" in f else COUNT
        for name, kinds in KIND_FIELDS.items():
            if name in f and kind not in kinds:
                self.fail(f[name], f"field {name!r} does not apply to a {kind} rule")
        window = self.duration(f["window"], "window")
        limits = self.limits(f, kind, None, f"rule {rule_id!r}", node)
        ttl: int | None = 3_600_000
        if "ttl" in f:
            ttl_node = f["ttl"]
            ttl = None if ttl_node.value in (None, "none") else self.duration(ttl_node, "ttl")
        cooldown = 0
        if "cooldown" in f and f["cooldown"].value != 0:
            cooldown = self.duration(f["cooldown"], "cooldown")
        match = Match()
        if "match" in f:
            m: dict[str, _Node] = f["match"].value
            prefixes = tuple(str(p.value) for p in m.get("prefixes", _Node([], 0)).value)
            if m.get("hot_list") is not None and m["hot_list"].value:
                prefixes = tuple(dict.fromkeys(prefixes + _hot_prefixes()))
            excludes = tuple(str(p.value) for p in m.get("exclude_prefixes", _Node([], 0)).value)
            international = bool(m["international"].value) if "international" in m else True
            match = Match(international, prefixes, excludes)
        schedule = self.schedule(f["schedule"]) if "schedule" in f else None
        tenants = lines = None
        if "scope" in f:
            s: dict[str, _Node] = f["scope"].value
            if "tenants" in s:
                tenants = frozenset(str(v.value) for v in s["tenants"].value)
            if "lines" in s:
                lines = frozenset(str(v.value) for v in s["lines"].value)
        allow_lines: frozenset[str] = frozenset()
        allow_numbers: tuple[str, ...] = ()
        if "allow" in f:
            a: dict[str, _Node] = f["allow"].value
            if "lines" in a:
                allow_lines = frozenset(str(v.value) for v in a["lines"].value)
            if "numbers" in a:
                allow_numbers = tuple(str(v.value) for v in a["numbers"].value)
        line_limits: dict[str, Limits] = {}
        tenant_limits: dict[str, Limits] = {}
        if "overrides" in f:
            o: dict[str, _Node] = f["overrides"].value
            for key, target in (("tenants", tenant_limits), ("lines", line_limits)):
                for name, over in (o[key].value if key in o else {}).items():
                    target[name] = self.limits(
                        over.value, kind, limits, f"override {key}/{name}", over
                    )
        params = self.params(kind, f, window, limits, line_limits, tenant_limits)
        return Rule(
            id=rule_id,
            kind=kind,
            window_ms=window,
            limits=limits,
            ttl_ms=ttl,
            cooldown_ms=cooldown,
            block_scope=str(f["block_scope"].value) if "block_scope" in f else "international",
            description=str(f["description"].value) if "description" in f else "",
            match=match,
            schedule=schedule,
            tenants=tenants,
            lines=lines,
            allow_lines=allow_lines,
            allow_numbers=allow_numbers,
            line_limits=line_limits,
            tenant_limits=tenant_limits,
            params=params,
            max_events=int(f["max_events"].value) if "max_events" in f else 4096,
        )

    def params(
        self,
        kind: str,
        f: dict[str, _Node],
        window: int,
        limits: Limits,
        line_limits: dict[str, Limits],
        tenant_limits: dict[str, Limits],
    ) -> Any:
        if kind == SPEND:
            rates = _default_rates()
            inline = (
                {str(k): float(v.value) for k, v in f["rates"].value.items()}
                if "rates" in f
                else {}
            )
            default = float(f["default_rate"].value) if "default_rate" in f else None
            if inline or default is not None:
                rates = rates.with_overrides(inline, default)
            call_ms = (
                self.duration(f["default_call"], "default_call") if "default_call" in f else 60_000
            )
            currency = str(f["currency"].value) if "currency" in f else "USD"
            return SpendParams(rates, call_ms / 1000, currency)
        if kind == DISTINCT:
            of = str(f["of"].value) if "of" in f else "numbers"
            if "range_digits" in f and of != RANGES:
                self.fail(f["range_digits"], "range_digits only applies with of: ranges")
            digits = int(f["range_digits"].value) if "range_digits" in f else 3
            return DistinctParams(of, digits)
        if kind == NEW_DESTINATION:
            learn = self.duration(f["learn"], "learn") if "learn" in f else 7 * 86_400_000
            most = int(f["max_destinations"].value) if "max_destinations" in f else 64
            return NewDestinationParams(learn, most)
        if kind in (CONCURRENT, LONG_CALL):
            timeout = 4 * 3_600_000
            if "release_timeout" in f:
                timeout = self.duration(f["release_timeout"], "release_timeout")
            if kind == LONG_CALL:
                for lim in (limits, *line_limits.values(), *tenant_limits.values()):
                    if lim.top * 1000 >= timeout:
                        self.fail(
                            f.get("release_timeout", f["window"]),
                            "release_timeout must be longer than every long_call threshold",
                        )
                        break
            return LiveParams(timeout)
        return None

    def schedule(self, node: _Node) -> Schedule | None:
        s: dict[str, _Node] = node.value
        tz = str(s["timezone"].value)
        zone_ok = True
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            self.fail(s["timezone"], f"unknown IANA time zone {tz!r}")
            zone_ok = False
        hours: list[tuple[int, int]] = []
        if "hours" in s:
            items = s["hours"].value if isinstance(s["hours"].value, list) else [s["hours"]]
            for item in items:
                parsed = parse_hours(str(item.value))
                if parsed is None:
                    self.fail(item, f"hours {item.value!r} is not like 22:00-06:00")
                else:
                    hours.append(parsed)
        days = (
            frozenset(DAY_NAMES.index(str(d.value)) for d in s["days"].value)
            if "days" in s
            else frozenset(range(7))
        )
        all_day = frozenset(
            DAY_NAMES.index(str(d.value)) for d in s.get("all_day", _Node([], 0)).value
        )
        holidays: set[date] = set()
        for item in s.get("holidays", _Node([], 0)).value:
            try:
                holidays.add(date.fromisoformat(str(item.value)))
            except ValueError:
                self.fail(item, f"holiday {item.value!r} is not a date like 2026-12-31")
        if not zone_ok:
            return None
        return Schedule(tz, tuple(hours), days, all_day, frozenset(holidays))


def _check_depth(text: str) -> None:
    """Refuse nesting deeper than MAX_PACK_DEPTH before the (recursive) composer sees it."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_PACK_DEPTH:
                raise ValueError(f"the pack nests deeper than {MAX_PACK_DEPTH} levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def load_pack_text(text: str, source: str = "<rules>") -> RulePack:
    try:
        size = len(text.encode())
    except UnicodeEncodeError:
        raise RulePackError(
            [PackProblem(source, 1, "the pack is not valid Unicode text")]
        ) from None
    if size > MAX_PACK_BYTES:
        raise RulePackError([PackProblem(source, 1, f"pack is larger than {MAX_PACK_BYTES} bytes")])
    try:
        _check_depth(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except ValueError as exc:
        raise RulePackError([PackProblem(source, 1, str(exc))]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc)
        raise RulePackError([PackProblem(source, line, f"not valid YAML: {problem}")]) from None
    if root is None:
        raise RulePackError([PackProblem(source, 1, "the pack is empty")])
    try:
        top = _Converter().convert(root)
    except (ValueError, yaml.YAMLError) as exc:
        raise RulePackError([PackProblem(source, 1, str(exc))]) from None
    problems: list[PackProblem] = []
    for error in _validator().iter_errors(_plain(top)):
        path, message = _schema_message(error)
        problems.append(PackProblem(source, _node_at(top, path).line, message))
    if problems:
        problems.sort(key=lambda p: p.line)
        raise RulePackError(problems)
    build = _Builder(source)
    fields: dict[str, _Node] = top.value
    dial_plan = str(fields["dial_plan"].value) if "dial_plan" in fields else "E164"
    if dial_plan not in _dial_plan_names():
        known = ", ".join(sorted(_dial_plan_names()))
        build.fail(fields["dial_plan"], f"unknown dial plan {dial_plan!r}; known: {known}")
    rules: list[Rule] = []
    seen: set[str] = set()
    for item in fields["rules"].value:
        rule = build.rule(item)
        if rule is None:
            continue
        if rule.id in seen:
            build.fail(item.value["id"], f"rule id {rule.id!r} is used twice")
        seen.add(rule.id)
        rules.append(rule)
    if build.problems:
        raise RulePackError(sorted(build.problems, key=lambda p: p.line))
    return RulePack(
        name=str(fields["pack"].value),
        version=str(fields["version"].value),
        dial_plan=dial_plan,
        rules=tuple(rules),
    )


def load_pack(path: Path) -> RulePack:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RulePackError([PackProblem(str(path), 0, f"cannot read: {exc.strerror}")]) from None
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise RulePackError([PackProblem(str(path), 1, "the pack is not UTF-8 text")]) from None
    return load_pack_text(text, str(path))
