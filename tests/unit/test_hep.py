"""HEPv3 + SIP parsing and the SIP-to-call-event mapping (crafted packets, no I/O)."""

from __future__ import annotations

import asyncio
import struct

import pytest

from tollguard.adapters.hep import (
    HepError,
    LineSource,
    SipEventMapper,
    build_hep,
    parse_hep,
    parse_sip,
    uri_user,
)
from tollguard.adapters.hep_collector import CollectorMetrics, HepIngest

TS = 1_795_910_400_123


def invite(
    call_id: str = "c1@pbx",
    line: str = "pbx-1",
    callee: str = "01023276123456",
    to_tag: str = "",
    extra: str = "",
) -> bytes:
    return (
        f"INVITE sip:{callee}@10.0.0.1:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-1\r\n"
        f'From: "PBX" <sip:{line}@127.0.0.1:5090>;tag=abc\r\n'
        f"To: <sip:{callee}@10.0.0.1>{to_tag}\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 INVITE\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def response(code: int, call_id: str = "c1@pbx", method: str = "INVITE") -> bytes:
    return (
        f"SIP/2.0 {code} Whatever\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-1\r\n"
        "From: <sip:pbx-1@127.0.0.1>;tag=abc\r\n"
        "To: <sip:01023276123456@10.0.0.1>;tag=far\r\n"
        f"i: {call_id}\r\n"
        f"CSeq: 1 {method}\r\n\r\n"
    ).encode()


def bye(call_id: str = "c1@pbx") -> bytes:
    return (
        "BYE sip:pbx-1@127.0.0.1:5090 SIP/2.0\r\n"
        "From: <sip:01023276123456@10.0.0.1>;tag=far\r\n"
        "To: <sip:pbx-1@127.0.0.1>;tag=abc\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 2 BYE\r\n\r\n"
    ).encode()


def hep(payload: bytes, ts: int = TS) -> bytes:
    return build_hep(payload, ts_ms=ts, src=("192.0.2.7", 5090), dst=("127.0.0.1", 5060))


def test_hep_roundtrip_reads_every_field() -> None:
    p = parse_hep(hep(b"OPTIONS sip:x@y SIP/2.0\r\n\r\n"))
    assert p.ts_ms == TS
    assert (p.src_ip, p.src_port, p.dst_ip, p.dst_port) == ("192.0.2.7", 5090, "127.0.0.1", 5060)
    assert p.proto_type == 1 and p.capture_id == 1
    assert p.payload.startswith(b"OPTIONS")


def test_hep_ipv6_and_vendor_chunks() -> None:
    raw = build_hep(b"x", ts_ms=TS, src=("::1", 1), dst=("::1", 2))
    vendor = struct.pack("!HHH", 0x0007, 3, 8) + b"zz"
    body = raw[6:] + vendor
    p = parse_hep(b"HEP3" + struct.pack("!H", len(body) + 6) + body)
    assert p.src_ip == "::1" and p.payload == b"x"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "truncated"),
        (b"HEP2\x00\x10" + b"\x00" * 10, "not_hep"),
        (b"HEP3\xff\xff", "truncated"),
        (b"HEP3\x00\x0c" + struct.pack("!HHH", 0, 15, 2), "bad_chunk"),
        (b"HEP3\x00\x0c" + struct.pack("!HHH", 0, 15, 40), "bad_chunk"),
        (b"HEP3\x00\x0b" + struct.pack("!HHH", 0, 9, 5)[:5], "bad_chunk"),
        (b"HEP3\x00\x0d" + struct.pack("!HHH", 0, 9, 7) + b"\x01", "no_payload"),
        (b"HEP3\x00\x0f" + struct.pack("!HHH", 0, 9, 9) + b"\x01\x02\x03", "bad_chunk"),
        (b"HEP3\x00\x0e" + struct.pack("!HHH", 0, 3, 8) + b"\x01\x02", "bad_chunk"),
        (b"HEP3\x00\x0d" + struct.pack("!HHH", 0, 16, 7) + b"z", "compressed"),
    ],
)
def test_malformed_hep_is_rejected_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(HepError) as exc:
        parse_hep(data)
    assert exc.value.reason == reason


def test_sip_parsing_compact_and_folded_headers() -> None:
    msg = parse_sip(b"SIP/2.0 200 OK\r\nf: <sip:a@b>;tag=1\r\nSubject: one\r\n two\r\n\r\nbody")
    assert msg.status == 200 and msg.method is None
    assert msg.header("from") == "<sip:a@b>;tag=1"
    assert msg.header("subject") == "one two"


@pytest.mark.parametrize(
    "payload",
    [b"HELLO WORLD\r\n\r\n", b"SIP/2.0 abc\r\n\r\n", b"INVITE sip:x SIP/2.0\r\nNoColon\r\n\r\n"],
)
def test_bad_sip_raises(payload: bytes) -> None:
    with pytest.raises(HepError) as exc:
        parse_sip(payload)
    assert exc.value.reason == "bad_sip"


@pytest.mark.parametrize(
    ("value", "user"),
    [
        ('"A" <sip:0312@host>;tag=1', "0312"),
        ("sip:+23276123456@gw;user=phone", "+23276123456"),
        ("<sips:alice:secret@host>", "alice"),
        ("<tel:+81312345678;phone-context=x>", "+81312345678"),
        ("sip:host.example", None),
        ("mailto:x@y", None),
    ],
)
def test_uri_user(value: str, user: str | None) -> None:
    assert uri_user(value) == user


def test_call_lifecycle_to_events() -> None:
    m = SipEventMapper()
    setup = m.feed(parse_hep(hep(invite())), 0)
    assert setup == {
        "v": 1,
        "type": "setup",
        "call_id": "c1@pbx",
        "ts": TS,
        "line_id": "pbx-1",
        "callee": "01023276123456",
        "caller": "pbx-1",
        "src_ip": "192.0.2.7",
    }
    # the forwarded copy of the same INVITE and provisional responses make nothing
    assert m.feed(parse_hep(hep(invite())), 0) is None
    assert m.feed(parse_hep(hep(response(100))), 0) is None
    answer = m.feed(parse_hep(hep(response(200), TS + 2000)), 0)
    assert answer is not None and answer["type"] == "answer" and answer["line_id"] == "pbx-1"
    assert m.feed(parse_hep(hep(response(200), TS + 2001)), 0) is None
    release = m.feed(parse_hep(hep(bye(), TS + 32_000)), 0)
    assert release is not None and release["type"] == "release"
    assert release["line_id"] == "pbx-1" and release["duration_s"] == 30.0
    assert m.feed(parse_hep(hep(bye(), TS + 32_001)), 0) is None
    assert m.feed(parse_hep(hep(response(200, method="BYE"))), 0) is None


def test_rejected_call_is_released_with_zero_duration() -> None:
    m = SipEventMapper()
    m.feed(parse_hep(hep(invite(call_id="r1"))), 0)
    rel = m.feed(parse_hep(hep(response(403, call_id="r1"))), 0)
    assert rel is not None and rel["type"] == "release" and rel["duration_s"] == 0


def test_reinvite_and_unknown_calls_make_no_event() -> None:
    m = SipEventMapper()
    assert m.feed(parse_hep(hep(invite(to_tag=";tag=far"))), 0) is None
    assert m.feed(parse_hep(hep(response(200, call_id="nope"))), 0) is None
    assert m.feed(parse_hep(hep(bye(call_id="nope"))), 0) is None


@pytest.mark.parametrize(
    ("source", "extra", "line"),
    [
        ("from", "", "pbx-1"),
        ("pai", "P-Asserted-Identity: <sip:+81312345678@carrier>\r\n", "+81312345678"),
        ("header:X-Line", "X-Line: trunk-7\r\n", "trunk-7"),
        ("header:X-Line", "X-Line: <sip:acct-9@sbc>\r\n", "acct-9"),
    ],
)
def test_line_source_is_configurable(source: str, extra: str, line: str) -> None:
    m = SipEventMapper(LineSource(source))
    event = m.feed(parse_hep(hep(invite(extra=extra))), 0)
    assert event is not None and event["line_id"] == line


def test_missing_line_or_call_id_is_an_error() -> None:
    m = SipEventMapper(LineSource("pai"))
    with pytest.raises(HepError) as exc:
        m.feed(parse_hep(hep(invite())), 0)
    assert exc.value.reason == "no_line"
    with pytest.raises(HepError) as exc:
        SipEventMapper().feed(
            parse_hep(hep(b"INVITE sip:1@h SIP/2.0\r\nFrom: <sip:a@b>\r\n\r\n")), 0
        )
    assert exc.value.reason == "missing_header"
    with pytest.raises(ValueError):
        LineSource("to")


def test_non_sip_hep_is_rejected_and_missing_time_uses_now() -> None:
    m = SipEventMapper()
    raw = build_hep(invite(), ts_ms=TS, proto_type=5)
    with pytest.raises(HepError) as exc:
        m.feed(parse_hep(raw), 0)
    assert exc.value.reason == "not_sip"
    packet = parse_hep(hep(invite()))
    event = m.feed(type(packet)(None, None, None, None, None, 1, None, packet.payload), 42)
    assert event is not None and event["ts"] == 42 and "src_ip" not in event


def test_call_table_is_bounded() -> None:
    m = SipEventMapper(max_calls=10)
    for i in range(50):
        m.feed(parse_hep(hep(invite(call_id=f"c{i}"))), 0)
    assert m.tracked_calls() == 10


def test_ingest_counts_drops_and_never_raises() -> None:
    metrics = CollectorMetrics()
    queue: asyncio.Queue[dict[str, object]] = asyncio.Queue(maxsize=2)
    ingest = HepIngest(SipEventMapper(), metrics, queue)
    for data in [b"junk-not-hep", b"HEP3\x00\x06", hep(b"\xff\xfe garbage"), b"x" * 70_000]:
        ingest.handle(data, 0)
    for i in range(4):
        ingest.handle(hep(invite(call_id=f"q{i}")), 0)
    reg = metrics.registry
    drops = {
        reason: reg.get_sample_value("tollguard_hep_dropped_total", {"reason": reason})
        for reason in ("not_hep", "no_payload", "bad_sip", "oversize", "backpressure")
    }
    assert drops == {
        "not_hep": 1.0,
        "no_payload": 1.0,
        "bad_sip": 1.0,
        "oversize": 1.0,
        "backpressure": 2.0,
    }
    assert queue.qsize() == 2
    assert reg.get_sample_value("tollguard_hep_packets_total") == 8.0


def test_other_methods_and_provisional_responses_are_skipped_unparsed() -> None:
    m = SipEventMapper()
    # not even a Call-ID: skipped before parsing, so no error either
    assert m.feed(parse_hep(hep(b"OPTIONS sip:x@y SIP/2.0\r\n\r\n")), 0) is None
    assert m.feed(parse_hep(hep(b"SIP/2.0 180 Ringing\r\n\r\n")), 0) is None
    assert m.feed(parse_hep(hep(b"ACK sip:x@y SIP/2.0\r\n\r\n")), 0) is None
    with pytest.raises(HepError):
        m.feed(parse_hep(hep(b"SIP/2.0 200 OK\r\n\r\n")), 0)  # a final response needs a Call-ID


def test_parse_sip_keeps_only_wanted_headers() -> None:
    msg = parse_sip(invite(extra="X-Other: 1\r\n"), frozenset({"call-id", "from"}))
    assert set(msg.headers) == {"call-id", "from"}
