"""Kafka security end to end: a real Apache Kafka broker with SASL_SSL and SASL_PLAINTEXT.

The test makes its own CA, broker and client certificates (openssl), starts a
KRaft broker whose SASL_SSL listener requires a client certificate and a
SCRAM or PLAIN login, creates the SCRAM users through the admin API
(AlterUserScramCredentials, on the loopback PLAINTEXT listener that also
carries inter-broker traffic), then runs a worker and an attack over SASL_SSL.
Wrong credentials must stop the worker at once with a clear message, and the
password must appear nowhere in what tollguard prints.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from tollguard.brokers._process import free_port
from tollguard.brokers.admin import admin_client
from tollguard.brokers.apache import ApacheKafkaBroker, tools_available
from tollguard.config import Settings
from tollguard.kafka_security import kafka_python_config, preflight
from tollguard.signals.schema import validate_control_signal
from tollguard.simulate.traffic import AttackSpec, BackgroundSpec, attack, background, merge
from tollguard.testing.worker_process import (
    WorkerProcess,
    isolated_settings,
    produce,
    run_cli,
    settings_env,
)

pytestmark = pytest.mark.integration

PASSWORD_512 = "s3cret-Scram512-pw"
PASSWORD_256 = "s3cret-Scram256-pw"
PASSWORD_PLAIN = "s3cret-Plain-pw"
PASSWORD_NOC = "s3cret-Noc-pw"
WRONG = "not-the-Password-9"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificates(d: Path) -> dict[str, Path]:
    """A CA, a broker certificate for 127.0.0.1/localhost and a client certificate."""
    d.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=tollguard-test-ca",
        cwd=d,
    )  # fmt: skip
    for name, san in (("broker", "IP:127.0.0.1,DNS:localhost"), ("client", "DNS:tollguard")):
        _openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", "-subj", f"/CN={name}",
            cwd=d,
        )  # fmt: skip
        (d / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-out", f"{name}.pem",
            "-extfile", f"{name}.ext",
            cwd=d,
        )  # fmt: skip
    # Kafka's PEM key store: an unencrypted PKCS#8 key followed by the certificate.
    _openssl("pkcs8", "-topk8", "-nocrypt", "-in", "broker.key", "-out", "broker.p8", cwd=d)
    (d / "broker-store.pem").write_text(
        (d / "broker.p8").read_text() + (d / "broker.pem").read_text()
    )
    return {
        "ca": d / "ca.pem",
        "broker_store": d / "broker-store.pem",
        "client_cert": d / "client.pem",
        "client_key": d / "client.key",
    }


def _jaas(listener: str) -> dict[str, str]:
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    plain = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'user_plainuser="{PASSWORD_PLAIN}";'
    )
    prefix = f"listener.name.{listener}"
    return {
        f"{prefix}.scram-sha-512.sasl.jaas.config": scram,
        f"{prefix}.scram-sha-256.sasl.jaas.config": scram,
        f"{prefix}.plain.sasl.jaas.config": plain,
    }


class SecureBroker:
    def __init__(self, broker: ApacheKafkaBroker, sasl_ssl: str, sasl_plain: str, certs: Any):
        self.broker = broker
        self.sasl_ssl = sasl_ssl
        self.sasl_plain = sasl_plain
        self.certs = certs

    @property
    def admin_bootstrap(self) -> str:
        return self.broker.bootstrap


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    missing = tools_available()
    if missing is not None:
        pytest.skip(f"the SASL_SSL test needs Apache Kafka: {missing}")
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make the test certificates")
    workdir = tmp_path_factory.mktemp("secure-broker")
    certs = make_certificates(workdir / "certs")
    host = "127.0.0.1"
    port, controller, ssl_port, plain_port = (free_port(host) for _ in range(4))
    listeners = (
        f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller},"
        f"SASL_SSL://{host}:{ssl_port},SASL_PLAINTEXT://{host}:{plain_port}"
    )
    extra = {
        "listeners": listeners,
        "advertised.listeners": listeners,
        "listener.security.protocol.map": (
            "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL,"
            "SASL_PLAINTEXT:SASL_PLAINTEXT"
        ),
        "sasl.enabled.mechanisms": "SCRAM-SHA-512,SCRAM-SHA-256,PLAIN",
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(certs["broker_store"]),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(certs["ca"]),
        # The client certificate is checked as well as the SASL login.
        "listener.name.sasl_ssl.ssl.client.auth": "required",
        # Authorisation by ACLs; the loopback admin/inter-broker listener is ANONYMOUS.
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": "User:ANONYMOUS;User:tollguard;User:tg256;User:plainuser",
        **_jaas("sasl_ssl"),
        **_jaas("sasl_plaintext"),
    }
    broker = ApacheKafkaBroker(
        workdir / "kafka", port=port, controller_port=controller, extra_config=extra
    )
    broker.start(timeout=120)
    try:
        from kafka.admin import (  # type: ignore[import-untyped]
            ScramMechanism,
            UserScramCredentialUpsertion,
        )

        with admin_client(broker.bootstrap, 30) as admin:
            result = admin.alter_user_scram_credentials(
                [
                    UserScramCredentialUpsertion(
                        "tollguard", ScramMechanism.SCRAM_SHA_512, PASSWORD_512
                    ),
                    UserScramCredentialUpsertion(
                        "tg256", ScramMechanism.SCRAM_SHA_256, PASSWORD_256
                    ),
                    UserScramCredentialUpsertion(
                        "noc-ana", ScramMechanism.SCRAM_SHA_512, PASSWORD_NOC
                    ),
                    UserScramCredentialUpsertion(
                        "noc-eve", ScramMechanism.SCRAM_SHA_512, PASSWORD_NOC
                    ),
                ]
            )
        assert not any(result.values()), result
        yield SecureBroker(broker, f"{host}:{ssl_port}", f"{host}:{plain_port}", certs)
    finally:
        broker.stop()
        shutil.rmtree(workdir / "kafka" / "data", ignore_errors=True)


def _secure_settings(sb: SecureBroker, tmp_path: Path, **over: Any) -> Settings:
    values: dict[str, Any] = {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": "tollguard",
        "sasl_password": PASSWORD_512,
        "ssl_cafile": str(sb.certs["ca"]),
        "ssl_certfile": str(sb.certs["client_cert"]),
        "ssl_keyfile": str(sb.certs["client_key"]),
    }
    values.update(over)
    bootstrap = values.pop("bootstrap", sb.sasl_ssl)
    return isolated_settings(bootstrap, tmp_path, partitions=2, **values)


def _produce(settings: Settings, topic: str, items: Iterable[tuple[bytes, bytes]]) -> int:
    config = kafka_python_config(settings)
    del config["bootstrap_servers"]
    return produce(settings.bootstrap, topic, items, **config)


def _read_until_block(settings: Settings, timeout: float = 90) -> list[dict[str, Any]]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        **kafka_python_config(settings),
        group_id=None,
        enable_auto_commit=False,
        consumer_timeout_ms=500,
    )
    try:
        topic = settings.topic_control
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen.extend(orjson.loads(m.value) for m in consumer)
            if any(s["action"] == "block" for s in seen):
                break
        return seen
    finally:
        consumer.close()


def test_attack_end_to_end_over_sasl_ssl_with_scram_sha_512(
    secure_broker: SecureBroker, tmp_path: Path
) -> None:
    settings = _secure_settings(secure_broker, tmp_path)
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        start = int(time.time() * 1000) - 6 * 3_600_000
        bg = list(
            background(BackgroundSpec(lines=10, calls_per_hour=6), start, start + 7_200_000, 5)
        )
        atk = list(attack(AttackSpec(calls=60), start + 3_600_000, 5))
        events = list(merge(iter(bg), iter(atk)))
        _produce(
            settings,
            settings.topic_events,
            ((str(e["line_id"]).encode(), orjson.dumps(e)) for e in events),
        )
        signals = _read_until_block(settings)
        blocks = [s for s in signals if s["action"] == "block"]
        assert blocks, f"no block over SASL_SSL; worker log:\n{worker.log_tail()}"
        for s in signals:
            validate_control_signal(s)
        assert {s["line_id"] for s in blocks} == {atk[0]["line_id"]}
    finally:
        worker.stop()
    log = (tmp_path / "worker.log").read_text(errors="replace")
    assert PASSWORD_512 not in log


def _run_worker(settings: Settings, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings_env(settings)}
    env.pop("TOLLGUARD_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "tollguard.cli.main", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,  # a hang is a failure, reported by pytest; no timing is asserted
        check=False,
    )


def test_wrong_password_fails_fast_with_a_clear_message(
    secure_broker: SecureBroker, tmp_path: Path
) -> None:
    settings = _secure_settings(secure_broker, tmp_path, sasl_password=WRONG)
    result = _run_worker(settings, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "authentication failed for user 'tollguard' with SCRAM-SHA-512" in output, output
    assert secure_broker.sasl_ssl in output
    assert WRONG not in output


def test_wrong_ca_fails_with_a_tls_message(secure_broker: SecureBroker, tmp_path: Path) -> None:
    other = make_certificates(tmp_path / "other-ca")
    settings = _secure_settings(secure_broker, tmp_path, ssl_cafile=str(other["ca"]))
    with pytest.raises(SystemExit) as info:
        preflight(settings, timeout=10)
    assert "TLS" in str(info.value) or "cannot reach" in str(info.value)
    assert PASSWORD_512 not in str(info.value)


@pytest.mark.parametrize(
    ("protocol", "mechanism", "user", "password"),
    [
        ("SASL_SSL", "SCRAM-SHA-256", "tg256", PASSWORD_256),
        ("SASL_SSL", "PLAIN", "plainuser", PASSWORD_PLAIN),
        ("SASL_PLAINTEXT", "SCRAM-SHA-512", "tollguard", PASSWORD_512),
    ],
)
def test_every_mechanism_and_both_client_libraries(
    secure_broker: SecureBroker,
    tmp_path: Path,
    protocol: str,
    mechanism: str,
    user: str,
    password: str,
) -> None:
    import asyncio

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # type: ignore[import-untyped]

    from tollguard.app.detector import kafka_client_config
    from tollguard.app.topics import ensure_tollguard_topics

    bootstrap = secure_broker.sasl_ssl if protocol == "SASL_SSL" else secure_broker.sasl_plain
    settings = _secure_settings(
        secure_broker,
        tmp_path,
        bootstrap=bootstrap,
        security_protocol=protocol,
        sasl_mechanism=mechanism,
        sasl_username=user,
        sasl_password=password,
    )
    ensure_tollguard_topics(settings)  # kafka-python: preflight, admin, metadata

    async def roundtrip() -> bytes:
        producer = AIOKafkaProducer(**kafka_client_config(settings), acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(settings.topic_deadletter, b"hello", key=b"k")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            settings.topic_deadletter,
            **kafka_client_config(settings),
            group_id=None,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            msg = await asyncio.wait_for(consumer.getone(), 30)
            return bytes(msg.value)
        finally:
            await consumer.stop()

    assert asyncio.run(roundtrip()) == b"hello"


def test_manual_block_is_authorised_by_kafka_acls(
    secure_broker: SecureBroker, tmp_path: Path
) -> None:
    from kafka.admin import (
        ACL,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePattern,
        ResourceType,
    )

    from tollguard.app.topics import ensure_tollguard_topics

    owner = _secure_settings(secure_broker, tmp_path)
    ensure_tollguard_topics(owner)
    eve = replace(owner, sasl_username="noc-eve", sasl_password=PASSWORD_NOC)
    refused = run_cli(eve, "block", "pbx-9", "--actor", "eve", "--reason", "test")
    output = refused.stdout + refused.stderr
    assert refused.returncode != 0
    assert "may not write to" in output and "noc-eve" in output, output
    assert PASSWORD_NOC not in output

    acls = [
        ACL(
            "User:noc-ana",
            "*",
            ACLOperation.WRITE,
            ACLPermissionType.ALLOW,
            ResourcePattern(ResourceType.TOPIC, topic, ACLResourcePatternType.LITERAL),
        )
        for topic in (owner.topic_control, owner.topic_blocks)
    ]
    with admin_client(secure_broker.admin_bootstrap, 30) as admin:
        admin.create_acls(acls)
    ana = replace(owner, sasl_username="noc-ana", sasl_password=PASSWORD_NOC)
    for _ in range(20):  # the new ACLs reach the broker through the metadata log
        done = run_cli(ana, "block", "pbx-9", "--actor", "ana", "--reason", "hijacked PBX")
        if done.returncode == 0:
            break
        time.sleep(0.5)
    assert done.returncode == 0, done.stdout + done.stderr

    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**kafka_python_config(owner), group_id=None, consumer_timeout_ms=5000)
    try:
        tps = [TopicPartition(owner.topic_control, p) for p in (0, 1)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        signals = [orjson.loads(m.value) for m in consumer]
    finally:
        consumer.close()
    assert [(s["line_id"], s["actor"], s["source"]) for s in signals] == [
        ("pbx-9", "ana", "manual")
    ]
