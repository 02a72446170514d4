"""OSC wire format and our address space: packet splitting, message decoding, the command table and argument
checks (pure functions, no sockets), and message building. Used by ``osc`` (the server) and ``osc_feedback``.
The address table is in ``liveperf.io.osc``'s docstring."""

from __future__ import annotations

import ipaddress
import math
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

from liveperf.params import OSC_PARAM_PREFIX, PARAMS, Param, ParamError, coerce, partner_of


MAX_PACKET_BYTES = 8192
MAX_MESSAGES_PER_PACKET = 32
MAX_BUNDLE_DEPTH = 4
MAX_TCP_CLIENTS = 16  # TCP connections held at once ...
MAX_TCP_PER_SOURCE = 8  # ... and from one source IP
TCP_EVICT_IDLE_S = 5.0  # when full, a new connection replaces the longest-idle one if it has been idle this long
TCP_IDLE_TIMEOUT_S = 600.0  # a connection that sends nothing for this long is closed
_READS_PER_WAKE = 64  # UDP datagrams read per wake-up before the selector looks at the other sockets
_PATTERN_CHARS = frozenset("*?[]{}")
_KNOWN_TAGS = frozenset("ifdhsTF")

TRIGGERS = {"/liveperf/song/next": "song_next", "/liveperf/song/prev": "song_prev", "/liveperf/tap": "tap",
            "/liveperf/panic": "panic", "/liveperf/stop": "stop"}
COMMAND_KINDS = ("song_next", "song_prev", "song_select", "param", "tap", "learn", "panic", "stop", "feedback_add")


@dataclass(frozen=True)
class Command:
    """One show-control command; ``kind`` is one of ``COMMAND_KINDS`` (the value per kind: module docstring)."""

    kind: str
    value: Any = None


@dataclass
class OscStats:
    """Counters of the OSC input. A snapshot: ``OscServer.stats`` returns a fresh copy each time.

    ``received``: packets read (UDP datagrams, TCP frames), from any source. ``accepted``: messages that were valid
    (passed on, answered, or a button release). ``rejected_sources``: packets and TCP connections from sources not on
    the allow-list. ``rate_limited``: packets dropped over a source's rate. ``errors_by_kind``: see the module doc.
    ``replies_failed``: error replies or pongs that could not be sent (a TCP client that does not read is dropped).
    ``tcp_evicted``: idle TCP connections closed to make room for a new one; ``tcp_idle_closed``: closed after
    ``TCP_IDLE_TIMEOUT_S`` without a packet.
    """

    received: int = 0
    accepted: int = 0
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    rejected_sources: int = 0
    rate_limited: int = 0
    replies_failed: int = 0
    tcp_evicted: int = 0
    tcp_idle_closed: int = 0


class OscInputError(ValueError):
    """A packet or message that was refused: ``kind`` (see the module doc), the OSC ``address`` ("" if unknown)
    and the ``reason`` in words. Raised by the pure functions below; the server counts and answers it."""

    def __init__(self, kind: str, address: str, reason: str) -> None:
        super().__init__(f"{kind}: {reason}")
        self.kind, self.address, self.reason = kind, address, reason


_PONG = object()  # _command_for's answer to /liveperf/ping


# -- Packets -----------------------------------------------------------------------------------------------------

def split_packet(data: bytes, depth: int = 0) -> list[bytes]:
    """The messages of one OSC packet (bundles unpacked, timetags ignored). Raises ``OscInputError``."""
    if data.startswith(b"/"):
        return [data]
    if not data.startswith(b"#bundle\0"):
        head = data[:64].split(b"\0", 1)[0]
        shown = head.decode("ascii") if head.isascii() and head.decode("ascii").isprintable() else ""
        raise OscInputError("not_osc", shown, "an OSC packet starts with '/' (a message) or '#bundle' (a bundle)")
    if depth >= MAX_BUNDLE_DEPTH:
        raise OscInputError("malformed", "", f"bundles nested deeper than {MAX_BUNDLE_DEPTH}")
    if len(data) < 16:
        raise OscInputError("malformed", "", "bundle shorter than its header")
    messages: list[bytes] = []
    i = 16  # "#bundle\0" + 8-byte timetag
    while i < len(data):
        if i + 4 > len(data):
            raise OscInputError("malformed", "", "bundle element size cut off")
        n = int.from_bytes(data[i:i + 4], "big")
        if n == 0 or n % 4 or i + 4 + n > len(data):
            raise OscInputError("malformed", "", "bundle element size does not fit the bundle")
        element = data[i + 4:i + 4 + n]
        if not element.startswith((b"/", b"#bundle\0")):
            raise OscInputError("malformed", "", "bundle element is neither a message nor a bundle")
        messages += split_packet(element, depth + 1)
        if len(messages) > MAX_MESSAGES_PER_PACKET:
            raise OscInputError("too_many_messages", "", f"more than {MAX_MESSAGES_PER_PACKET} messages in one packet")
        i += 4 + n
    return messages


def _osc_string(data: bytes, i: int, address: str) -> tuple[str, int]:
    end = data.find(b"\0", i)
    if end < 0:
        raise OscInputError("malformed", address, "string without its terminating zero byte")
    try:
        text = data[i:end].decode("utf-8")
    except UnicodeDecodeError:
        raise OscInputError("malformed", address, "string is not UTF-8") from None
    return text, (end + 4) & ~3


def _shortest_float32(value: float) -> float:
    """The shortest decimal that reads back as the same 32-bit float (what the sender most likely typed)."""
    if not math.isfinite(value):
        return value
    for digits in range(1, 10):
        short = float(f"{value:.{digits}g}")
        if struct.unpack(">f", struct.pack(">f", short))[0] == value:
            return short
    return value


def decode_message(data: bytes) -> tuple[str, str, tuple]:
    """``(address, type tags, arguments)`` of one OSC message. Only the tags ``ifdhsTF`` are accepted."""
    address, i = _osc_string(data, 0, "")
    if not address.isprintable() or " " in address:
        raise OscInputError("malformed", "", "address has spaces or control characters")
    if i >= len(data):
        return address, "", ()  # no type tag string: an old-style message without arguments
    tags, i = _osc_string(data, i, address)
    if not tags.startswith(","):
        raise OscInputError("malformed", address, "type tags must start with ','")
    tags = tags[1:]
    if not set(tags) <= _KNOWN_TAGS:
        raise OscInputError("bad_type", address, f"type tags {tags!r}: only i, h, f, d, s, T, F are understood")
    args: list[Any] = []
    try:
        for tag in tags:
            if tag == "s":
                text, i = _osc_string(data, i, address)
                args.append(text)
            elif tag in "TF":
                args.append(tag == "T")
            else:
                fmt = {"i": ">i", "h": ">q", "f": ">f", "d": ">d"}[tag]
                (value,) = struct.unpack_from(fmt, data, i)
                i += struct.calcsize(fmt)
                args.append(_shortest_float32(value) if tag == "f" else value)
    except struct.error:
        raise OscInputError("malformed", address, "arguments cut off") from None
    if i != len(data):
        raise OscInputError("malformed", address, "bytes left over after the arguments")
    return address, tags, tuple(args)


# -- Commands ----------------------------------------------------------------------------------------------------

def _one_arg(address: str, tags: str, args: tuple, allowed_tags: str, what: str) -> Any:
    if len(args) != 1:
        raise OscInputError("bad_arg_count", address, f"expected one argument ({what}), got {len(args)}")
    if tags not in allowed_tags:
        raise OscInputError("bad_type", address, f"expected {what}, got type {tags!r}")
    return args[0]


def _param_value(address: str, name: str, tags: str, args: tuple, params: Mapping[str, Param]) -> Any:
    p = params[partner_of(name)[1]]
    allowed, what = {"float": ("fdih", "a number (f or i)"), "int": ("ih", "an integer (i)"),
                     "enum": ("s", "a string (s)")}[p.kind]
    value = _one_arg(address, tags, args, allowed, what)
    try:
        return coerce(name, value, params)
    except ParamError as e:
        raise OscInputError("out_of_range", address, str(e)) from None


def _trigger(address: str, tags: str, args: tuple) -> bool:
    """True for a press (no argument, non-zero, T), False for a release (0, F)."""
    if not args:
        return True
    value = _one_arg(address, tags, args, "ifdhTF", "nothing, a number or T/F")
    return bool(value)


def command_for(address: str, tags: str, args: tuple, *, params: Mapping[str, Param] = PARAMS,
                host_allowed: Callable[[str], bool] = lambda ip: ipaddress.ip_address(ip).is_loopback,
                song_check: Callable[[Any], str | None] | None = None) -> Any:
    """The ``Command`` for one decoded message; None for a button release; ``_PONG`` for a ping.
    ``song_check(value)``: why a song number or title selects no song of the setlist, or None (the show's).

    Raises ``OscInputError`` naming the kind of error. Pure: no sockets, no clock (tests call it directly too).
    """
    if _PATTERN_CHARS & set(address):
        raise OscInputError("pattern", address, "address patterns (wildcards) are not accepted; send the exact address")
    if address in TRIGGERS:
        return Command(TRIGGERS[address]) if _trigger(address, tags, args) else None
    if address.startswith(OSC_PARAM_PREFIX):
        name = address[len(OSC_PARAM_PREFIX):]
        if partner_of(name)[1] not in params:
            raise OscInputError("unknown_param", address, f"unknown parameter {name!r}; known: {', '.join(params)}")
        return Command("param", (name, _param_value(address, name, tags, args, params)))
    if address == "/liveperf/tempo":
        return Command("param", ("tempo_bpm", _param_value(address, "tempo_bpm", tags, args, params)))
    if address == "/liveperf/mode":
        return Command("param", ("mode", _param_value(address, "mode", tags, args, params)))
    if address == "/liveperf/song/select":
        value = _one_arg(address, tags, args, "ihs", "a song number (i) or title (s)")
        if value == "" or (isinstance(value, int) and value < 1):
            raise OscInputError("out_of_range", address, f"{value!r}: songs are numbered from 1; titles are not empty")
        why = song_check(value) if song_check is not None else None
        if why is not None:
            raise OscInputError("no_such_song", address, why)
        return Command("song_select", value)
    if address == "/liveperf/learn":
        name = _one_arg(address, tags, args, "s", "a parameter name (s)")
        if partner_of(name)[1] not in params:
            raise OscInputError("unknown_param", address, f"unknown parameter {name!r}; known: {', '.join(params)}")
        return Command("learn", name)
    if address == "/liveperf/ping":
        if args:
            raise OscInputError("bad_arg_count", address, f"expected no arguments, got {len(args)}")
        return _PONG
    if address == "/liveperf/feedback/add":
        return Command("feedback_add", _feedback_target(address, tags, args, host_allowed))
    raise OscInputError("unknown_address", address, "not a liveperf address (see docs/reference/osc.md)")


def _feedback_target(address: str, tags: str, args: tuple, host_allowed: Callable[[str], bool]) -> tuple[str, int]:
    if len(args) != 2:
        raise OscInputError("bad_arg_count", address, f"expected host (s) and port (i), got {len(args)} arguments")
    if tags not in ("si", "sh"):
        raise OscInputError("bad_type", address, f"expected host (s) and port (i), got types {tags!r}")
    host, port = args
    ip = "127.0.0.1" if host == "localhost" else host
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        raise OscInputError("out_of_range", address, f"{host!r} is not an IP address (no name lookups here)") from None
    if not host_allowed(ip):
        raise OscInputError("not_allowed", address, f"{host} is neither loopback nor on the allow-list")
    if not 1 <= port <= 65535:
        raise OscInputError("out_of_range", address, f"port {port}: allowed 1 to 65535")
    return ip, port


# -- Server ------------------------------------------------------------------------------------------------------


def _build(address: str, *args: Any) -> OscMessage:
    builder = OscMessageBuilder(address)
    for a in args:
        builder.add_arg(a)
    return builder.build()


def _reply_dgram(address: str, *args: Any) -> bytes:
    return _build(address, *args).dgram

