"""OSC feedback to lighting desks and show control: plain messages (never bundles), UDP or TCP, never blocking
or raising into the engine thread. Addresses: see ``liveperf.io.osc``'s docstring."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable
from typing import Any

from pythonosc.osc_message import OscMessage
from pythonosc.udp_client import SimpleUDPClient


from liveperf.io.osc_protocol import _build


def _resolve(host: str, port: int, kind: int) -> tuple[int, str]:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"OSC feedback target {host}:{port}: the port must be 1..65535")
    try:
        family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=kind)[0]
    except (socket.gaierror, UnicodeError) as e:
        raise ValueError(f"OSC feedback target {host}:{port}: cannot resolve the host ({e})") from None
    return family, sockaddr[0]


class _TcpTarget:
    """A non-blocking TCP feedback connection with OSC 1.0 framing; reconnects at most once a second."""

    RETRY_NS = 1_000_000_000

    def __init__(self, family: int, ip: str, port: int) -> None:
        self.family, self.address = family, (ip, port)
        self.sock: socket.socket | None = None
        self.connected = False
        self.next_try_ns = 0

    def send(self, message: OscMessage) -> str:
        """'sent', 'dropped' (not connected yet, or the send buffer is full) or 'error' (connection closed)."""
        if self.sock is None:
            now = time.monotonic_ns()
            if now < self.next_try_ns:
                return "dropped"
            self.next_try_ns = now + self.RETRY_NS
            self.sock = socket.socket(self.family, socket.SOCK_STREAM)
            self.sock.setblocking(False)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock.connect_ex(self.address)  # EINPROGRESS: finishes in the background
        if not self.connected:
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self.close()
                return "error"
            try:
                self.sock.getpeername()
            except OSError:
                return "dropped"  # still connecting
            self.connected = True
        frame = len(message.dgram).to_bytes(4, "big") + message.dgram
        try:
            n = self.sock.send(frame)
        except BlockingIOError:
            return "dropped"
        except OSError:
            self.close()
            return "error"
        if n != len(frame):  # half a frame went out: the stream is out of step, start a new one
            self.close()
            return "error"
        return "sent"

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock, self.connected = None, False


class _UdpTarget:
    def __init__(self, family: int, ip: str, port: int) -> None:
        self.address = (ip, port)
        self.client = SimpleUDPClient(ip, port, family=family)  # non-blocking socket, built once, no lookups later

    def send(self, message: OscMessage) -> str:
        try:
            self.client.send(message)
        except BlockingIOError:
            return "dropped"
        except OSError:
            return "error"
        return "sent"

    def close(self) -> None:
        self.client.close()


class OscFeedback:
    """OSC feedback to lighting desks and controllers: plain messages (no bundles), UDP or TCP (OSC 1.0 framing).

    Called from the engine thread; never blocks and never raises a socket error into the caller: ``sent``,
    ``dropped`` (TCP not connected yet or its buffer full, UDP buffer full) and ``errors`` count what happened per
    target. Hosts are resolved once, when a target is added (``ValueError`` if that fails).
    """

    def __init__(self, targets: Iterable[tuple[str, int]] = (), protocol: str = "udp") -> None:
        if protocol not in ("udp", "tcp"):
            raise ValueError(f"OSC feedback protocol {protocol!r}: allowed 'udp' or 'tcp'")
        self.protocol = protocol
        self._targets: list[_UdpTarget | _TcpTarget] = []
        self.sent = self.dropped = self.errors = 0
        for host, port in targets:
            self.add_target(host, port)

    @property
    def targets(self) -> list[tuple[str, int]]:
        """The resolved ``(ip, port)`` targets."""
        return [t.address for t in self._targets]

    def add_target(self, host: str, port: int) -> None:
        """Add a target (a repeat of one already there is ignored). Engine thread."""
        family, ip = _resolve(host, port, socket.SOCK_DGRAM if self.protocol == "udp" else socket.SOCK_STREAM)
        if (ip, port) in self.targets:
            return
        cls = _UdpTarget if self.protocol == "udp" else _TcpTarget
        self._targets = self._targets + [cls(family, ip, port)]

    def close(self) -> None:
        for t in self._targets:
            t.close()
        self._targets = []

    def send(self, address: str, *args: Any) -> None:
        """One plain message to every target. ``args`` are int, float or str."""
        message = _build(address, *args)
        for t in self._targets:
            outcome = t.send(message)
            if outcome == "sent":
                self.sent += 1
            elif outcome == "dropped":
                self.dropped += 1
            else:
                self.errors += 1

    def beat(self, bar: int, beat: int) -> None:
        """Every beat (1-based bar and beat); on beat 1 also ``/liveperf/bar`` and ``/liveperf/downbeat``."""
        self.send("/liveperf/beat", int(bar), int(beat))
        if beat == 1:
            self.send("/liveperf/bar", int(bar))
            self.send("/liveperf/downbeat", 1)

    def note_on(self, pitch: int, velocity: int) -> None:
        self.send("/liveperf/note/on", int(pitch), int(velocity))

    def note_off(self, pitch: int) -> None:
        self.send("/liveperf/note/off", int(pitch))

    def song(self, index: int, title: str) -> None:
        """``index``: the song's number in the setlist, 1-based."""
        self.send("/liveperf/song", int(index), str(title))

    def mode(self, name: str) -> None:
        self.send("/liveperf/mode", str(name))

    def partner_mode(self, partner: int, name: str) -> None:
        """A song with several partners: partner ``partner`` (1-based) plays ``name`` (from the next bar line)."""
        self.send("/liveperf/partner/mode", int(partner), str(name))

    def state(self, name: str) -> None:
        """``name``: playing, stopped or waiting."""
        self.send("/liveperf/state", str(name))

    def counts(self, late: int, dropped: int, errors: int, copies: int = 0) -> None:
        """The song's counters so far: late-dropped notes, input dropped, errors, and phrases or answers the copy
        guard drew again or cut (``liveperf.music.copy_guard``)."""
        self.send("/liveperf/stats", int(late), int(dropped), int(errors), int(copies))

    def chord(self, name: str, root: int, quality: str) -> None:
        self.send("/liveperf/chord", name, int(root), quality)

    def key(self, name: str, confidence: float) -> None:
        self.send("/liveperf/key", name, float(confidence))

    def tempo(self, bpm: float) -> None:
        self.send("/liveperf/tempo", float(bpm))

    def link_peers(self, peers: int) -> None:
        """Following Ableton Link: how many other peers the session has."""
        self.send("/liveperf/link/peers", int(peers))
