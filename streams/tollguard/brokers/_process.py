"""Process plumbing shared by the broker harnesses.

Both brokers are child processes that must never outlive a test session or a
Ctrl-C, so each runs in its own process group and is stopped by group: the
JVM's or Tansu's helpers die with it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

from tollguard.brokers.admin import broker_ready

LOOPBACK = "127.0.0.1"


class BrokerStartError(RuntimeError):
    """The broker process died or never answered; the message carries its log tail."""


def free_port(host: str = LOOPBACK) -> int:
    """Ask the kernel for a port nobody holds right now.

    There is a window between closing this socket and the broker binding the
    port; on a loopback test box that race is rare enough to accept.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_is_free(host: str, port: int) -> bool:
    """True when we could bind it: used to wait out a previous owner on restart."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    *,
    interval: float = 0.2,
    abort: Callable[[], str | None] | None = None,
) -> bool:
    """Poll `predicate` until it holds or `timeout` passes.

    `abort` lets the caller stop early (e.g. the child exited) by returning a
    reason, which is raised as BrokerStartError instead of waiting out the clock.
    """
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if abort is not None:
            reason = abort()
            if reason is not None:
                raise BrokerStartError(reason)
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Signal the child's whole process group, tolerating one that already left."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def stop_group(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int | None:
    """SIGTERM the group, then SIGKILL if it lingers; returns the exit code."""
    if proc.poll() is None:
        signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            signal_group(proc, signal.SIGKILL)
            proc.wait(timeout=10)
    else:
        # The leader is gone, but a grandchild might still hold the group.
        signal_group(proc, signal.SIGKILL)
    return proc.returncode


def kill_group(proc: subprocess.Popen[bytes]) -> int | None:
    """SIGKILL with no grace: the fault tests want a crash, not a shutdown."""
    signal_group(proc, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    return proc.returncode


def tail(path: Path, lines: int = 60) -> str:
    """Last lines of a log, for error messages; never raises."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"(no log at {path}: {exc})"
    return "\n".join(data.splitlines()[-lines:])


class ManagedProcess:
    """Lifecycle common to both brokers: one child, its log, its bootstrap.

    Subclasses implement `_launch()` (spawn and wait until ready) and may
    override `restart()`.
    """

    #: Short name surfaced in test banners: "apache" or "embedded".
    kind: str = "process"

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.port = port
        self.host = LOOPBACK
        self._proc: subprocess.Popen[bytes] | None = None
        #: Exit code of the last stopped process; -9 means stop() had to SIGKILL it.
        self.last_exit_code: int | None = None

    @property
    def bootstrap(self) -> str:
        """`host:port` as clients want it; only meaningful once started."""
        if self.port is None:
            raise RuntimeError(f"{type(self).__name__} has not been started")
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def log_path(self) -> Path:
        return self.workdir / "broker.log"

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 60.0) -> str:
        if self.is_running():
            return self.bootstrap
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.port is None:
            self.port = free_port(self.host)
        try:
            self._launch(timeout)
        except BaseException:
            # Never leave a half-started broker behind a failed start.
            if self._proc is not None:
                kill_group(self._proc)
            raise
        return self.bootstrap

    def _launch(self, timeout: float) -> None:
        raise NotImplementedError

    def _spawn(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        out = (self.workdir / "process.out").open("ab")
        try:
            self._proc = subprocess.Popen(
                argv,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        finally:
            out.close()

    def _wait_ready(self, timeout: float) -> None:
        bootstrap = self.bootstrap

        def died() -> str | None:
            proc = self._proc
            if proc is None or proc.poll() is None:
                return None
            return self._failure(f"exited with code {proc.returncode} during start")

        if not wait_until(lambda: port_is_open(self.host, self.port or 0), timeout, abort=died):
            raise BrokerStartError(
                self._failure(f"did not listen on {bootstrap} in {timeout:.0f}s")
            )
        if not wait_until(lambda: broker_ready(bootstrap), timeout, abort=died):
            raise BrokerStartError(
                self._failure(f"did not answer metadata on {bootstrap} in {timeout:.0f}s")
            )

    def _failure(self, what: str) -> str:
        parts = [f"{type(self).__name__} {what}.", f"--- tail of {self.log_path} ---"]
        parts.append(tail(self.log_path))
        out = self.workdir / "process.out"
        if out.exists() and out != self.log_path and out.stat().st_size:
            parts += [f"--- tail of {out} ---", tail(out, 30)]
        return "\n".join(parts)

    def stop(self, timeout: float = 30.0) -> None:
        if self._proc is not None:
            self.last_exit_code = stop_group(self._proc, timeout)
            self._proc = None

    def kill(self) -> None:
        if self._proc is not None:
            self.last_exit_code = kill_group(self._proc)
            self._proc = None

    def restart(self, timeout: float = 60.0) -> str:
        self.stop()
        return self.start(timeout)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        where = f"{self.host}:{self.port}" if self.port else "no port"
        return f"<{type(self).__name__} {where} {state}>"
