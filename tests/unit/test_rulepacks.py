"""Rule-pack validation: the published JSON Schema, semantic checks, file:line errors, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from tollguard.cli.main import main
from tollguard.engine.rules import RULE_KINDS
from tollguard.rulepacks import RulePackError, load_pack, load_pack_text

REPO = Path(__file__).resolve().parents[2]


def problems(text: str) -> list[str]:
    with pytest.raises(RulePackError) as info:
        load_pack_text(text, "p.yaml")
    return [str(p) for p in info.value.problems]


def test_schema_is_a_valid_json_schema_and_accepts_every_shipped_pack() -> None:
    schema = json.loads((REPO / "rules" / "schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    for path in (REPO / "rules").glob("*.yaml"):
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)
        load_pack(path)


def test_schema_lists_every_rule_kind() -> None:
    schema = json.loads((REPO / "rules" / "schema.json").read_text())
    assert tuple(schema["$defs"]["rule"]["properties"]["kind"]["enum"]) == RULE_KINDS


def test_default_pack_uses_every_rule_kind_and_comments_each_rule() -> None:
    pack = load_pack(REPO / "rules" / "default.yaml")
    assert {r.kind for r in pack.rules} == set(RULE_KINDS)
    lines = (REPO / "rules" / "default.yaml").read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("  - id: "):
            assert lines[i - 1].lstrip().startswith("#"), f"rule at line {i + 1} has no comment"
            assert "Targets" in "\n".join(lines[max(0, i - 8) : i]), f"line {i + 1}"


BAD = """\
pack: bad
version: 1
dial_plan: XX
rules:
  - id: a
    kind: spend
    window: 10q
    warning: 5
    bogus: 1
  - id: B!
    window: 1h
"""


def test_schema_errors_all_reported_with_their_lines() -> None:
    assert problems(BAD) == [
        "p.yaml:7: rules/0/window: '10q' is not a duration like 90s, 10m, 1h or 2d"
        " (a bare number is seconds)",
        "p.yaml:9: unknown field 'bogus' in rules/0",
        "p.yaml:10: rules/1/id: 'B!' does not match '^[a-z0-9][a-z0-9_.-]{0,63}$'",
    ]


SEMANTIC = """\
pack: bad
version: 1
dial_plan: XX
rules:
  - id: a
    kind: spend
    window: 10m
    warning: 5
    critical: 3
    of: numbers
  - id: b
    window: 1h
    critical: 1.5
    schedule: {timezone: Mars/Base, hours: "25:00-01:00"}
  - id: a
    kind: long_call
    window: 1h
    critical: 5h
    release_timeout: 4h
  - id: d
    kind: distinct
    window: 1h
    critical: 4
    range_digits: 2
  - id: e
    window: 1h
"""


def test_semantic_errors_all_reported_with_their_lines() -> None:
    assert problems(SEMANTIC) == [
        "p.yaml:3: unknown dial plan 'XX'; known: DE, E164, FR, GB, JP, NANP",
        "p.yaml:8: rule 'a': warning must not be above critical",
        "p.yaml:10: field 'of' does not apply to a spend rule",
        "p.yaml:13: critical must be a whole number of calls for a count rule",
        "p.yaml:14: unknown IANA time zone 'Mars/Base'",
        "p.yaml:14: hours '25:00-01:00' is not like 22:00-06:00",
        "p.yaml:15: rule id 'a' is used twice",
        "p.yaml:19: release_timeout must be longer than every long_call threshold",
        "p.yaml:24: range_digits only applies with of: ranges",
        "p.yaml:25: rule 'e' needs a warning or a critical threshold",
    ]


def test_override_problems_point_at_the_override() -> None:
    text = """\
pack: o
version: 1
rules:
  - id: a
    window: 1h
    warning: 2
    critical: 4
    overrides:
      tenants:
        t1: {warning: 9}
        t2: {colour: red}
"""
    # schema problems first (the semantic checks need a well-formed pack) ...
    assert problems(text) == ["p.yaml:11: unknown field 'colour' in rules/0/overrides/tenants/t2"]
    # ... then the override's merged thresholds are checked
    fixed = text.replace("        t2: {colour: red}\n", "")
    assert problems(fixed) == ["p.yaml:10: override tenants/t1: warning must not be above critical"]


def test_yaml_syntax_error_and_empty_pack() -> None:
    assert problems("pack: [\n")[0].startswith("p.yaml:2: not valid YAML")
    assert problems("") == ["p.yaml:1: the pack is empty"]


def test_unquoted_holiday_dates_are_accepted() -> None:
    pack = load_pack_text(
        "pack: h\nversion: 1\nrules:\n  - id: a\n    window: 1h\n    critical: 3\n"
        "    schedule: {timezone: UTC, holidays: [2026-12-31]}\n"
    )
    assert pack.rules[0].schedule is not None


def test_rules_check_command_prints_file_line_reason_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    good = REPO / "rules" / "default.yaml"
    assert main(["rules", "check", str(good), str(bad)]) == 1
    captured = capsys.readouterr()
    assert f"{bad}:7: rules/0/window" in captured.err
    assert "default.yaml: ok" in captured.out
    assert main(["rules", "check", str(good)]) == 0
