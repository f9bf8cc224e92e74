"""Kafka security settings become the same TLS/SASL in every client library, password hidden."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from tollguard import kafka_security as ks
from tollguard.config import load_settings

SECRET = "pa55-Very-Secret"


def _settings(**over: str) -> ks.Settings:
    values = {
        "broker": "kafka://kafka-1:9093,kafka-2:9093",
        "security_protocol": "sasl_ssl",
        "sasl_mechanism": "scram-sha-512",
        "sasl_username": "tollguard",
        "sasl_password": SECRET,
    }
    values.update(over)
    return load_settings(env={}, **values)


def test_plaintext_is_just_bootstrap() -> None:
    s = load_settings(env={}, broker="kafka://k:9092")
    assert ks.aiokafka_config(s) == {"bootstrap_servers": "k:9092"}
    assert ks.kafka_python_config(s) == {"bootstrap_servers": ["k:9092"]}
    assert ks.faust_credentials(s) is None


def test_sasl_ssl_for_all_three_libraries() -> None:
    s = _settings()
    aio = ks.aiokafka_config(s)
    assert aio["security_protocol"] == "SASL_SSL"
    assert aio["sasl_mechanism"] == "SCRAM-SHA-512"
    assert aio["sasl_plain_username"] == "tollguard"
    assert aio["sasl_plain_password"] == SECRET
    assert isinstance(aio["ssl_context"], ssl.SSLContext)
    assert aio["ssl_context"].check_hostname
    kp = ks.kafka_python_config(s)
    assert kp["bootstrap_servers"] == ["kafka-1:9093", "kafka-2:9093"]
    assert kp["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kp["ssl_check_hostname"] is True
    creds = ks.faust_credentials(s)
    assert creds.mechanism.value == "SCRAM-SHA-512"
    assert creds.protocol.value == "SASL_SSL"
    assert SECRET not in repr(creds)


def test_sasl_plaintext_has_no_tls_and_tls_alone_has_no_sasl() -> None:
    s = _settings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN")
    cfg = ks.aiokafka_config(s)
    assert "ssl_context" not in cfg and cfg["sasl_mechanism"] == "PLAIN"
    s = _settings(security_protocol="SSL", sasl_username="", sasl_password="")
    cfg = ks.aiokafka_config(s)
    assert cfg["security_protocol"] == "SSL" and "sasl_mechanism" not in cfg
    assert type(ks.faust_credentials(s)).__name__ == "SSLCredentials"


def test_mechanism_defaults_to_scram_sha_512() -> None:
    assert ks.aiokafka_config(_settings(sasl_mechanism=""))["sasl_mechanism"] == "SCRAM-SHA-512"


@pytest.mark.parametrize(
    ("over", "names"),
    [
        ({"security_protocol": "TLS"}, "TOLLGUARD_SECURITY_PROTOCOL"),
        ({"sasl_mechanism": "GSSAPI"}, "TOLLGUARD_SASL_MECHANISM"),
        ({"sasl_password": ""}, "TOLLGUARD_SASL_PASSWORD"),
        ({"ssl_cafile": "/nonexistent/ca.pem"}, "TOLLGUARD_SSL_CAFILE"),
        ({"ssl_keyfile": "/tmp/k.pem"}, "TOLLGUARD_SSL_CERTFILE"),
    ],
)
def test_unusable_settings_name_the_variable(over: dict[str, str], names: str) -> None:
    with pytest.raises(SystemExit) as info:
        ks.aiokafka_config(_settings(**over))
    assert names in str(info.value)
    assert SECRET not in str(info.value)


def test_password_is_in_no_repr_description_or_failure_message() -> None:
    s = _settings()
    assert SECRET not in repr(s)
    assert SECRET not in ks.describe(s)
    message = ks.failure_message(s, f"SaslAuthenticationFailed for {SECRET}")
    assert "authentication failed for user 'tollguard' with SCRAM-SHA-512" in message
    assert "kafka-1:9093" in message
    assert SECRET not in message


def test_settings_from_environment_and_file(tmp_path: Path) -> None:
    env = {
        "TOLLGUARD_SECURITY_PROTOCOL": "SASL_SSL",
        "TOLLGUARD_SASL_MECHANISM": "SCRAM-SHA-256",
        "TOLLGUARD_SASL_USERNAME": "u",
        "TOLLGUARD_SASL_PASSWORD": SECRET,
    }
    s = load_settings(env=env)
    assert ks.aiokafka_config(s)["sasl_mechanism"] == "SCRAM-SHA-256"
    cfg = tmp_path / "tollguard.yaml"
    cfg.write_text("security_protocol: SASL_PLAINTEXT\nsasl_username: f\nsasl_password: p\n")
    s = load_settings(str(cfg), env={})
    assert ks.kafka_python_config(s)["sasl_plain_username"] == "f"


def test_preflight_reports_an_unreachable_broker_unless_only_security_matters() -> None:
    s = load_settings(env={}, broker="kafka://127.0.0.1:1")
    ks.preflight(s, 1.0, security_only=True)  # adapters wait for Kafka themselves
    with pytest.raises(SystemExit) as info:
        ks.preflight(s, 1.0)
    assert "cannot reach Kafka at kafka://127.0.0.1:1" in str(info.value)
