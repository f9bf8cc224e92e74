"""Rule packs: YAML text to a validated `RulePack`, or every error with its line.

An analyst editing a pack needs all the mistakes at once, each as
file:line: reason, and a running worker must never swap in a pack that fails,
so loading either returns a complete pack or raises with the full list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tollguard.engine.rules import SCOPE_KINDS, CountRule, RulePack
from tollguard.signals.model import ENFORCE, SHADOW

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
_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_PREFIX = re.compile(r"^\+\d{1,15}$")


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
        return _Node(self.loader.construct_object(node), line)


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


class _Checker:
    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[PackProblem] = []

    def fail(self, node: _Node, message: str) -> None:
        self.problems.append(PackProblem(self.source, node.line, message))

    def keys(self, node: _Node, allowed: set[str], required: set[str], what: str) -> bool:
        if not isinstance(node.value, dict):
            self.fail(node, f"{what} must be a mapping")
            return False
        for key, child in node.value.items():
            if key not in allowed:
                self.fail(child, f"unknown field {key!r} in {what}")
        for key in sorted(required - node.value.keys()):
            self.fail(node, f"{what} needs field {key!r}")
        return True

    def string(self, node: _Node, name: str, pattern: re.Pattern[str] | None = None) -> str:
        if not isinstance(node.value, str | int | float) or isinstance(node.value, bool):
            self.fail(node, f"{name} must be a string")
            return ""
        text = str(node.value)
        if pattern is not None and not pattern.match(text):
            self.fail(node, f"{name} {text!r} does not match {pattern.pattern}")
        return text

    def count(self, node: _Node | None, name: str) -> int | None:
        if node is None or node.value is None:
            return None
        if not isinstance(node.value, int) or isinstance(node.value, bool) or node.value < 1:
            self.fail(node, f"{name} must be a whole number of calls, 1 or more")
            return None
        return int(node.value)

    def duration(self, node: _Node, name: str) -> int:
        ms = parse_duration_ms(node.value)
        if ms is None:
            self.fail(node, f"{name} {node.value!r} is not a duration like 90s, 10m, 1h or 2d")
            return 0
        return ms


RULE_FIELDS = {
    "id",
    "kind",
    "description",
    "match",
    "window",
    "warning",
    "critical",
    "ttl",
    "mode",
    "block_scope",
}


def _count_rule(check: _Checker, node: _Node) -> CountRule | None:
    fields: dict[str, _Node] = node.value
    rule_id = check.string(fields["id"], "id", _ID) if "id" in fields else ""
    kind = fields.get("kind")
    if kind is not None and kind.value != "count":
        check.fail(kind, f"rule kind {kind.value!r} is not supported; known kinds: count")
        return None
    window = check.duration(fields["window"], "window") if "window" in fields else 0
    warning = check.count(fields.get("warning"), "warning")
    critical = check.count(fields.get("critical"), "critical")
    if warning is None and critical is None:
        check.fail(node, f"rule {rule_id!r} needs a warning or a critical threshold")
    if warning is not None and critical is not None and warning > critical:
        check.fail(fields["warning"], "warning must not be above critical")
    ttl: int | None = 3_600_000
    if "ttl" in fields:
        ttl_node = fields["ttl"]
        ttl = None if ttl_node.value in (None, "none") else check.duration(ttl_node, "ttl")
    mode = ENFORCE
    if "mode" in fields:
        mode = check.string(fields["mode"], "mode")
        if mode not in (ENFORCE, SHADOW):
            check.fail(fields["mode"], "mode must be enforce or shadow")
    scope = "international"
    if "block_scope" in fields:
        scope = check.string(fields["block_scope"], "block_scope")
        if scope not in SCOPE_KINDS:
            check.fail(
                fields["block_scope"], f"block_scope must be one of {', '.join(SCOPE_KINDS)}"
            )
    international = True
    prefixes: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()
    if "match" in fields:
        match = fields["match"]
        if check.keys(match, {"international", "prefixes", "exclude_prefixes"}, set(), "match"):
            m: dict[str, _Node] = match.value
            if "international" in m:
                if not isinstance(m["international"].value, bool):
                    check.fail(m["international"], "international must be true or false")
                else:
                    international = m["international"].value
            prefixes = _prefixes(check, m.get("prefixes"))
            excludes = _prefixes(check, m.get("exclude_prefixes"))
    return CountRule(
        id=rule_id,
        window_ms=window,
        warning=warning,
        critical=critical,
        ttl_ms=ttl,
        mode=mode,
        international_only=international,
        prefixes=prefixes,
        exclude_prefixes=excludes,
        block_scope=scope,
        description=str(fields["description"].value) if "description" in fields else "",
    )


def _prefixes(check: _Checker, node: _Node | None) -> tuple[str, ...]:
    if node is None:
        return ()
    if not isinstance(node.value, list):
        check.fail(node, "prefixes must be a list like ['+232', '+1242']")
        return ()
    return tuple(check.string(item, "prefix", _PREFIX) for item in node.value)


def load_pack_text(text: str, source: str = "<rules>") -> RulePack:
    check = _Checker(source)
    if len(text.encode()) > MAX_PACK_BYTES:
        raise RulePackError([PackProblem(source, 1, f"pack is larger than {MAX_PACK_BYTES} bytes")])
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
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
    if not check.keys(
        top, {"pack", "version", "dial_plan", "rules"}, {"pack", "version", "rules"}, "the pack"
    ):
        raise RulePackError(check.problems)
    fields: dict[str, _Node] = top.value
    name = check.string(fields["pack"], "pack", _ID) if "pack" in fields else ""
    version = check.string(fields["version"], "version") if "version" in fields else ""
    dial_plan = check.string(fields["dial_plan"], "dial_plan") if "dial_plan" in fields else "E164"
    rules: list[CountRule] = []
    seen: set[str] = set()
    rules_node = fields.get("rules")
    if rules_node is not None and not isinstance(rules_node.value, list):
        check.fail(rules_node, "rules must be a list")
    elif rules_node is not None:
        for item in rules_node.value:
            if not check.keys(item, RULE_FIELDS, {"id", "window"}, "a rule"):
                continue
            rule = _count_rule(check, item)
            if rule is None:
                continue
            if rule.id in seen:
                check.fail(item.value["id"], f"rule id {rule.id!r} is used twice")
            seen.add(rule.id)
            rules.append(rule)
    if check.problems:
        raise RulePackError(check.problems)
    return RulePack(name=name, version=version, dial_plan=dial_plan, rules=tuple(rules))


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
