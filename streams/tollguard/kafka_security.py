"""Kafka TLS and SASL for every client tollguard opens, built in one place per library.

A carrier's Kafka authenticates tollguard like any other client: TLS with the
carrier's CA (optionally a client certificate) and SASL with SCRAM-SHA-512,
SCRAM-SHA-256 or PLAIN. The settings (`TOLLGUARD_SECURITY_PROTOCOL`,
`TOLLGUARD_SASL_*`, `TOLLGUARD_SSL_*`) become:

* `aiokafka_config()` for the detector, the rules follower and the HEP collector;
* `kafka_python_config()` for topic creation, `rules push`, `simulate`,
  `block`/`unblock`/`blocks` and the Kamailio enforcer;
* `faust_credentials()` for Faust's own consumer and producer.

The password is only ever handed to a client library: it is not in any
`repr`, log line or error message this module produces (`describe()` is the
safe summary), and `preflight()` turns a rejected login into one clear line
instead of a client retrying forever.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import threading
import time
from typing import Any, Final

from tollguard.config import Settings

PROTOCOLS: Final = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS: Final = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


class SecurityConfigError(SystemExit):
    """Settings that cannot work; the message names the variable to fix."""

    def __init__(self, message: str) -> None:
        super().__init__(f"tollguard: {message}")


def protocol(settings: Settings) -> str:
    return (settings.security_protocol or "PLAINTEXT").strip().upper()


def uses_tls(settings: Settings) -> bool:
    return protocol(settings) in ("SSL", "SASL_SSL")


def uses_sasl(settings: Settings) -> bool:
    return protocol(settings) in ("SASL_PLAINTEXT", "SASL_SSL")


def mechanism(settings: Settings) -> str:
    return (settings.sasl_mechanism or "SCRAM-SHA-512").strip().upper()


def check(settings: Settings) -> None:
    """Raise SecurityConfigError if the security settings cannot be used as given."""
    proto = protocol(settings)
    if proto not in PROTOCOLS:
        raise SecurityConfigError(
            f"TOLLGUARD_SECURITY_PROTOCOL={settings.security_protocol!r} is not one of "
            + ", ".join(PROTOCOLS)
        )
    if uses_sasl(settings):
        if mechanism(settings) not in SASL_MECHANISMS:
            raise SecurityConfigError(
                f"TOLLGUARD_SASL_MECHANISM={settings.sasl_mechanism!r} is not one of "
                + ", ".join(SASL_MECHANISMS)
            )
        if not settings.sasl_username or not settings.sasl_password:
            raise SecurityConfigError(
                f"{proto} needs TOLLGUARD_SASL_USERNAME and TOLLGUARD_SASL_PASSWORD"
            )
    if settings.ssl_keyfile and not settings.ssl_certfile:
        raise SecurityConfigError("TOLLGUARD_SSL_KEYFILE is set but TOLLGUARD_SSL_CERTFILE is not")
    if uses_tls(settings):
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(settings, name)
            if path and not os.access(path, os.R_OK):
                raise SecurityConfigError(f"TOLLGUARD_{name.upper()}={path} is not readable")


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """A client TLS context (CA, optional client certificate), or None without TLS.

    Hostnames are verified: the broker certificate must name the address in
    TOLLGUARD_BROKER. Without TOLLGUARD_SSL_CAFILE the system CAs are used.
    """
    if not uses_tls(settings):
        return None
    check(settings)
    from aiokafka.helpers import create_ssl_context  # type: ignore[import-untyped]

    try:
        context: ssl.SSLContext = create_ssl_context(
            cafile=settings.ssl_cafile or None,
            certfile=settings.ssl_certfile or None,
            keyfile=settings.ssl_keyfile or None,
        )
    except (ssl.SSLError, OSError) as exc:
        raise SecurityConfigError(
            f"cannot load TLS files (TOLLGUARD_SSL_CAFILE / _CERTFILE / _KEYFILE): {exc}"
        ) from None
    return context


def aiokafka_config(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for AIOKafkaConsumer/Producer: bootstrap plus security."""
    check(settings)
    config: dict[str, Any] = {"bootstrap_servers": settings.bootstrap}
    proto = protocol(settings)
    if proto == "PLAINTEXT":
        return config
    config["security_protocol"] = proto
    if uses_tls(settings):
        config["ssl_context"] = ssl_context(settings)
    if uses_sasl(settings):
        config["sasl_mechanism"] = mechanism(settings)
        config["sasl_plain_username"] = settings.sasl_username
        config["sasl_plain_password"] = settings.sasl_password
    return config


def kafka_python_config(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for kafka-python clients (admin, consumer, producer)."""
    check(settings)
    config: dict[str, Any] = {"bootstrap_servers": settings.bootstrap.split(",")}
    proto = protocol(settings)
    if proto == "PLAINTEXT":
        return config
    config["security_protocol"] = proto
    if uses_tls(settings):
        config["ssl_context"] = ssl_context(settings)
        config["ssl_check_hostname"] = True
    if uses_sasl(settings):
        config["sasl_mechanism"] = mechanism(settings)
        config["sasl_plain_username"] = settings.sasl_username
        config["sasl_plain_password"] = settings.sasl_password
    return config


def faust_credentials(settings: Settings) -> Any:
    """`broker_credentials` for faust.App: SASLCredentials, SSLCredentials or None."""
    check(settings)
    import faust

    context = ssl_context(settings)
    if uses_sasl(settings):
        return faust.SASLCredentials(
            username=settings.sasl_username,
            password=settings.sasl_password,
            ssl_context=context,
            mechanism=mechanism(settings),
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def describe(settings: Settings) -> str:
    """How tollguard connects, for logs and messages: never the password."""
    proto = protocol(settings)
    where = settings.bootstrap
    if uses_sasl(settings):
        return f"{proto} {mechanism(settings)} as {settings.sasl_username!r} to {where}"
    return f"{proto} to {where}"


def failure_message(settings: Settings, cause: str) -> str:
    """One clear line for a connection refused for security reasons, else ''."""
    text = redact(settings, cause)
    lowered = text.lower()
    if "authentication" in lowered or "sasl" in lowered:
        return (
            f"tollguard: authentication failed for user {settings.sasl_username!r} with "
            f"{mechanism(settings)} at {settings.bootstrap}: check TOLLGUARD_SASL_USERNAME, "
            f"TOLLGUARD_SASL_PASSWORD and TOLLGUARD_SASL_MECHANISM ({text})"
        )
    if "ssl" in lowered or "certificate" in lowered or "tls" in lowered:
        return (
            f"tollguard: TLS handshake with {settings.bootstrap} failed: check "
            f"TOLLGUARD_SECURITY_PROTOCOL, TOLLGUARD_SSL_CAFILE and the broker's certificate "
            f"({text})"
        )
    return ""


def redact(settings: Settings, text: str) -> str:
    return text.replace(settings.sasl_password, "***") if settings.sasl_password else text


class _Capture(logging.Handler):
    """Keeps what aiokafka logs about failed connections: the exception it raises does not."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            self.messages.append(record.getMessage())


async def _bootstrap_once(settings: Settings, timeout: float) -> None:
    from aiokafka import AIOKafkaClient  # type: ignore[import-untyped]

    client = AIOKafkaClient(**aiokafka_config(settings), request_timeout_ms=int(timeout * 1000))
    try:
        await asyncio.wait_for(client.bootstrap(), timeout)
    finally:
        await client.close()


def _attempt(settings: Settings, timeout: float) -> tuple[str | None, list[str]]:
    """One bootstrap: (None, []) when it worked, else (error, what aiokafka logged)."""
    capture = _Capture()
    logger = logging.getLogger("aiokafka")
    logger.addHandler(capture)
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(_bootstrap_once(settings, timeout))
        except BaseException as exc:
            outcome.append(exc)

    try:
        # Its own thread and loop: callers may already be inside an event loop.
        thread = threading.Thread(target=run, name="tollguard-preflight", daemon=True)
        thread.start()
        thread.join(timeout + 5)
    finally:
        logger.removeHandler(capture)
    if thread.is_alive():
        return "no answer", capture.messages
    if outcome:
        return f"{type(outcome[0]).__name__}: {outcome[0]}", capture.messages
    return None, []


def preflight(settings: Settings, timeout: float = 15.0, *, security_only: bool = False) -> None:
    """Connect and log in once; raise SystemExit with a clear message if that fails.

    Clients retry a rejected login as patiently as an unreachable broker; a
    worker with a wrong password must stop at once and say why instead. One
    aiokafka bootstrap (a single attempt per address) decides. With
    `security_only`, an unreachable broker is left to the client's own
    retries (long-running adapters wait for Kafka) and only a refused login
    or TLS handshake stops the command.
    """
    check(settings)
    deadline = time.monotonic() + timeout
    while True:
        error, messages = _attempt(settings, max(1.0, min(10.0, deadline - time.monotonic())))
        if error is None:
            return
        cause = "; ".join(messages[-3:]) or error
        message = failure_message(settings, cause)
        if message:
            raise SystemExit(message)  # retrying cannot fix credentials or certificates
        if security_only:
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(0.5)  # a broker still starting up: try again until the deadline
    raise SystemExit(
        f"tollguard: cannot reach Kafka at {settings.broker} ({describe(settings)}): "
        f"{redact(settings, cause)}\nCheck that the broker is running and "
        "TOLLGUARD_BROKER / TOLLGUARD_SECURITY_PROTOCOL match its listener "
        "(or run `tollguard demo` for an embedded broker)."
    )
