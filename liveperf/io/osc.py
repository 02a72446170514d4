"""OSC show control in (UDP and TCP), OSC feedback out (UDP or TCP) for lighting desks and controllers.

Control in: ``OscServer`` listens on UDP and/or TCP (OSC 1.0 stream framing: a 4-byte big-endian length before each
packet, which is what liblo's ``osc.tcp://`` and python-osc's ``MODE_1_0`` speak; SLIP framing is not accepted).
One thread ("osc-in") reads every socket; it checks the source, the rate, the packet and the arguments, then calls
``on_command(ts_ns, Command)`` -- ``ts_ns`` is ``time.monotonic_ns()`` when the packet was read. ``on_command`` runs
on that thread: it must only enqueue (the engine thread applies commands; a song change waits for the bar line).
The sockets are read with the standard library, not python-osc's servers, whose TCP handler trusts the 4-byte length
(a garbage length parks the thread waiting for up to 4 GiB), whose Dispatcher drops unparsable packets silently
(nothing to count or answer), treats incoming addresses as patterns and sleeps until a bundle's timetag unless
``strict_timing=False``. python-osc builds the outgoing messages.

Every command is an exact address (OSC wildcard patterns such as ``/liveperf/*`` are refused: one typo must not fire
stop, panic and next at once). Bundles are unpacked and their messages applied on arrival; timetags are ignored, so
a far-future bundle never holds anything up. ``f`` arguments are read as the shortest decimal that the 32-bit float
stands for (``0.9`` arrives as 0.9, not 0.8999999761581421). Ints are accepted where a float is asked for; nothing
else is converted. Button-style addresses ("trigger" below) take no argument, or one number / ``T`` / ``F``:
non-zero presses, zero is the button's release and is ignored (TouchOSC and most desks send 1 then 0).

The addresses, their arguments and what they do: ``liveperf.io.osc_table.OSC_IN`` (the manual's OSC reference is
rendered from it).

``/liveperf/param/<name>`` takes ``f`` or ``i`` for float parameters, ``i`` for int parameters and ``s`` for enums,
range-checked with ``params.coerce``. ``/liveperf/feedback/add`` takes an IP address (or ``localhost``) that is
loopback or on the allow-list, and a port 1..65535.

Wrong input never raises out of the server thread. It is counted in ``OscServer.stats.errors_by_kind`` and answered
with ``/liveperf/error ss`` (the address or "", and "kind: reason") -- over UDP to the sender's address and port, over
TCP on the connection. Kinds: ``not_osc`` (neither ``/...`` nor ``#bundle``: an address without '/' lands here),
``malformed``, ``too_large`` (over ``MAX_PACKET_BYTES``; a TCP connection is closed, its framing is lost),
``too_many_messages`` (a bundle with more than ``MAX_MESSAGES_PER_PACKET``), ``pattern``, ``unknown_address``,
``unknown_param``, ``bad_type``, ``bad_arg_count``, ``out_of_range``, ``no_such_song`` (a song number or title the
setlist does not have: ``song_check``), ``not_allowed``, ``too_many_clients`` (TCP, no reply), ``handler`` (``on_command`` raised: a bug, logged with its traceback). Sources not on the
allow-list are dropped unanswered (``rejected_sources``); so is a source over its rate (``rate_limited``).

Feedback out: ``OscFeedback`` sends plain messages (never bundles; grandMA3 and most desks want plain OSC messages):

The addresses it sends: ``liveperf.io.osc_table.OSC_OUT``.
"""

from __future__ import annotations

import ipaddress
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping

# The wire format and command table live in osc_protocol, feedback in osc_feedback; re-exported here so the
# OSC API stays ``liveperf.io.osc``.
from liveperf.io.osc_feedback import OscFeedback, _TcpTarget, _UdpTarget  # noqa: F401
from liveperf.io.osc_protocol import (  # noqa: F401
    COMMAND_KINDS, MAX_BUNDLE_DEPTH, MAX_MESSAGES_PER_PACKET, MAX_PACKET_BYTES, MAX_TCP_CLIENTS, MAX_TCP_PER_SOURCE, TCP_EVICT_IDLE_S, TCP_IDLE_TIMEOUT_S, TRIGGERS, _PONG,
    _READS_PER_WAKE, Command, OscInputError, OscStats, _build, _feedback_target, _reply_dgram, command_for,
    decode_message, split_packet)
from liveperf.params import PARAMS, Param

log = logging.getLogger(__name__)


class _SourcePolicy:
    """Source allow-list and per-source token buckets (integer nanoseconds of credit)."""

    def __init__(self, allow: Iterable[str], loopback_ok: bool, rate_limit_per_s: float | None) -> None:
        try:
            self._nets = [ipaddress.ip_network(a, strict=False) for a in allow]
        except ValueError as e:
            raise ValueError(f"OSC allow-list: {e} (give IP addresses or networks such as 192.168.1.0/24)") from None
        self._loopback_ok = loopback_ok
        self._cache: dict[str, bool] = {}
        self._cost_ns = int(1e9 / rate_limit_per_s) if rate_limit_per_s else 0
        self._cap_ns = int(1e9)  # a burst of one second's worth
        self._buckets: dict[str, list[int]] = {}  # ip -> [credit_ns, last_ns]

    def allows(self, ip: str) -> bool:
        ok = self._cache.get(ip)
        if ok is None:
            try:
                addr = ipaddress.ip_address(ip)
            except ValueError:
                return False
            ok = (self._loopback_ok and addr.is_loopback) or any(addr in net for net in self._nets)
            if len(self._cache) > 1024:
                self._cache.clear()
            self._cache[ip] = ok
        return ok

    def take(self, ip: str, now_ns: int) -> bool:
        if not self._cost_ns:
            return True
        bucket = self._buckets.get(ip)
        if bucket is None:
            if len(self._buckets) > 256:
                self._buckets = {k: b for k, b in self._buckets.items() if now_ns - b[1] < 10**10}
            bucket = self._buckets[ip] = [self._cap_ns, now_ns]
        bucket[0] = min(self._cap_ns, bucket[0] + now_ns - bucket[1])
        bucket[1] = now_ns
        if bucket[0] < self._cost_ns:
            return False
        bucket[0] -= self._cost_ns
        return True



class _Peer:
    """Where a packet came from and how to answer it (UDP: the sender's address; TCP: the connection)."""

    def __init__(self, ip: str, sock: socket.socket, udp_address: tuple | None = None) -> None:
        self.ip, self.sock, self.udp_address = ip, sock, udp_address
        self.buf = bytearray()  # TCP: bytes of a frame not yet complete
        self.last_ns = time.monotonic_ns()  # TCP: when it connected or last sent something

    def send(self, dgram: bytes) -> bool:
        """Send without blocking; False if it could not go out (for TCP the connection is then unusable)."""
        try:
            if self.udp_address is not None:
                self.sock.sendto(dgram, self.udp_address)
                return True
            frame = len(dgram).to_bytes(4, "big") + dgram
            return self.sock.send(frame) == len(frame)
        except OSError:
            return False



class OscServer:
    """OSC control input. ``on_command(ts_ns, Command)`` is called on the server's own thread and must only enqueue.

    ``udp_port``/``tcp_port``: None to not listen, 0 for an ephemeral port; after ``start()`` the attributes hold the
    bound ports. ``host``: the interface to bind (127.0.0.1 by default: OSC has no authentication). ``allow``: source
    IPs or networks accepted; any loopback source is accepted too when ``host`` is loopback. ``rate_limit_per_s``:
    packets per second per source IP (bursts up to one second's worth), None for no limit.

    TCP connections: at most ``max_tcp_clients`` at once and ``max_tcp_per_source`` from one IP. When a new one
    would pass a limit, the longest-idle connection it competes with (of its source, or of all) is closed to make
    room if it has sent nothing for ``tcp_evict_idle_s``; otherwise the new one is refused (``too_many_clients``).
    So idle or abandoned connections can never lock a genuine client (a tablet reconnecting) out. A connection
    that sends nothing for ``tcp_idle_timeout_s`` is closed anyway.
    """

    def __init__(self, on_command: Callable[[int, Command], None], *, host: str = "127.0.0.1",
                 udp_port: int | None = None, tcp_port: int | None = None, allow: Iterable[str] = ("127.0.0.1",),
                 rate_limit_per_s: float | None = 200, params: Mapping[str, Param] = PARAMS,
                 max_tcp_clients: int = MAX_TCP_CLIENTS, max_tcp_per_source: int = MAX_TCP_PER_SOURCE,
                 tcp_evict_idle_s: float = TCP_EVICT_IDLE_S, tcp_idle_timeout_s: float = TCP_IDLE_TIMEOUT_S,
                 song_check: Callable[[object], str | None] | None = None) -> None:
        if udp_port is None and tcp_port is None:
            raise ValueError("OscServer: give a udp_port and/or a tcp_port (0 = any free port)")
        if rate_limit_per_s is not None and not rate_limit_per_s > 0:
            raise ValueError(f"OscServer: rate_limit_per_s {rate_limit_per_s!r}: a positive number, or None")
        self.host, self.udp_port, self.tcp_port = host, udp_port, tcp_port
        self._on_command = on_command
        self._params = params
        self._family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            loopback = ipaddress.ip_address("127.0.0.1" if host == "localhost" else host).is_loopback
        except ValueError:
            raise ValueError(f"OscServer: host {host!r} is not an IP address") from None
        self._policy = _SourcePolicy(allow, loopback, rate_limit_per_s)
        self._max_tcp_clients = max_tcp_clients
        self._max_tcp_per_source = max_tcp_per_source
        self._song_check = song_check  # answers /liveperf/song/select with an error when no song matches
        self._evict_idle_ns = int(tcp_evict_idle_s * 1e9)
        self._idle_timeout_ns = int(tcp_idle_timeout_s * 1e9)
        self._stats = OscStats()
        self._lock = threading.Lock()
        self._selector: selectors.BaseSelector | None = None
        self._sockets: list[socket.socket] = []
        self._clients: dict[socket.socket, _Peer] = {}
        self._thread: threading.Thread | None = None

    # Lifecycle ---------------------------------------------------------------------------------------------------
    def start(self) -> OscServer:
        """Bind the sockets (raises OSError if a port is taken) and start the reader thread."""
        if self._selector is not None:
            raise RuntimeError("OscServer.start(): already started")
        sel = self._selector = selectors.DefaultSelector()
        try:
            wake_r, self._wake_w = socket.socketpair()
            self._sockets += [wake_r, self._wake_w]
            sel.register(wake_r, selectors.EVENT_READ, None)
            if self.udp_port is not None:
                udp = self._bind(socket.SOCK_DGRAM, self.udp_port)
                udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)  # ride out bursts (capped by the OS)
                self.udp_port = udp.getsockname()[1]
                sel.register(udp, selectors.EVENT_READ, self._on_udp)
            if self.tcp_port is not None:
                tcp = self._bind(socket.SOCK_STREAM, self.tcp_port)
                tcp.listen(16)
                self.tcp_port = tcp.getsockname()[1]
                sel.register(tcp, selectors.EVENT_READ, self._on_accept)
        except OSError:
            self.close()
            raise
        self._thread = threading.Thread(target=self._serve, name="osc-in", daemon=True)
        self._thread.start()
        return self

    def _bind(self, kind: int, port: int) -> socket.socket:
        sock = socket.socket(self._family, kind)
        self._sockets.append(sock)
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, port))
        sock.setblocking(False)
        return sock

    def close(self) -> None:
        """Stop the thread and close every socket. Safe to call twice, or without ``start()``."""
        if self._thread is not None:
            try:
                self._wake_w.send(b"x")
            except OSError:
                pass  # already closed: the thread is gone
            self._thread.join(timeout=5)
            self._thread = None
        for sock in list(self._clients) + self._sockets:
            sock.close()
        self._clients.clear()
        self._sockets.clear()
        if self._selector is not None:
            self._selector.close()
            self._selector = None

    def __enter__(self) -> OscServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def stats(self) -> OscStats:
        """A snapshot of the counters (safe from any thread)."""
        with self._lock:
            s = self._stats
            return OscStats(s.received, s.accepted, dict(s.errors_by_kind), s.rejected_sources, s.rate_limited,
                            s.replies_failed, s.tcp_evicted, s.tcp_idle_closed)

    def _count(self, counter: str, n: int = 1) -> None:
        with self._lock:
            setattr(self._stats, counter, getattr(self._stats, counter) + n)

    def _count_error(self, kind: str) -> None:
        with self._lock:
            self._stats.errors_by_kind[kind] = self._stats.errors_by_kind.get(kind, 0) + 1

    # The osc-in thread -------------------------------------------------------------------------------------------
    def _serve(self) -> None:
        assert self._selector is not None
        while True:
            self._close_idle()
            for key, _ in self._selector.select(timeout=1.0 if self._clients else None):
                if key.data is None:  # the wake-up socket: close() was called
                    return
                try:
                    key.data(key.fileobj)
                except Exception:  # a bug in this module: count it, keep listening
                    log.exception("OSC input: unexpected error; the packet was dropped")
                    self._count_error("internal")

    def _on_udp(self, sock: socket.socket) -> None:
        for _ in range(_READS_PER_WAKE):
            try:
                data, source = sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # e.g. an ICMP error reported on the socket; the socket still works
                log.debug("OSC UDP receive: %s", e)
                return
            self._packet(data, _Peer(source[0], sock, source))

    def _on_accept(self, listener: socket.socket) -> None:
        try:
            conn, source = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        if not self._policy.allows(source[0]):
            self._count("rejected_sources")
            conn.close()
            return
        if not self._make_room(source[0]):
            self._count_error("too_many_clients")
            conn.close()
            return
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._clients[conn] = _Peer(source[0], conn)
        assert self._selector is not None
        self._selector.register(conn, selectors.EVENT_READ, self._on_tcp)

    def _make_room(self, ip: str) -> bool:
        """True when a new connection from ``ip`` may be held: under both limits, or after closing the longest-idle
        connection it competes with, if that one has been idle long enough (class docstring)."""
        mine = [c for c, p in self._clients.items() if p.ip == ip]
        if len(mine) >= self._max_tcp_per_source:
            rivals = mine
        elif len(self._clients) >= self._max_tcp_clients:
            rivals = list(self._clients)
        else:
            return True
        victim = min(rivals, key=lambda c: self._clients[c].last_ns)
        if time.monotonic_ns() - self._clients[victim].last_ns < self._evict_idle_ns:
            return False
        self._count("tcp_evicted")
        self._drop_client(victim)
        return True

    def _close_idle(self) -> None:
        """Close the connections that have sent nothing for ``tcp_idle_timeout_s``."""
        if not self._clients:
            return
        before = time.monotonic_ns() - self._idle_timeout_ns
        for conn in [c for c, p in self._clients.items() if p.last_ns < before]:
            self._count("tcp_idle_closed")
            self._drop_client(conn)

    def _drop_client(self, conn: socket.socket) -> None:
        assert self._selector is not None
        self._selector.unregister(conn)
        self._clients.pop(conn, None)
        conn.close()

    def _on_tcp(self, conn: socket.socket) -> None:
        peer = self._clients[conn]
        try:
            chunk = conn.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._drop_client(conn)
            return
        peer.last_ns = time.monotonic_ns()
        peer.buf += chunk
        while len(peer.buf) >= 4:
            n = int.from_bytes(peer.buf[:4], "big")
            if n > MAX_PACKET_BYTES:
                self._count("received")
                self._reject(OscInputError("too_large", "", f"{n} bytes; at most {MAX_PACKET_BYTES} (closing)"), peer)
                self._drop_client(conn)
                return
            if len(peer.buf) < 4 + n:
                return
            data = bytes(peer.buf[4:4 + n])
            del peer.buf[:4 + n]
            if not self._packet(data, peer):
                self._drop_client(conn)  # the client does not read its replies
                return

    def _packet(self, data: bytes, peer: _Peer) -> bool:
        """Check and dispatch one packet; False if a reply could not be sent."""
        ts_ns = time.monotonic_ns()
        self._count("received")
        if not self._policy.allows(peer.ip):
            self._count("rejected_sources")
            return True
        if not self._policy.take(peer.ip, ts_ns):
            self._count("rate_limited")
            return True
        if len(data) > MAX_PACKET_BYTES:
            return self._reject(OscInputError("too_large", "", f"{len(data)} bytes; at most {MAX_PACKET_BYTES}"), peer)
        try:
            messages = split_packet(data)
        except OscInputError as r:
            return self._reject(r, peer)
        ok = True
        for dgram in messages:
            try:
                address, tags, args = decode_message(dgram)
                command = command_for(address, tags, args, params=self._params, host_allowed=self._policy.allows,
                                      song_check=self._song_check)
            except OscInputError as r:
                ok = self._reject(r, peer) and ok
                continue
            if command is _PONG:
                self._count("accepted")
                ok = self._send(peer, _reply_dgram("/liveperf/pong")) and ok
            elif command is None:
                self._count("accepted")  # a button release
            else:
                try:
                    self._on_command(ts_ns, command)
                except Exception:
                    log.exception("OSC input: on_command raised for %s", command)
                    self._count_error("handler")
                else:
                    self._count("accepted")
        return ok

    def _reject(self, r: OscInputError, peer: _Peer) -> bool:
        log.debug("OSC input from %s: %s %s", peer.ip, r.address, r)
        self._count_error(r.kind)
        return self._send(peer, _reply_dgram("/liveperf/error", r.address, f"{r.kind}: {r.reason}"))

    def _send(self, peer: _Peer, dgram: bytes) -> bool:
        if peer.send(dgram):
            return True
        self._count("replies_failed")
        return False
