"""HEPv3 packets with SIP inside, to call events (SPEC section 2). No I/O.

Kamailio's `siptrace` module (with `hep_mode_on`) mirrors every SIP message of
a traced transaction to a collector as a HEPv3 datagram: a `HEP3` header, the
total length, then chunks of (vendor, type, length, payload). We read the
capture time, source address and the SIP payload, and turn

* an initial INVITE (no To tag) into a `setup` event,
* a 2xx final response to it into `answer`,
* a 3xx-6xx final response to it, or a BYE, into `release`.

Which header names the protected line is configurable (`LineSource`): the From
user (default; what a PBX registers as), the P-Asserted-Identity user, or any
header such as `X-Line` that the SBC adds. Replies and BYEs carry no reliable
line identity (a BYE from the far end has From and To swapped), so the mapper
remembers the line of each call it saw set up, in a bounded table.

Everything here raises `HepError(reason)` for bad input; the collector counts
the reason and drops the packet. Nothing in this module decides fraud.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Final

MAGIC: Final = b"HEP3"
MAX_PACKET: Final = 65535

# Chunk types of the generic vendor (0), from the HEPv3 specification.
CH_IP_FAMILY: Final = 1
CH_IP_PROTO: Final = 2
CH_SRC_IP4: Final = 3
CH_DST_IP4: Final = 4
CH_SRC_IP6: Final = 5
CH_DST_IP6: Final = 6
CH_SRC_PORT: Final = 7
CH_DST_PORT: Final = 8
CH_TS_SEC: Final = 9
CH_TS_USEC: Final = 10
CH_PROTO_TYPE: Final = 11
CH_CAPTURE_ID: Final = 12
CH_PAYLOAD: Final = 15
CH_PAYLOAD_ZIP: Final = 16
CH_CORRELATION: Final = 17

PROTO_SIP: Final = 1

# Compact header forms (RFC 3261 section 7.3.3) we read.
_COMPACT: Final = {
    "i": "call-id",
    "f": "from",
    "t": "to",
    "v": "via",
    "m": "contact",
    "l": "content-length",
}


class HepError(ValueError):
    """Input we drop; `reason` is a short, bounded label for metrics."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class HepPacket:
    ts_ms: int | None
    src_ip: str | None
    dst_ip: str | None
    src_port: int | None
    dst_port: int | None
    proto_type: int | None
    capture_id: int | None
    payload: bytes


def parse_hep(data: bytes) -> HepPacket:
    """One HEPv3 datagram to its fields; raises HepError on anything malformed."""
    if len(data) < 6:
        raise HepError("truncated", f"{len(data)} bytes")
    if data[:4] != MAGIC:
        raise HepError("not_hep", "no HEP3 magic")
    (total,) = struct.unpack_from("!H", data, 4)
    if total < 6 or total > len(data):
        raise HepError("truncated", f"header says {total} bytes, got {len(data)}")
    pos = 6
    ts_sec: int | None = None
    ts_usec = 0
    src_ip = dst_ip = None
    src_port = dst_port = proto_type = capture_id = None
    payload: bytes | None = None
    while pos < total:
        if pos + 6 > total:
            raise HepError("bad_chunk", f"chunk header past end at {pos}")
        vendor, ctype, clen = struct.unpack_from("!HHH", data, pos)
        if clen < 6 or pos + clen > total:
            raise HepError("bad_chunk", f"chunk {vendor}/{ctype} length {clen} at {pos}")
        body = data[pos + 6 : pos + clen]
        pos += clen
        if vendor != 0:
            continue  # vendor-specific chunks are allowed and ignored
        if ctype == CH_PAYLOAD:
            payload = body
        elif ctype == CH_PAYLOAD_ZIP:
            raise HepError("compressed", "compressed payload not supported")
        elif ctype == CH_TS_SEC:
            ts_sec = _uint(body, ctype)
        elif ctype == CH_TS_USEC:
            ts_usec = _uint(body, ctype)
        elif ctype in (CH_SRC_IP4, CH_DST_IP4, CH_SRC_IP6, CH_DST_IP6):
            want = 4 if ctype in (CH_SRC_IP4, CH_DST_IP4) else 16
            if len(body) != want:
                raise HepError("bad_chunk", f"address chunk {ctype} of {len(body)} bytes")
            addr = socket.inet_ntop(socket.AF_INET if want == 4 else socket.AF_INET6, body)
            if ctype in (CH_SRC_IP4, CH_SRC_IP6):
                src_ip = addr
            else:
                dst_ip = addr
        elif ctype == CH_SRC_PORT:
            src_port = _uint(body, ctype)
        elif ctype == CH_DST_PORT:
            dst_port = _uint(body, ctype)
        elif ctype == CH_PROTO_TYPE:
            proto_type = _uint(body, ctype)
        elif ctype == CH_CAPTURE_ID:
            capture_id = _uint(body, ctype)
    if payload is None:
        raise HepError("no_payload", "no payload chunk")
    ts_ms = ts_sec * 1000 + ts_usec // 1000 if ts_sec is not None else None
    return HepPacket(ts_ms, src_ip, dst_ip, src_port, dst_port, proto_type, capture_id, payload)


def _uint(body: bytes, ctype: int) -> int:
    if len(body) in (1, 2, 4):
        return int.from_bytes(body, "big")
    raise HepError("bad_chunk", f"chunk {ctype} of {len(body)} bytes is not an integer")


def build_hep(
    payload: bytes,
    *,
    ts_ms: int,
    src: tuple[str, int] = ("127.0.0.1", 5060),
    dst: tuple[str, int] = ("127.0.0.1", 5060),
    proto_type: int = PROTO_SIP,
    capture_id: int = 1,
) -> bytes:
    """A HEPv3 datagram as siptrace sends it (used by tests and load tools)."""

    def chunk(ctype: int, body: bytes) -> bytes:
        return struct.pack("!HHH", 0, ctype, len(body) + 6) + body

    src_ip = ipaddress.ip_address(src[0])
    dst_ip = ipaddress.ip_address(dst[0])
    v6 = src_ip.version == 6
    parts = [
        chunk(CH_IP_FAMILY, bytes([10 if v6 else 2])),
        chunk(CH_IP_PROTO, bytes([17])),
        chunk(CH_SRC_IP6 if v6 else CH_SRC_IP4, src_ip.packed),
        chunk(CH_DST_IP6 if v6 else CH_DST_IP4, dst_ip.packed),
        chunk(CH_SRC_PORT, struct.pack("!H", src[1])),
        chunk(CH_DST_PORT, struct.pack("!H", dst[1])),
        chunk(CH_TS_SEC, struct.pack("!I", ts_ms // 1000)),
        chunk(CH_TS_USEC, struct.pack("!I", (ts_ms % 1000) * 1000)),
        chunk(CH_PROTO_TYPE, bytes([proto_type])),
        chunk(CH_CAPTURE_ID, struct.pack("!I", capture_id)),
        chunk(CH_PAYLOAD, payload),
    ]
    body = b"".join(parts)
    return MAGIC + struct.pack("!H", len(body) + 6) + body


@dataclass(frozen=True, slots=True)
class SipMessage:
    method: str | None  # request method, or None for a response
    status: int | None  # response code, or None for a request
    ruri: str | None
    headers: dict[str, list[str]]

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None


def parse_sip(payload: bytes, wanted: frozenset[str] | None = None) -> SipMessage:
    """Start line and headers of a SIP message (the body is not needed).

    With `wanted` (lower-case long names), other headers are skipped: the
    collector reads five headers of a dozen and this is its hot path.
    """
    head, _, _ = payload.partition(b"\r\n\r\n")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = head.decode("latin-1")
    lines = text.split("\r\n")
    if len(lines) == 1 and "\n" in text:
        lines = text.split("\n")
    start = lines[0].strip()
    method = ruri = None
    status = None
    if start.startswith("SIP/2.0 "):
        code = start[8:11]
        if not code.isdigit():
            raise HepError("bad_sip", f"bad status line {start[:40]!r}")
        status = int(code)
    else:
        parts = start.split(" ")
        if len(parts) != 3 or parts[2] != "SIP/2.0" or not parts[0].isalpha():
            raise HepError("bad_sip", f"bad start line {start[:40]!r}")
        method, ruri = parts[0].upper(), parts[1]
    headers: dict[str, list[str]] = {}
    last: str | None = None
    for line in lines[1:]:
        if not line:
            continue
        if line[0] in " \t" and last is not None:  # folded continuation
            headers[last][-1] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise HepError("bad_sip", f"header line without colon {line[:40]!r}")
        key = name.strip().lower()
        key = _COMPACT.get(key, key)
        if wanted is not None and key not in wanted:
            last = None
            continue
        headers.setdefault(key, []).append(value.strip())
        last = key
    return SipMessage(method, status, ruri, headers)


def uri_user(value: str) -> str | None:
    """The user part of a name-addr or addr-spec: '"A" <sip:0312@h>;tag=1' -> '0312'."""
    if "<" in value:
        start = value.index("<") + 1
        end = value.find(">", start)
        uri = value[start:] if end < 0 else value[start:end]
    else:
        uri = value.split(";", 1)[0].strip()
    lower = uri.lower()
    if lower.startswith("tel:"):
        user = uri[4:].split(";", 1)[0]
    elif lower.startswith(("sip:", "sips:")):
        rest = uri.split(":", 1)[1]
        if "@" not in rest:
            return None
        user = rest.split("@", 1)[0]
    else:
        return None
    user = user.split(";", 1)[0].split(":", 1)[0]
    return user or None


def _has_tag(value: str | None) -> bool:
    if value is None:
        return False
    tail = value.rsplit(">", 1)[-1]
    return any(p.strip().lower().startswith("tag=") for p in tail.split(";")[1:])


@dataclass(frozen=True, slots=True)
class LineSource:
    """Where the protected line's id is read from on the initial INVITE.

    `from` (From user), `pai` (P-Asserted-Identity user), or `header:NAME`
    (NAME's URI user if it holds a URI, else its trimmed value).
    """

    spec: str = "from"

    def __post_init__(self) -> None:
        s = self.spec
        if s not in ("from", "pai") and not (s.startswith("header:") and len(s) > 7):
            raise ValueError(f"line source must be from, pai or header:NAME, not {s!r}")

    @property
    def header_name(self) -> str:
        if self.spec == "from":
            return "from"
        if self.spec == "pai":
            return "p-asserted-identity"
        return self.spec[7:].lower()

    def line_of(self, msg: SipMessage) -> str | None:
        if self.spec == "from":
            value = msg.header("from")
        elif self.spec == "pai":
            value = msg.header("p-asserted-identity")
        else:
            value = msg.header(self.spec[7:])
            if value is not None and "sip:" not in value and "tel:" not in value:
                return value.strip()[:128] or None
        if value is None:
            return None
        user = uri_user(value)
        return user[:128] if user else None


def _interesting(payload: bytes) -> bool:
    """False for messages that never make an event (1xx, ACK, OPTIONS, ...), cheaply."""
    if payload.startswith(b"SIP/2.0 1"):
        return False
    space = payload.find(b" ", 0, 20)
    method = payload[:space] if space > 0 else b""
    # Another request method is skipped; anything unreadable is parsed and rejected.
    return not (method.isalpha() and method.isupper() and method not in (b"INVITE", b"BYE"))


@dataclass(slots=True)
class _Call:
    line_id: str
    setup_ts: int
    answered_ts: int | None = None
    released: bool = False


@dataclass
class SipEventMapper:
    """SIP messages (in capture order) to call events; bounded memory.

    siptrace mirrors a message once as received and once as forwarded, so each
    (call, event type) is emitted once. Calls are forgotten after `max_calls`
    newer ones or when released.
    """

    line_source: LineSource = field(default_factory=LineSource)
    max_calls: int = 200_000
    tenant: str | None = None
    _calls: OrderedDict[str, _Call] = field(default_factory=OrderedDict)
    _wanted_cache: frozenset[str] | None = None

    def _wanted(self) -> frozenset[str]:
        wanted = self._wanted_cache
        if wanted is None:
            base = {"call-id", "from", "to", "cseq", self.line_source.header_name}
            wanted = self._wanted_cache = frozenset(base)
        return wanted

    def tracked_calls(self) -> int:
        return len(self._calls)

    def feed(self, packet: HepPacket, now_ms: int) -> dict[str, Any] | None:
        """The event this packet makes, None if it makes none; HepError if malformed."""
        if packet.proto_type not in (None, PROTO_SIP):
            raise HepError("not_sip", f"HEP protocol type {packet.proto_type}")
        if not _interesting(packet.payload):
            return None
        msg = parse_sip(packet.payload, self._wanted())
        call_id = msg.header("call-id")
        if not call_id:
            raise HepError("missing_header", "no Call-ID")
        call_id = call_id[:256]
        ts = packet.ts_ms if packet.ts_ms is not None else now_ms
        if msg.method == "INVITE":
            if _has_tag(msg.header("to")) or call_id in self._calls:
                return None  # re-INVITE, or the forwarded copy of one we saw
            return self._setup(msg, call_id, ts, packet.src_ip)
        if msg.method == "BYE":
            return self._release(call_id, ts)
        if msg.status is not None and msg.status >= 200:
            cseq = msg.header("cseq") or ""
            if cseq.split()[-1:] != ["INVITE"]:
                return None
            if msg.status < 300:
                return self._answer(call_id, ts)
            return self._release(call_id, ts)
        return None

    def _setup(self, msg: SipMessage, call_id: str, ts: int, src_ip: str | None) -> dict[str, Any]:
        line = self.line_source.line_of(msg)
        if not line:
            raise HepError("no_line", f"no line id in {self.line_source.spec}")
        callee = uri_user(msg.ruri or "")
        if not callee:
            raise HepError("no_callee", "request URI has no user part")
        calls = self._calls
        calls[call_id] = _Call(line, ts)
        while len(calls) > self.max_calls:
            calls.popitem(last=False)
        event: dict[str, Any] = {
            "v": 1,
            "type": "setup",
            "call_id": call_id,
            "ts": ts,
            "line_id": line,
            "callee": callee,
        }
        caller = uri_user(msg.header("from") or "")
        if caller:
            event["caller"] = caller
        if src_ip:
            event["src_ip"] = src_ip
        if self.tenant:
            event["tenant"] = self.tenant
        return event

    def _answer(self, call_id: str, ts: int) -> dict[str, Any] | None:
        call = self._calls.get(call_id)
        if call is None or call.answered_ts is not None or call.released:
            return None
        call.answered_ts = ts
        return self._event("answer", call_id, call, ts)

    def _release(self, call_id: str, ts: int) -> dict[str, Any] | None:
        call = self._calls.get(call_id)
        if call is None or call.released:
            return None
        call.released = True
        event = self._event("release", call_id, call, ts)
        start = call.answered_ts
        event["duration_s"] = round(max(0, ts - start) / 1000, 3) if start is not None else 0
        # Keep a released call a little longer so the forwarded copy is ignored.
        self._calls.move_to_end(call_id, last=False)
        return event

    def _event(self, kind: str, call_id: str, call: _Call, ts: int) -> dict[str, Any]:
        event: dict[str, Any] = {
            "v": 1,
            "type": kind,
            "call_id": call_id,
            "ts": ts,
            "line_id": call.line_id,
        }
        if self.tenant:
            event["tenant"] = self.tenant
        return event
