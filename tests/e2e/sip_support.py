"""Kamailio, sipp and the tollguard SIP adapters as real processes on loopback.

Every process runs in its own session and is stopped by process group, so
nothing outlives a test. Every wait is bounded.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.support import settings_env
from tollguard.brokers._process import stop_group
from tollguard.config import Settings

REPO = Path(__file__).resolve().parents[2]
KAMAILIO_DIR = REPO / "deploy" / "kamailio"
SIPP_DIR = KAMAILIO_DIR / "sipp"


def missing_sip_tools() -> str | None:
    missing = [tool for tool in ("kamailio", "sipp") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not installed (run scripts/install_test_tools.sh)"
    return None


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(
    what: str, predicate: Callable[[], bool], timeout: float, proc: Proc | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.running():
            raise AssertionError(f"{proc.name} exited while waiting for {what}:\n{proc.tail()}")
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.2)
    tail = f"\n{proc.name} log:\n{proc.tail()}" if proc is not None else ""
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{tail}")


@dataclass
class Proc:
    name: str
    argv: Sequence[str]
    log_path: Path
    env: dict[str, str] | None = None
    cwd: Path | None = None
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                list(self.argv),
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(
                f"{self.name} did not finish in {timeout:.0f}s:\n{self.tail()}"
            ) from None

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc, timeout=15)

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def metrics_of(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
        text = resp.read().decode()
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def metric(port: int, name: str, **labels: str) -> float:
    return metrics_of(port).get((name, tuple(sorted(labels.items()))), 0.0)


def rpc(port: int, method: str, *params: Any) -> Any:
    body = orjson.dumps({"jsonrpc": "2.0", "method": method, "params": list(params), "id": 1})
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/RPC", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=2) as resp:
            return orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return orjson.loads(exc.read())


@dataclass
class Loop:
    """Ports and processes of one closed loop: Kamailio, collector, enforcer, far end."""

    workdir: Path
    settings: Settings
    sip_port: int = field(default_factory=free_udp_port)
    http_port: int = field(default_factory=free_tcp_port)
    hep_port: int = field(default_factory=free_udp_port)
    far_end_port: int = field(default_factory=free_udp_port)
    collector_web: int = field(default_factory=free_tcp_port)
    enforcer_web: int = field(default_factory=free_tcp_port)
    procs: list[Proc] = field(default_factory=list)
    named: dict[str, Proc] = field(default_factory=dict)

    def _tollguard(self, name: str, args: list[str], web_port: int, **env: str) -> Proc:
        full_env = {**os.environ, **settings_env(self.settings), **env}
        full_env["TOLLGUARD_WEB_PORT"] = str(web_port)
        full_env["TOLLGUARD_WEB_HOST"] = "127.0.0.1"
        full_env.pop("TOLLGUARD_CONFIG", None)
        argv = [sys.executable, "-m", "tollguard.cli.main", *args]
        return self._start(Proc(name, argv, self.workdir / f"{name}.log", env=full_env))

    def _start(self, proc: Proc) -> Proc:
        self.procs.append(proc.start())
        self.named[proc.name] = proc
        return proc

    def start_kamailio(self) -> Proc:
        rundir = self.workdir / "kamailio-run"
        rundir.mkdir(exist_ok=True)
        argv = [
            "kamailio",
            "-A", f"SIP_LISTEN=udp:127.0.0.1:{self.sip_port}",
            "-A", f"HTTP_LISTEN=tcp:127.0.0.1:{self.http_port}",
            "-A", f'HEP_COLLECTOR="sip:127.0.0.1:{self.hep_port}"',
            "-A", f'NEXT_HOP="sip:127.0.0.1:{self.far_end_port}"',
            "-DD", "-E",
            "-f", str(KAMAILIO_DIR / "kamailio.cfg"),
            "-Y", str(rundir),
            "-w", str(rundir),
        ]  # fmt: skip
        proc = self._start(Proc("kamailio", argv, self.workdir / "kamailio.log"))
        wait_for(
            "Kamailio JSON-RPC",
            lambda: "result" in rpc(self.http_port, "core.version"),
            30,
            proc,
        )
        return proc

    def start_collector(self) -> Proc:
        proc = self._tollguard(
            "collector",
            ["ingest", "hep", "--listen", f"127.0.0.1:{self.hep_port}", "--line-source", "from"],
            self.collector_web,
        )
        wait_for("collector /metrics", lambda: bool(metrics_of(self.collector_web)), 30, proc)
        return proc

    def start_enforcer(
        self,
        wait_up: bool = True,
        *,
        name: str = "enforcer",
        web_port: int | None = None,
        htable: str | None = None,
    ) -> Proc:
        """An enforcer for this loop's Kamailio (on `enforcer_web` unless told otherwise)."""
        web = self.enforcer_web if web_port is None else web_port
        args = ["enforce", "kamailio", "--rpc-url", f"http://127.0.0.1:{self.http_port}/RPC"]
        if htable is not None:
            args += ["--htable", htable]
        proc = self._tollguard(name, args, web, TOLLGUARD_ENFORCE_RESYNC_S="5")
        if wait_up:
            wait_for(
                "enforcer in sync with Kamailio",
                lambda: metric(web, "tollguard_enforcer_kamailio_up") == 1,
                60,
                proc,
            )
        else:
            wait_for("enforcer /metrics", lambda: bool(metrics_of(web)), 60, proc)
        return proc

    def start_packer(self, input_topic: str, web_port: int) -> Proc:
        """`tollguard ingest pack` from `input_topic` to this loop's events topic."""
        proc = self._tollguard("packer", ["ingest", "pack", "--input-topic", input_topic], web_port)
        wait_for("packer /metrics", lambda: bool(metrics_of(web_port)), 60, proc)
        return proc

    def start_far_end(self) -> Proc:
        argv = [
            "sipp", "-sf", str(SIPP_DIR / "far_end_uas.xml"),
            "-i", "127.0.0.1", "-p", str(self.far_end_port), "-nostdin",
        ]  # fmt: skip
        proc = self._start(Proc("far-end", argv, self.workdir / "far-end.log"))
        time.sleep(0.3)
        assert proc.running(), proc.tail()
        return proc

    def pbx(
        self, name: str, rows: list[tuple[str, str]], *, calls: int, rate: float, hold_ms: int
    ) -> Proc:
        """A sipp UAC playing a PBX: `rows` are (line, dialled digits), used in turn."""
        csv = self.workdir / f"{name}.csv"
        csv.write_text("SEQUENTIAL\n" + "".join(f"{line};{callee}\n" for line, callee in rows))
        argv = [
            "sipp", f"127.0.0.1:{self.sip_port}",
            "-sf", str(SIPP_DIR / "pbx_uac.xml"),
            "-inf", str(csv),
            "-i", "127.0.0.1", "-p", str(free_udp_port()),
            "-m", str(calls), "-r", str(rate), "-l", "50", "-d", str(hold_ms),
            "-timeout", "60s", "-nostdin",
            "-trace_msg", "-message_file", str(self.workdir / f"{name}.messages"),
        ]  # fmt: skip
        return self._start(Proc(name, argv, self.workdir / f"{name}.log", cwd=self.workdir))

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


@dataclass
class CallOutcome:
    call_id: str
    invite_at: float
    final: int | None = None
    final_at: float | None = None


_SEPARATOR = re.compile(r"^-{20,}\s+(\d{4}-\d\d-\d\d)\s+(\d\d:\d\d:\d\d(?:\.\d+)?)\s*$")


def call_outcomes(message_file: Path) -> list[CallOutcome]:
    """Each call of a sipp UAC, in order: when its INVITE left and its final answer."""
    calls: dict[str, CallOutcome] = {}
    blocks: list[tuple[float, list[str]]] = []
    for line in message_file.read_text(errors="replace").splitlines():
        m = _SEPARATOR.match(line)
        if m:
            at = datetime.fromisoformat(f"{m.group(1)} {m.group(2)}").timestamp()
            blocks.append((at, []))
        elif blocks:
            blocks[-1][1].append(line)
    for at, lines in blocks:
        sent = any("message sent" in x for x in lines[:2])
        body = [
            x
            for x in lines
            if x.strip() and "message sent" not in x and "message received" not in x
        ]
        if not body:
            continue
        start = body[0]
        headers = {}
        for x in body[1:]:
            name, _, value = x.partition(":")
            headers.setdefault(name.strip().lower(), value.strip())
        call_id = headers.get("call-id") or headers.get("i")
        cseq = headers.get("cseq", "")
        if not call_id:
            continue
        if sent and start.startswith("INVITE ") and call_id not in calls:
            calls[call_id] = CallOutcome(call_id, at)
        elif not sent and start.startswith("SIP/2.0 ") and cseq.endswith("INVITE"):
            code = int(start.split()[1])
            call = calls.get(call_id)
            if call is not None and code >= 200 and call.final is None:
                call.final, call.final_at = code, at
    return sorted(calls.values(), key=lambda c: c.invite_at)
