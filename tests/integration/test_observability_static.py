"""Dashboards, alert rules and chart values checked without running anything.

The dynamic proof (a real Prometheus evaluating every query) is in
test_observability_prometheus.py; here: every metric a dashboard or alert names
is one tollguard really exports (or `up`, `ALERTS`, kafka_exporter's lag), the
dashboards are well-formed for Grafana provisioning, and the chart's values
schema closes every object so a misspelt value fails.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tollguard.adapters.hep_collector import CollectorMetrics
from tollguard.adapters.kamailio import EnforcerMetrics
from tollguard.adapters.packer import PackerMetrics
from tollguard.app.metrics import Metrics

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "tollguard"
GRAFANA = REPO / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
OTHER_METRICS = {"up", "ALERTS", "kafka_consumergroup_lag"}
GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range"}
# The registries of the enforcer, the packer and the HEP collector.
ADAPTERS = (EnforcerMetrics().registry, PackerMetrics().registry, CollectorMetrics().registry)
METRIC_NAME = re.compile(r"\b(tollguard_[a-z_]+|kafka_[a-z_]+|up|ALERTS)\b(?=\s*[{\[)])")


def exported_names() -> set[str]:
    names: set[str] = set()
    for family in (f for registry in (Metrics().registry, *ADAPTERS) for f in registry.collect()):
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}{s}" for s in ("_bucket", "_sum", "_count"))
        else:
            names.add(family.name)
    return names


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard_exprs() -> Iterator[tuple[str, str]]:
    for path in DASHBOARDS:
        for panel in _panels(json.loads(path.read_text())["panels"]):
            for target in panel.get("targets", []):
                yield f"{path.name} / {panel['title']}", target["expr"]


def alert_exprs() -> Iterator[tuple[str, str]]:
    text = (CHART / "templates" / "prometheusrule.yaml").read_text()
    for match in re.finditer(r"- alert: (\w+)\n\s+expr: (>-\n(?:\s{12}.*\n)+|.*\n)", text):
        yield match.group(1), match.group(2)


def test_there_are_two_dashboards_and_ten_alerts() -> None:
    assert [p.name for p in DASHBOARDS] == ["tollguard-overview.json", "tollguard-rule.json"]
    assert len(list(alert_exprs())) == 10


def test_every_metric_named_is_really_exported() -> None:
    known = exported_names() | OTHER_METRICS
    assert "tollguard_decision_latency_seconds_bucket" in known
    used: dict[str, list[str]] = {}
    for where, expr in [*dashboard_exprs(), *alert_exprs()]:
        names = METRIC_NAME.findall(expr)
        assert names, f"{where}: no metric found in {expr!r}"
        for name in names:
            used.setdefault(name, []).append(where)
    unknown = {name: where for name, where in used.items() if name not in known}
    assert not unknown, f"metrics nobody exports: {unknown}"
    # The SPEC's metrics all appear somewhere.
    for name in (
        "tollguard_events_total",
        "tollguard_events_rejected_total",
        "tollguard_signals_total",
        "tollguard_active_blocks",
        "tollguard_decision_latency_seconds_bucket",
        "tollguard_event_lag_seconds_bucket",
        "tollguard_tracked_lines",
        "tollguard_rules_version_info",
        "tollguard_destination_calls_total",
    ):
        assert name in used, f"{name} is on no dashboard"
    # So are the adapters', every one of them.
    for registry in ADAPTERS:
        for family in registry.collect():
            assert any(n.startswith(family.name) for n in used), f"{family.name} is on no dashboard"


def test_no_query_groups_or_filters_by_a_line() -> None:
    for where, expr in [*dashboard_exprs(), *alert_exprs()]:
        assert not re.search(r"line_id|callee|caller", expr), where


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_well_formed(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    assert dashboard["uid"] and len(dashboard["uid"]) <= 40
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert "datasource" in variables
    ids = [p["id"] for p in _panels(dashboard["panels"])]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for panel in _panels(dashboard["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        x, w = panel["gridPos"]["x"], panel["gridPos"]["w"]
        assert x >= 0 and x + w <= 24, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            used = set(re.findall(r"\$\{?(\w+)", target["expr"]))
            assert used <= variables | GRAFANA_BUILTINS, (panel["title"], used - variables)


def test_dashboard_uids_are_unique_and_linked() -> None:
    uids = [json.loads(p.read_text())["uid"] for p in DASHBOARDS]
    assert len(set(uids)) == len(uids)
    overview = (GRAFANA / "dashboards" / "tollguard-overview.json").read_text()
    assert "/d/tollguard-rule/" in overview


def test_provisioning_files() -> None:
    provisioning = GRAFANA / "provisioning"
    provider = yaml.safe_load((provisioning / "dashboards" / "tollguard.yaml").read_text())
    assert provider["apiVersion"] == 1
    assert provider["providers"][0]["type"] == "file"
    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())
    assert sources["datasources"][0]["type"] == "prometheus"


def _objects(schema: Any, path: str = "$") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(schema, dict):
        if "properties" in schema:
            yield path, schema
        for key, value in schema.items():
            yield from _objects(value, f"{path}.{key}")
    elif isinstance(schema, list):
        for i, value in enumerate(schema):
            yield from _objects(value, f"{path}[{i}]")


def test_values_schema_closes_every_object() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    for path, obj in _objects(schema):
        if obj.get("type") == "object" and path != "$.properties.extraEnv.items":
            assert obj.get("additionalProperties") is False, path


@pytest.mark.parametrize("values", ["values.yaml", "ci/full-values.yaml"])
def test_values_files_match_the_schema(values: str) -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    data = yaml.safe_load((CHART / values).read_text())
    if values != "values.yaml":  # an override file: merge over the defaults
        data = _merge(yaml.safe_load((CHART / "values.yaml").read_text()), data)
    jsonschema.validate(data, schema)


def test_a_misspelt_value_is_rejected() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    data = yaml.safe_load((CHART / "values.yaml").read_text())
    data["kafka"]["bootstrapServer"] = ["kafka:9092"]
    with pytest.raises(jsonschema.ValidationError, match="bootstrapServer"):
        jsonschema.validate(data, schema)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def test_dockerfile_runs_unprivileged_without_build_tools() -> None:
    text = (REPO / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    assert len(stages) >= 2, "not a multi-stage build"
    final = stages[-1]
    assert re.search(r"^USER 10001", final, flags=re.M)
    assert "build-essential" not in final and "apt-get install" not in final
    assert "COPY --from=builder /opt/tollguard /opt/tollguard" in final
