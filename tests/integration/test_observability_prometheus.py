"""A real Prometheus scrapes a real worker during a simulated attack; every
dashboard query and every alert rule is then run through Prometheus's HTTP API.

What this proves, and how:

* The chart's alert rules are rendered by `helm template` (test values: short
  windows, `for: 0s`, the block-storm threshold at 1) and loaded into
  Prometheus as a rule file, so Prometheus itself parses and evaluates them;
  every rule must report health "ok".
* Each alert must *fire* on real data, checked through Prometheus's `ALERTS`
  series: TollguardNoEvents while the worker is up before any traffic,
  TollguardDeadLetterRate / TollguardBlockStorm / TollguardEventLagHigh during
  the attack (malformed events are mixed in; the replayed events are hours
  old), TollguardRulePackRejected after a broken pack is written to the rules
  topic, TollguardWorkerDown after the worker is stopped. Its expression must
  also return data when queried directly over the test's time range.
* TollguardConsumerLagGrowing and the consumer-lag panel read kafka_exporter's
  `kafka_consumergroup_lag`. kafka_exporter is not installable here (its Go
  module is not served by the module proxy), so those queries are only checked
  to parse and evaluate (status success) and to return nothing: no data is faked.
* Every Grafana panel query (variables substituted as Grafana would) must
  return at least one non-NaN sample; template-variable queries must list the
  test's job and rules.
* The enforcer, packer and HEP collector panels and alerts have a test of
  their own (`test_adapter_panels_and_alerts`): a real Kamailio with two
  enforcers, one of them naming an htable Kamailio does not have, a real
  packer and a real HEP collector; then Kamailio stops, then the packer.

The attack comes in waves (one attacked line at a time, each with background
traffic and malformed events) and the test waits for a scrape between waves:
a labelled counter is only exported from its first increment, and `increase()`
cannot see the step from "absent" to its first value, so a storm that is over
within one scrape interval would be invisible to rate-based alerts.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import TopicFactory
from tests.e2e.sip_support import Loop, metric, missing_sip_tools
from tests.e2e.sip_support import wait_for as sip_wait
from tests.e2e.support import WorkerProcess, events_as_records, isolated_settings, produce
from tests.unit.test_hep import invite
from tollguard.adapters.hep import build_hep
from tollguard.app.topics import ensure_tollguard_topics
from tollguard.brokers._process import free_port, stop_group
from tollguard.cli.control import manual_signal, publish_signal
from tollguard.simulate.traffic import AttackSpec, BackgroundSpec, attack, background, merge

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "tollguard"
DASHBOARDS = sorted((REPO / "grafana" / "dashboards").glob("*.json"))
HELM = REPO / ".cache" / "bin" / "helm"
JOB = "tollguard-it"
# Alerts whose data comes from kafka_exporter, which cannot be run here.
NEEDS_KAFKA_EXPORTER = {"TollguardConsumerLagGrowing"}
ATTACK_WAVES = 4

ENFORCER_JOB = f"{JOB}-enforcer"
PACKER_JOB = f"{JOB}-packer"
HEP_JOB = f"{JOB}-hep"
# Alerts on the enforcer and the packer: test_adapter_panels_and_alerts proves them.
ADAPTER_ALERTS = {
    "TollguardAdapterDown",
    "TollguardKamailioUnreachable",
    "TollguardKamailioRefusesBlocks",
}
ADAPTER_METRICS = re.compile(r"tollguard_(enforcer|packer|hep)_")

TEST_VALUES = {
    "metrics": {
        "prometheusRule": {
            "selector": f'job="{JOB}"',
            "enforcerSelector": f'job="{ENFORCER_JOB}"',
            "packerSelector": f'job="{PACKER_JOB}"',
            "alerts": {
                "adapterDown": {"enabled": True, "for": "0s", "severity": "critical"},
                "kamailioUnreachable": {"enabled": True, "for": "0s", "severity": "critical"},
                "blocksRefused": {
                    "enabled": True,
                    "window": "5m",
                    "for": "0s",
                    "severity": "critical",
                },
                "workerDown": {"enabled": True, "for": "0s", "severity": "critical"},
                "noEvents": {"enabled": True, "window": "1m", "for": "0s", "severity": "critical"},
                "deadLetters": {
                    "enabled": True,
                    "ratio": 0.01,
                    "window": "1m",
                    "for": "0s",
                    "severity": "warning",
                },
                "blockStorm": {
                    "enabled": True,
                    "blocks": 1,
                    "window": "5m",
                    "for": "0s",
                    "severity": "critical",
                },
                "eventLag": {
                    "enabled": True,
                    "seconds": 60,
                    "window": "1m",
                    "for": "0s",
                    "severity": "warning",
                },
                "rulePackRejected": {
                    "enabled": True,
                    "window": "5m",
                    "for": "0s",
                    "severity": "warning",
                },
                "consumerLag": {
                    "enabled": True,
                    "messages": 0,
                    "window": "5m",
                    "for": "0s",
                    "severity": "warning",
                },
            },
        }
    }
}


def _tool_missing(what: str) -> None:
    msg = f"{what} missing: run scripts/install_ops_tools.sh"
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


class Prometheus:
    def __init__(self, workdir: Path, jobs: dict[str, list[str]], rule_file: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rule_file)],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": targets}]}
                for job, targets in jobs.items()
            ],
        }
        self.config = workdir / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(config))
        self.log = workdir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Prometheus:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    "prometheus",
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--storage.tsdb.retention.time=1h",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(self._ready, 60, "Prometheus to become ready", self.log_tail)
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc)

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; returns `data`, raising with Prometheus's error on failure."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=30) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as exc:
            body = json.load(exc)
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        return list(self.api("query", **params)["result"])

    def query_range(self, expr: str, start: float, end: float, step: str = "1s") -> list[Any]:
        data = self.api(
            "query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=step
        )
        return list(data["result"])

    def scalar(self, expr: str) -> float:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else math.nan

    def alert_fired(self, name: str) -> bool:
        return bool(
            self.query(f'max_over_time(ALERTS{{alertname="{name}",alertstate="firing"}}[1h])')
        )


def wait_for(
    predicate: Callable[[], bool], timeout: float, what: str, detail: Callable[[], str] = str
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"gave up waiting for {what} after {timeout:.0f}s\n{detail()}")


def render_alert_rules(tmp_path: Path) -> Path:
    values = tmp_path / "it-values.yaml"
    values.write_text(yaml.safe_dump(TEST_VALUES))
    manifests = subprocess.run(
        [
            str(HELM),
            "template",
            "tollguard",
            str(CHART),
            "--kube-version",
            "1.34.0",
            "-f",
            str(values),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    groups = [
        group
        for doc in yaml.safe_load_all(manifests)
        if isinstance(doc, dict) and doc.get("kind") == "PrometheusRule"
        for group in doc["spec"]["groups"]
    ]
    assert groups, "the chart rendered no PrometheusRule"
    rule_file = tmp_path / "alert-rules.yaml"
    rule_file.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return rule_file


def alert_exprs(rule_file: Path) -> dict[str, str]:
    return {
        rule["alert"]: rule["expr"]
        for group in yaml.safe_load(rule_file.read_text())["groups"]
        for rule in group["rules"]
    }


def rules_with_shadow_rule(tmp_path: Path) -> Path:
    """The default pack plus one shadow-mode rule, so `mode="shadow"` series exist."""
    pack = yaml.safe_load((REPO / "rules" / "default.yaml").read_text())
    pack["rules"].append(
        {
            "id": "it-shadow-hot",
            "kind": "count",
            "description": "shadow twin of hot-destinations (observability test)",
            "match": {"international": True, "prefixes": ["+232"]},
            "window": "1h",
            "warning": 2,
            "critical": 5,
            "ttl": "1h",
            "block_scope": "international",
            "mode": "shadow",
        }
    )
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(pack, sort_keys=False))
    return path


def panel_targets() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for panel in _panels(dashboard["panels"]):
            for target in panel.get("targets", []):
                yield path.name, panel["title"], target


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def substitute(expr: str, variables: dict[str, str]) -> str:
    out = re.sub(r"\$\{?(\w+)\}?", lambda m: variables.get(m.group(1), m.group(0)), expr)
    assert "$" not in out, f"unsubstituted Grafana variable in {out!r}"
    return out


def check_alerts(prom: Prometheus, alerts: dict[str, str], started: float) -> None:
    """Prometheus evaluated each rule without error; each alert's own expression
    returned data over the run and the alert fired, except those that need
    kafka_exporter."""
    final = {r["name"]: r for g in prom.api("rules")["groups"] for r in g["rules"]}
    for name, expr in alerts.items():
        rule = final[name]
        assert rule["health"] == "ok", f"{name}: {rule.get('lastError')}"
        # End a little in the future: an alert that fired within the last
        # second has its sample after the last whole step before "now".
        result = prom.query_range(expr, started, time.time() + 2, step="1s")
        if name in NEEDS_KAFKA_EXPORTER:
            assert not result and not prom.alert_fired(name)
        else:
            assert _has_value(result), f"{name}: expression returned no data: {expr}"
            assert prom.alert_fired(name), f"{name} never fired"


def query_panels(
    prom: Prometheus, variables: dict[str, str], started: float, wanted: Callable[[str], bool]
) -> tuple[int, list[str], list[str]]:
    """Run the `wanted` panel queries over the test's time range, as Grafana would.

    Returns how many ran, those without data, and those that need kafka_exporter.
    """
    end = time.time()
    variables = {
        "job": JOB,
        "enforcer_job": ENFORCER_JOB,
        "packer_job": PACKER_JOB,
        "hep_job": HEP_JOB,
        "__rate_interval": "15s",
        "__interval": "2s",
        "__range": f"{int(end - started) + 10}s",
        "datasource": "",
        **variables,
    }
    empty: list[str] = []
    exporter_only: list[str] = []
    checked = 0
    for dash, title, target in panel_targets():
        if not wanted(target["expr"]):
            continue
        # Stat panels show 0 rather than "No data" through `or vector(0)`; the
        # query without that fallback must return data of its own.
        expr = substitute(target["expr"], variables).replace(" or vector(0)", "")
        if target.get("instant"):
            result = prom.query(expr, at=end)
        else:
            result = prom.query_range(expr, started, end, step="2s")
        checked += 1
        if "kafka_" in expr:
            assert not result, f"{dash} / {title}: kafka_exporter data without kafka_exporter?"
            exporter_only.append(f"{dash} / {title}")
        elif not _has_value(result):
            empty.append(f"{dash} / {title}: {expr}")
    return checked, empty, exporter_only


def _has_value(result: list[dict[str, Any]]) -> bool:
    for series in result:
        values = series.get("values") or [series.get("value")]
        if any(v is not None and not math.isnan(float(v[1])) for v in values):
            return True
    return False


def _malformed(wave: int, n: int) -> list[tuple[bytes, bytes]]:
    return [(b"line-bad", f'{{"call_id": "bad-{wave}-{i}", "ts": '.encode()) for i in range(n)]


@pytest.fixture
def prometheus_tools() -> None:
    if shutil.which("prometheus") is None:
        _tool_missing("prometheus (Debian package prometheus)")
    if not HELM.is_file():
        _tool_missing(f"helm ({HELM})")


def test_dashboards_and_alerts_on_real_prometheus(
    prometheus_tools: None, kafka_bootstrap: str, tmp_path: Path
) -> None:
    rule_file = render_alert_rules(tmp_path)
    alerts = {
        name: expr for name, expr in alert_exprs(rule_file).items() if name not in ADAPTER_ALERTS
    }
    assert {
        "TollguardWorkerDown",
        "TollguardNoEvents",
        "TollguardDeadLetterRate",
        "TollguardBlockStorm",
        "TollguardEventLagHigh",
        "TollguardRulePackRejected",
        "TollguardConsumerLagGrowing",
    } <= set(alerts)

    settings = isolated_settings(
        kafka_bootstrap, tmp_path, partitions=2, rules=str(rules_with_shadow_rule(tmp_path))
    )
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    prom = Prometheus(tmp_path, {JOB: [f"127.0.0.1:{worker.web_port}"]}, rule_file)
    started = time.time()
    try:
        prom.start()
        _run_scenario(prom, worker, kafka_bootstrap, alerts, started)
    finally:
        worker.stop()
        prom.stop()


def _run_scenario(
    prom: Prometheus,
    worker: WorkerProcess,
    bootstrap: str,
    alerts: dict[str, str],
    started: float,
) -> None:
    detail = prom.log_tail
    # Prometheus parsed and loaded every rule.
    loaded = {r["name"]: r for g in prom.api("rules")["groups"] for r in g["rules"]}
    assert set(alerts) <= set(loaded), f"rules not loaded: {set(alerts) - set(loaded)}"

    # Idle: the worker is up but no event has arrived.
    wait_for(lambda: prom.alert_fired("TollguardNoEvents"), 90, "TollguardNoEvents", detail)

    # The attack, in waves: wave i replays hour i of background traffic (six
    # hours ago, so event lag is real and large) with one line under attack.
    hour = 3_600_000
    start = int(time.time() * 1000) - 6 * hour
    good = 0
    for wave in range(ATTACK_WAVES):
        w_start = start + wave * hour
        bg = background(BackgroundSpec(lines=30, calls_per_hour=8), w_start, w_start + hour, wave)
        spec = AttackSpec(line_id=f"pbx-it-{wave}", calls=25)
        atk = attack(spec, w_start + 5 * 60_000, seed=100 + wave)
        events = list(merge(bg, atk))
        good += len(events)
        records = _malformed(wave, max(3, len(events) // 20)) + list(events_as_records(events))
        produce(bootstrap, worker.settings.topic_events, records)
        expected_blocks = wave + 1
        wait_for(
            lambda n=expected_blocks: (
                prom.scalar(
                    f'sum(tollguard_signals_total{{job="{JOB}",action="block",mode="enforce"}})'
                )
                >= n
            ),
            90,
            f"wave {wave}: {expected_blocks} blocks scraped",
            worker.log_tail,
        )
    wait_for(
        lambda: prom.scalar(f'sum(tollguard_event_lag_seconds_count{{job="{JOB}"}})') >= good,
        90,
        "every event scraped",
        worker.log_tail,
    )
    # A broken pack pushed straight to the rules topic (bypassing `rules push`,
    # which would refuse it): the worker rejects it and keeps its pack.
    produce(bootstrap, worker.settings.topic_rules, [(b"default", b"pack: [broken")])
    wait_for(
        lambda: prom.scalar(f'sum(tollguard_rules_rejected_total{{job="{JOB}"}})') >= 1,
        90,
        "the rejected pack counted",
        worker.log_tail,
    )
    for name in (
        "TollguardDeadLetterRate",
        "TollguardBlockStorm",
        "TollguardEventLagHigh",
        "TollguardRulePackRejected",
    ):
        wait_for(lambda name=name: prom.alert_fired(name), 60, name, detail)

    # Every dashboard query, with Grafana's variables, returns data.
    variables = {"rule": ".+", "consumergroup": worker.settings.app_id}
    checked, empty, exporter_only = query_panels(
        prom, variables, started, lambda expr: not ADAPTER_METRICS.search(expr)
    )
    assert checked >= 30, f"only {checked} panel queries found"
    assert not empty, "panel queries without data:\n" + "\n".join(empty)
    assert exporter_only == ["tollguard-overview.json / Consumer lag (needs kafka_exporter)"]

    # Template-variable queries (Grafana's label_values) list the test's job and rules.
    jobs = prom.api("label/job/values", **{"match[]": "tollguard_rules_version_info"})
    assert JOB in jobs
    rules = prom.api("label/rule/values", **{"match[]": f'tollguard_signals_total{{job=~"{JOB}"}}'})
    assert {"hot-destinations", "it-shadow-hot"} <= set(rules)

    # The worker goes away.
    worker.stop()
    wait_for(lambda: prom.alert_fired("TollguardWorkerDown"), 60, "TollguardWorkerDown", detail)

    check_alerts(prom, alerts, started)
    print(
        f"\nobservability: {checked - len(exporter_only)} of {checked} panel queries returned"
        f" data, {len(exporter_only)} need kafka_exporter (parsed and evaluated only); "
        f"alerts fired: {sorted(set(alerts) - NEEDS_KAFKA_EXPORTER)}",
        file=sys.stderr,
    )


@pytest.fixture
def sip_tools() -> None:
    missing = missing_sip_tools()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{missing}; .ci/run should have installed them")
        pytest.skip(missing)


def test_adapter_panels_and_alerts(
    prometheus_tools: None,
    sip_tools: None,
    kafka_bootstrap: str,
    tmp_path: Path,
    topic_factory: TopicFactory,
) -> None:
    """The enforcers' and the packer's panels and alerts, on real processes.

    A real Kamailio with two enforcers: one writes the htable Kamailio's
    config defines; the other names an htable it does not have, so Kamailio
    answers and refuses its blocks. Blocks are written as `tollguard block`
    writes them. A packer packs single events from a topic of its own, and a
    HEP collector reads INVITEs (and one datagram that is not HEP) as
    Kamailio's siptrace sends them. Then Kamailio stops (both enforcers lose
    it) and the packer stops.
    """
    rule_file = render_alert_rules(tmp_path)
    alerts = {n: e for n, e in alert_exprs(rule_file).items() if n in ADAPTER_ALERTS}
    assert set(alerts) == ADAPTER_ALERTS
    settings = isolated_settings(kafka_bootstrap, tmp_path, partitions=2)
    ensure_tollguard_topics(settings)
    raw_topic = topic_factory(partitions=2)
    loop = Loop(tmp_path, settings)
    refused_web, packer_web = free_port(), free_port()
    prom: Prometheus | None = None
    try:
        loop.start_kamailio()
        loop.start_enforcer()
        refused = loop.start_enforcer(
            name="enforcer-refused", web_port=refused_web, htable="nosuch"
        )
        packer = loop.start_packer(raw_topic, packer_web)
        collector = loop.start_collector()
        jobs = {
            ENFORCER_JOB: [f"127.0.0.1:{loop.enforcer_web}", f"127.0.0.1:{refused_web}"],
            PACKER_JOB: [f"127.0.0.1:{packer_web}"],
            HEP_JOB: [f"127.0.0.1:{loop.collector_web}"],
        }
        prom = Prometheus(tmp_path, jobs, rule_file).start()
        started = time.time()
        detail = prom.log_tail

        # Blocks as `tollguard block` writes them, in two rounds with a scrape
        # between: rate() cannot see a histogram's step from absent to its first
        # value, so the lag panel needs the second round.
        enforcer = loop.named["enforcer"]
        applied = "tollguard_enforcer_applied_total"
        failed = "tollguard_enforcer_failed_total"
        lags = f'sum(tollguard_enforcer_lag_seconds_count{{job="{ENFORCER_JOB}"}})'
        for round_ in range(2):
            now = int(time.time() * 1000)
            for n in range(3):
                line = f"pbx-{round_}-{n}"
                block = manual_signal("block", line, "it", "observability test", now, ttl_s=900)
                publish_signal(settings, block, now)
            total = 3 * (round_ + 1)
            sip_wait(
                f"{total} blocks in Kamailio",
                lambda total=total: metric(loop.enforcer_web, applied, op="set") >= total,
                30,
                enforcer,
            )
            sip_wait(
                f"{total} blocks refused",
                lambda total=total: metric(refused_web, failed, op="set") >= total,
                30,
                refused,
            )
            wait_for(lambda total=total: prom.scalar(lags) >= total, 30, "the lags scraped", detail)
        wait_for(
            lambda: prom.alert_fired("TollguardKamailioRefusesBlocks"),
            60,
            "TollguardKamailioRefusesBlocks",
            detail,
        )
        assert not prom.query(  # the enforcer whose blocks Kamailio takes is not named
            f'ALERTS{{alertname="TollguardKamailioRefusesBlocks",instance="127.0.0.1:{loop.enforcer_web}"}}'
        )

        start = int(time.time() * 1000) - 3_600_000
        events = list(
            background(BackgroundSpec(lines=40, calls_per_hour=30), start, start + 3_600_000, 3)
        )
        produce(kafka_bootstrap, raw_topic, list(events_as_records(events)))
        query = f'sum(tollguard_packer_events_total{{job="{PACKER_JOB}"}})'
        wait_for(
            lambda: prom.scalar(query) >= len(events), 60, "the packed events scraped", packer.tail
        )
        # What Kamailio's siptrace sends the collector: INVITEs, and a datagram
        # that is not HEP.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            for n in range(20):
                sip = invite(f"hep-{n}@pbx", f"pbx-hep-{n % 4}", "0312345678")
                udp.sendto(
                    build_hep(sip, ts_ms=int(time.time() * 1000)), ("127.0.0.1", loop.hep_port)
                )
            udp.sendto(b"not a HEP datagram", ("127.0.0.1", loop.hep_port))
        query = f'sum(tollguard_hep_events_total{{job="{HEP_JOB}"}})'
        wait_for(lambda: prom.scalar(query) >= 20, 60, "the HEP events scraped", collector.tail)
        time.sleep(3)  # a few more scrapes, so rates over the range have two points

        checked, empty, _ = query_panels(
            prom, {}, started, lambda expr: bool(ADAPTER_METRICS.search(expr))
        )
        assert checked >= 12, f"only {checked} enforcer and packer panel queries found"
        assert not empty, "panel queries without data:\n" + "\n".join(empty)
        jobs_listed = prom.api("label/job/values", **{"match[]": "tollguard_enforcer_kamailio_up"})
        assert jobs_listed == [ENFORCER_JOB]
        jobs_listed = prom.api(
            "label/job/values", **{"match[]": "tollguard_packer_buffered_events"}
        )
        assert jobs_listed == [PACKER_JOB]
        jobs_listed = prom.api("label/job/values", **{"match[]": "tollguard_hep_packets_total"})
        assert jobs_listed == [HEP_JOB]

        loop.named["kamailio"].stop()
        unreachable = 'ALERTS{alertname="TollguardKamailioUnreachable",alertstate="firing"}'
        wait_for(
            lambda: len(prom.query(unreachable)) == 2,
            60,
            "TollguardKamailioUnreachable for both enforcers",
            detail,
        )
        packer.stop()
        wait_for(
            lambda: prom.alert_fired("TollguardAdapterDown"), 60, "TollguardAdapterDown", detail
        )
        down = prom.query('ALERTS{alertname="TollguardAdapterDown",alertstate="firing"}')
        assert [a["metric"]["job"] for a in down] == [PACKER_JOB]

        check_alerts(prom, alerts, started)
    finally:
        loop.stop()
        if prom is not None:
            prom.stop()
