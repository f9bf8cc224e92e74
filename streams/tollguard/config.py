"""Settings for every tollguard command, from TOLLGUARD_* variables or a file.

Each setting is declared once with its environment name, so `--help`, the
README and the Helm chart can all point at the same list.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

REPO_RULES = Path(__file__).resolve().parents[2] / "rules"


def _default_rules() -> str:
    return str(REPO_RULES / "default.yaml")


@dataclass(frozen=True, slots=True)
class Settings:
    broker: str = "kafka://localhost:9092"
    rules: str = field(default_factory=_default_rules)
    app_id: str = "tollguard"
    topic_events: str = "calls.events"
    topic_control: str = "tollguard.control"
    topic_blocks: str = "tollguard.blocks"
    topic_rules: str = "tollguard.rules"
    topic_deadletter: str = "tollguard.deadletter"
    # Compacted changelog of per-line engine state; empty means "<app_id>.state".
    topic_state: str = ""
    # Partitions used when tollguard has to create calls.events itself.
    event_partitions: int = 8
    web_host: str = "0.0.0.0"
    web_port: int = 6066
    data_dir: str = "/tmp/tollguard"
    log_level: str = "info"
    lateness_s: int = 60
    max_event_bytes: int = 64 * 1024
    # Deepest nesting of arrays/objects in an event; deeper is rejected as oversize.
    max_event_depth: int = 16
    # Most events the detector takes from Kafka per batch, and how often it commits.
    batch_size: int = 10000
    commit_interval_s: float = 1.0
    # Idempotent producer for signals and state (needs InitProducerId; the
    # embedded demo broker does not implement it, so the demo turns it off).
    producer_idempotence: bool = True
    # Lines with no event for this long (event time) and no open block are
    # forgotten, also in the changelog: memory stays bounded. It also bounds
    # how long a quiet line's learned destinations are remembered.
    idle_evict_s: int = 14 * 86_400
    expiry_interval_s: float = 1.0
    # Closed loop with a SIP proxy (issue 6): `tollguard ingest hep` and
    # `tollguard enforce kamailio`.
    hep_listen: str = "127.0.0.1:9060"
    hep_line_source: str = "from"  # from | pai | header:NAME
    kamailio_rpc_url: str = "http://127.0.0.1:5071/RPC"
    kamailio_htable: str = "tgblock"
    enforce_resync_s: float = 30.0
    # Kafka security (TLS/SASL); empty means plaintext.
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: str = field(default="", repr=False)
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""

    @property
    def state_topic(self) -> str:
        return self.topic_state or f"{self.app_id}.state"

    @property
    def bootstrap(self) -> str:
        """Plain host:port list for clients that do not take kafka:// URLs."""
        from tollguard.brokers.admin import parse_broker_url

        return parse_broker_url(self.broker)


def _coerce(name: str, raw: Any, current: Any) -> Any:
    if isinstance(current, bool):
        return str(raw).lower() in ("1", "true", "yes", "on")
    if isinstance(current, int):
        try:
            return int(raw)
        except ValueError:
            raise SystemExit(
                f"tollguard: setting {name} must be a whole number, got {raw!r}"
            ) from None
    if isinstance(current, float):
        try:
            return float(raw)
        except ValueError:
            raise SystemExit(f"tollguard: setting {name} must be a number, got {raw!r}") from None
    return str(raw)


def load_settings(
    config_file: str | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Defaults, then the config file, then TOLLGUARD_* variables, then overrides."""
    env = os.environ if env is None else env
    settings = Settings()
    names = {f.name for f in fields(Settings)}
    values: dict[str, Any] = {}
    path = config_file or env.get("TOLLGUARD_CONFIG")
    if path:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise SystemExit(f"tollguard: cannot read config file {path}: {exc.strerror}") from None
        if not isinstance(data, dict):
            raise SystemExit(f"tollguard: config file {path} must be a mapping of settings")
        for key, value in data.items():
            if key not in names:
                raise SystemExit(f"tollguard: unknown setting {key!r} in {path}")
            values[key] = value
    for name in names:
        raw = env.get(f"TOLLGUARD_{name.upper()}")
        if raw is not None:
            values[name] = raw
    values.update({k: v for k, v in overrides.items() if v is not None})
    coerced = {k: _coerce(k, v, getattr(settings, k)) for k, v in values.items()}
    return replace(settings, **coerced)
