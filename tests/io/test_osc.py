"""OSC in over real sockets on 127.0.0.1 with ephemeral ports: python-osc and liblo (oscsend/oscdump) peers.

Every wait is a poll or an event with a timeout; nothing sleeps for a fixed time.
"""

from __future__ import annotations

import random
import socket
import subprocess
import threading
import time

import pytest
from pythonosc.osc_bundle_builder import OscBundleBuilder
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import build_msg
from pythonosc.osc_tcp_server import MODE_1_0
from pythonosc.tcp_client import SimpleTCPClient
from pythonosc.udp_client import SimpleUDPClient

from liveperf.io import osc
from liveperf.io.osc import (Command, OscInputError, OscServer, _SourcePolicy, command_for,
                             decode_message, split_packet)
from tests.osc_helpers import TIMEOUT_S, need_tools, wait_until

class Collector:
    """A recording ``on_command``: keeps (ts_ns, Command) in arrival order."""

    def __init__(self) -> None:
        self.items: list[tuple[int, Command]] = []
        self._cond = threading.Condition()

    def __call__(self, ts_ns: int, command: Command) -> None:
        with self._cond:
            self.items.append((ts_ns, command))
            self._cond.notify_all()

    def wait(self, n: int, timeout_s: float = TIMEOUT_S) -> list[Command]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.items) >= n, timeout_s), f"got {self.commands}"
        return self.commands

    @property
    def commands(self) -> list[Command]:
        return [c for _, c in self.items]


@pytest.fixture
def collector():
    return Collector()


@pytest.fixture
def server(collector):
    with OscServer(collector, udp_port=0, tcp_port=0) as s:
        yield s


class UdpPeer:
    """A raw UDP socket that sends OSC and reads the replies sent back to its own address."""

    def __init__(self, port: int, bind_ip: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((bind_ip, 0))
        self.sock.settimeout(TIMEOUT_S)
        self.port = port

    def send(self, address: str, *args) -> None:
        self.send_raw(build_msg(address, list(args)).dgram)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendto(data, ("127.0.0.1", self.port))

    def reply(self, timeout_s: float = TIMEOUT_S) -> tuple[str, list]:
        self.sock.settimeout(timeout_s)
        data, _ = self.sock.recvfrom(65536)
        m = OscMessage(data)
        return m.address, list(m.params)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def peer(server):
    p = UdpPeer(server.udp_port)
    yield p
    p.close()


def bind_or_skip(sock: socket.socket, ip: str) -> None:
    try:
        sock.bind((ip, 0))
    except OSError as e:
        sock.close()
        pytest.skip(f"cannot bind a second loopback address {ip} here ({e})")


# -- Commands in -------------------------------------------------------------------------------------------------

GOOD = [  # (address, args sent by python-osc, Command expected or None for a button release)
    ("/liveperf/song/next", [], Command("song_next")),
    ("/liveperf/song/prev", [1.0], Command("song_prev")),
    ("/liveperf/song/prev", [0.0], None),
    ("/liveperf/song/select", [3], Command("song_select", 3)),
    ("/liveperf/song/select", ["Blue Moon"], Command("song_select", "Blue Moon")),
    ("/liveperf/tempo", [128.5], Command("param", ("tempo_bpm", 128.5))),
    ("/liveperf/tempo", [90], Command("param", ("tempo_bpm", 90.0))),
    ("/liveperf/tap", [], Command("tap")),
    ("/liveperf/mode", ["duet"], Command("param", ("mode", "duet"))),
    ("/liveperf/param/temperature", [0.9], Command("param", ("temperature", 0.9))),  # not 0.8999999761581421
    ("/liveperf/param/velocity", [64], Command("param", ("velocity", 64))),
    ("/liveperf/param/mode", ["harmonize"], Command("param", ("mode", "harmonize"))),
    ("/liveperf/learn", ["density"], Command("learn", "density")),
    ("/liveperf/panic", [], Command("panic")),
    ("/liveperf/stop", [True], Command("stop")),
    ("/liveperf/feedback/add", ["127.0.0.1", 9000], Command("feedback_add", ("127.0.0.1", 9000))),
    ("/liveperf/feedback/add", ["localhost", 9001], Command("feedback_add", ("127.0.0.1", 9001))),
]
GOOD_COMMANDS = [c for _, _, c in GOOD if c is not None]


def test_python_osc_udp_client_commands_arrive(server, collector):
    client = SimpleUDPClient("127.0.0.1", server.udp_port)
    t0 = time.monotonic_ns()
    for address, args, _ in GOOD:
        client.send_message(address, args)
    assert collector.wait(len(GOOD_COMMANDS)) == GOOD_COMMANDS
    stamps = [ts for ts, _ in collector.items]
    assert stamps == sorted(stamps) and t0 <= stamps[0] and stamps[-1] <= time.monotonic_ns()
    wait_until(lambda: server.stats.accepted == len(GOOD), what="the button release to be counted")
    s = server.stats
    assert (s.received, s.accepted, s.errors_by_kind, s.rejected_sources, s.rate_limited) == (
        len(GOOD), len(GOOD), {}, 0, 0)
    client._sock.close()


def test_python_osc_tcp_client_commands_bundles_and_ping(server, collector):
    client = SimpleTCPClient("127.0.0.1", server.tcp_port, mode=MODE_1_0, timeout=TIMEOUT_S)
    for address, args, _ in GOOD:
        client.send_message(address, args)
    bundle = OscBundleBuilder(0)  # 0 = immediately
    bundle.add_content(build_msg("/liveperf/tempo", 100.0))
    bundle.add_content(build_msg("/liveperf/tap", []))
    client.send(bundle.build())
    assert collector.wait(len(GOOD_COMMANDS) + 2) == GOOD_COMMANDS + [Command("param", ("tempo_bpm", 100.0)),
                                                                      Command("tap")]
    client.send_message("/liveperf/ping", [])
    assert [OscMessage(d).address for d in client.receive(TIMEOUT_S)] == ["/liveperf/pong"]
    client.close()
    assert server.stats.received == len(GOOD) + 2


def test_ping_over_udp_gets_pong(server, peer, collector):
    peer.send("/liveperf/ping")
    assert peer.reply() == ("/liveperf/pong", [])
    assert collector.commands == [] and server.stats.accepted == 1


ONE_OFFS = [  # oscsend arguments (types and values) -> Command
    (["/liveperf/tempo", "f", "128.5"], Command("param", ("tempo_bpm", 128.5))),
    (["/liveperf/song/select", "s", "Blue Moon"], Command("song_select", "Blue Moon")),
    (["/liveperf/song/select", "h", "2"], Command("song_select", 2)),
    (["/liveperf/param/velocity", "i", "64"], Command("param", ("velocity", 64))),
    (["/liveperf/param/sigma", "d", "0.25"], Command("param", ("sigma", 0.25))),
    (["/liveperf/param/top_p", "f", "0.95"], Command("param", ("top_p", 0.95))),
    (["/liveperf/song/next"], Command("song_next")),
    (["/liveperf/stop", "T"], Command("stop")),
    (["/liveperf/tap", "F"], None),
    (["/liveperf/panic", "i", "1"], Command("panic")),
]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_liblo_oscsend_commands_arrive(server, collector, transport):
    need_tools("oscsend")
    url = (f"osc.udp://127.0.0.1:{server.udp_port}" if transport == "udp"
           else f"osc.tcp://127.0.0.1:{server.tcp_port}")  # liblo's TCP is OSC 1.0 length-prefixed framing
    for args, _ in ONE_OFFS:
        subprocess.run(["oscsend", url, *args], check=True, timeout=TIMEOUT_S)
    expected = [c for _, c in ONE_OFFS if c is not None]
    assert collector.wait(len(expected)) == expected
    wait_until(lambda: server.stats.accepted == len(ONE_OFFS), what="all oscsend messages counted")
    assert server.stats.errors_by_kind == {}


def test_oscsend_host_port_form(server, collector):
    need_tools("oscsend")
    subprocess.run(["oscsend", "localhost", str(server.udp_port), "/liveperf/mode", "s", "phrase"], check=True,
                   timeout=TIMEOUT_S)
    assert collector.wait(1) == [Command("param", ("mode", "phrase"))]


def test_far_future_bundle_does_not_block_the_next_message(server, peer, collector):
    bundle = OscBundleBuilder(time.time() + 10**7)  # about four months ahead
    bundle.add_content(build_msg("/liveperf/stop", []))
    peer.send_raw(bundle.build().dgram)
    peer.send("/liveperf/panic")
    t0 = time.monotonic()
    assert collector.wait(2, timeout_s=1.0) == [Command("stop"), Command("panic")]
    assert time.monotonic() - t0 < 1.0


# -- Wrong input -------------------------------------------------------------------------------------------------

def _msg(address: str, *args) -> bytes:
    return build_msg(address, list(args)).dgram


def _bundle(*elements: bytes) -> bytes:
    return b"#bundle\0" + bytes(8) + b"".join(len(e).to_bytes(4, "big") + e for e in elements)


_RNG = random.Random(1234)
BAD = [  # (id, packet, error kind, address in the error reply)
    ("unknown address", _msg("/liveperf/nope"), "unknown_address", "/liveperf/nope"),
    ("address without slash", _msg("liveperf/tempo", 120.0), "not_osc", "liveperf/tempo"),
    ("wrong type", _msg("/liveperf/tempo", "fast"), "bad_type", "/liveperf/tempo"),
    ("float for an int param", _msg("/liveperf/param/velocity", 64.0), "bad_type", "/liveperf/param/velocity"),
    ("float for a song number", _msg("/liveperf/song/select", 2.0), "bad_type", "/liveperf/song/select"),
    ("blob argument", _msg("/liveperf/tempo", b"\x01\x02"), "bad_type", "/liveperf/tempo"),
    ("missing argument", _msg("/liveperf/tempo"), "bad_arg_count", "/liveperf/tempo"),
    ("extra argument", _msg("/liveperf/tempo", 120.0, 1), "bad_arg_count", "/liveperf/tempo"),
    ("extra argument on a button", _msg("/liveperf/tap", 1, 1), "bad_arg_count", "/liveperf/tap"),
    ("feedback without port", _msg("/liveperf/feedback/add", "127.0.0.1"), "bad_arg_count",
     "/liveperf/feedback/add"),
    ("out of range", _msg("/liveperf/tempo", 500.0), "out_of_range", "/liveperf/tempo"),
    ("int out of range", _msg("/liveperf/param/velocity", 0), "out_of_range", "/liveperf/param/velocity"),
    ("unknown mode", _msg("/liveperf/mode", "disco"), "out_of_range", "/liveperf/mode"),
    ("song zero", _msg("/liveperf/song/select", 0), "out_of_range", "/liveperf/song/select"),
    ("feedback to a name", _msg("/liveperf/feedback/add", "lights.local", 9000), "out_of_range",
     "/liveperf/feedback/add"),
    ("feedback port zero", _msg("/liveperf/feedback/add", "127.0.0.1", 0), "out_of_range",
     "/liveperf/feedback/add"),
    ("feedback to a foreign host", _msg("/liveperf/feedback/add", "10.1.2.3", 9000), "not_allowed",
     "/liveperf/feedback/add"),
    ("unknown param", _msg("/liveperf/param/volume", 1.0), "unknown_param", "/liveperf/param/volume"),
    ("learn unknown param", _msg("/liveperf/learn", "volume"), "unknown_param", "/liveperf/learn"),
    ("wildcard pattern", _msg("/liveperf/*"), "pattern", "/liveperf/*"),
    ("huge packet", _msg("/liveperf/tempo", "x" * 60_000), "too_large", ""),
    ("garbage after slash", b"/\xff\xfe\xfd", "malformed", ""),
    ("arguments cut off", _msg("/liveperf/tempo", 120.0)[:-2], "malformed", "/liveperf/tempo"),
    ("random bytes", b"\xff" + bytes(_RNG.randrange(256) for _ in range(199)), "not_osc", ""),
    ("empty packet", b"", "not_osc", ""),
    ("bundle element too long", _bundle(_msg("/liveperf/tap"))[:-4], "malformed", ""),
    ("bundle of 40 messages", _bundle(*[_msg("/liveperf/tap")] * 40), "too_many_messages", ""),
]


@pytest.mark.parametrize("packet, kind, address", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_udp_input_is_counted_and_answered(server, peer, collector, packet, kind, address):
    peer.send_raw(packet)
    reply_address, (err_address, reason) = peer.reply()
    assert (reply_address, err_address) == ("/liveperf/error", address)
    assert reason.startswith(kind + ": "), reason
    s = server.stats
    assert (s.received, s.accepted, s.errors_by_kind) == (1, 0, {kind: 1})
    # The server goes on: a good message right after is taken.
    peer.send("/liveperf/tap")
    assert collector.wait(1) == [Command("tap")]


def test_bad_tcp_input_is_answered_on_the_connection(server, collector):
    client = SimpleTCPClient("127.0.0.1", server.tcp_port, mode=MODE_1_0, timeout=TIMEOUT_S)
    client.send_message("/liveperf/param/velocity", 200)
    (reply,) = [OscMessage(d) for d in client.receive(TIMEOUT_S)]
    assert reply.address == "/liveperf/error"
    assert reply.params == ["/liveperf/param/velocity",
                            "out_of_range: velocity: 200 is not allowed; an integer from 1 to 127"]
    client.send_message("/liveperf/tap", [])
    assert collector.wait(1) == [Command("tap")]
    client.close()


def test_tcp_frame_over_the_limit_is_answered_then_the_connection_closed(server, collector):
    with socket.create_connection(("127.0.0.1", server.tcp_port), timeout=TIMEOUT_S) as conn:
        conn.sendall((1 << 30).to_bytes(4, "big") + b"/liveperf/tap")
        n = int.from_bytes(conn.recv(4), "big")
        data = b""
        while len(data) < n:
            data += conn.recv(n - len(data))
        m = OscMessage(data)
        assert m.address == "/liveperf/error" and m.params[1].startswith("too_large: ")
        assert conn.recv(1) == b""  # closed by the server
    assert server.stats.errors_by_kind == {"too_large": 1}
    # Other clients are still served.
    with SimpleTCPClient("127.0.0.1", server.tcp_port, mode=MODE_1_0, timeout=TIMEOUT_S) as client:
        client.send_message("/liveperf/stop", [])
        assert collector.wait(1) == [Command("stop")]


def _mutations(seed: int, n: int):
    rng = random.Random(seed)
    seeds = [_msg("/liveperf/param/temperature", 1.5), _msg("/liveperf/song/select", "Blue"),
             _msg("/liveperf/feedback/add", "127.0.0.1", 9000),
             _bundle(_msg("/liveperf/tap"), _msg("/liveperf/tempo", 99))]
    for _ in range(n):
        d = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            op = rng.random()
            if op < 0.5 and d:
                d[rng.randrange(len(d))] = rng.randrange(256)
            elif op < 0.75:
                del d[rng.randrange(len(d) + 1):]
            else:
                d += bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        yield bytes(d)


def test_fuzzed_packets_only_ever_raise_osc_input_error():
    outcomes = {"ok": 0, "refused": 0}
    for data in _mutations(seed=7, n=10_000):
        try:
            for message in split_packet(data):
                command_for(*decode_message(message))
            outcomes["ok"] += 1
        except OscInputError as e:
            assert e.kind in ("not_osc", "malformed", "too_many_messages", "pattern", "unknown_address",
                              "unknown_param", "bad_type", "bad_arg_count", "out_of_range", "not_allowed")
            outcomes["refused"] += 1
    assert outcomes["refused"] > 5_000 and outcomes["ok"] > 100


def test_fuzzed_packets_over_udp_never_stop_the_server(collector):
    with OscServer(collector, udp_port=0, rate_limit_per_s=None) as server:
        peer = UdpPeer(server.udp_port)
        packets = list(_mutations(seed=8, n=400))
        for i in range(0, len(packets), 50):  # in batches, so the kernel's receive buffer never overflows
            for data in packets[i:i + 50]:
                peer.send_raw(data)
            wait_until(lambda: server.stats.received >= i + len(packets[i:i + 50]), what="the batch to be read")
        s = server.stats
        assert "internal" not in s.errors_by_kind and "handler" not in s.errors_by_kind
        assert s.accepted + sum(s.errors_by_kind.values()) >= s.received  # every packet judged (bundles: >1)
        peer.sock.settimeout(0.2)
        while True:  # drain the error replies, then check the server still answers
            try:
                peer.sock.recv(65536)
            except TimeoutError:
                break
        peer.send("/liveperf/ping")
        assert peer.reply() == ("/liveperf/pong", [])
        peer.close()


def test_on_command_raising_is_counted_and_the_server_goes_on(caplog):
    calls = []

    def on_command(ts_ns, command):
        calls.append(command)
        if command.kind == "stop":
            raise RuntimeError("engine queue full")

    with OscServer(on_command, udp_port=0) as server:
        peer = UdpPeer(server.udp_port)
        peer.send("/liveperf/stop")
        peer.send("/liveperf/panic")
        wait_until(lambda: len(calls) == 2, what="both commands")
        wait_until(lambda: server.stats.accepted == 1)
        assert server.stats.errors_by_kind == {"handler": 1}
        assert "engine queue full" in caplog.text
        peer.close()


# -- Rate limit and allow-list -----------------------------------------------------------------------------------

def test_flood_from_one_source_is_rate_limited_without_stalling(collector):
    with OscServer(collector, udp_port=0, rate_limit_per_s=200) as server:
        flooder = UdpPeer(server.udp_port)
        tap = _msg("/liveperf/tap")
        t0 = time.monotonic()
        for _ in range(5_000):
            flooder.send_raw(tap)
        # The server goes on serving another source (its own bucket: test_every_source_has_its_own_bucket). It
        # pings again while unanswered, as a desk would: a flood can fill the socket's receive buffer, and the
        # kernel then drops *any* datagram, the other source's too, before liveperf sees it (measured: 2 of 8
        # single pings lost that way, on an idle machine and with a busy core; the 1 s single ping this test sent
        # failed 11 of 25 runs with a core kept busy).
        other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        bind_or_skip(other, "127.0.0.2")
        other.settimeout(0.2)

        def other_pong():
            other.sendto(_msg("/liveperf/ping"), ("127.0.0.1", server.udp_port))
            try:
                return OscMessage(other.recvfrom(65536)[0]).address == "/liveperf/pong"
            except TimeoutError:
                return False

        wait_until(other_pong, timeout_s=10.0, what="another source answered during the flood")
        other.close()
        # The flooder itself is answered as soon as its bucket refills (a token every 5 ms).
        flooder.sock.settimeout(0.05)

        def pong():
            flooder.send("/liveperf/ping")
            try:
                return flooder.reply(0.05)[0] == "/liveperf/pong"
            except TimeoutError:
                return False

        wait_until(pong, timeout_s=2.0, what="a pong after the flood")
        elapsed_s = time.monotonic() - t0
    # Read the counters once the server's thread has ended (``close`` joins it): a ping that ``pong`` sent before
    # the one answered may still be in the middle of ``_packet`` (counted received, not yet accepted) otherwise.
    # Seen once in a full run: the equality below failed on a live snapshot.
    s = server.stats
    taps = sum(1 for c in collector.commands if c == Command("tap"))
    assert s.rate_limited > 0 and s.errors_by_kind == {}
    assert s.received == s.accepted + s.rate_limited  # the kernel may have dropped some of the 5,000 itself
    assert taps <= 200 + 200 * elapsed_s + 2, (taps, elapsed_s)
    assert taps + 2 <= s.accepted  # + the two pongs (the flooder may have pinged more than once)
    flooder.close()


def test_every_source_has_its_own_bucket():
    """The rate limiter in virtual time: a burst takes one second's worth of tokens from its own source's bucket;
    another source still has all of its own; a token comes back every 1/rate seconds."""
    policy = _SourcePolicy((), True, 200)
    t = 10**9
    assert sum(policy.take("127.0.0.1", t) for _ in range(1000)) == 200
    assert not policy.take("127.0.0.1", t) and policy.take("127.0.0.2", t)
    assert sum(policy.take("127.0.0.2", t) for _ in range(1000)) == 199
    assert policy.take("127.0.0.1", t + 5_000_000) and not policy.take("127.0.0.1", t + 5_000_000)


def test_source_not_on_the_allow_list_is_rejected(collector):
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    bind_or_skip(probe, "127.0.0.2")
    probe.settimeout(0.3)
    with OscServer(collector, host="0.0.0.0", udp_port=0, tcp_port=0, allow=("127.0.0.1",)) as server:
        assert server.host == "0.0.0.0"
        probe.sendto(_msg("/liveperf/stop"), ("127.0.0.1", server.udp_port))
        probe.sendto(_msg("/liveperf/ping"), ("127.0.0.1", server.udp_port))
        wait_until(lambda: server.stats.rejected_sources == 2, what="UDP rejections")
        with pytest.raises(TimeoutError):
            probe.recvfrom(65536)  # no reply to a stranger
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.bind(("127.0.0.2", 0))
        tcp.settimeout(TIMEOUT_S)
        tcp.connect(("127.0.0.1", server.tcp_port))
        assert tcp.recv(1) == b""  # closed at once
        tcp.close()
        assert server.stats.rejected_sources == 3
        # The allowed source gets through on the same server.
        allowed = UdpPeer(server.udp_port)
        allowed.send("/liveperf/panic")
        assert collector.wait(1) == [Command("panic")]
        s = server.stats
        assert (s.received, s.accepted, s.rejected_sources, s.errors_by_kind) == (3, 1, 3, {})
        allowed.close()
    probe.close()


def test_allow_list_takes_networks_and_too_many_tcp_clients_are_refused(collector):
    with OscServer(collector, host="0.0.0.0", tcp_port=0, allow=("127.0.0.0/30",), max_tcp_clients=1) as server:
        first = SimpleTCPClient("127.0.0.1", server.tcp_port, mode=MODE_1_0, timeout=TIMEOUT_S)
        first.send_message("/liveperf/tap", [])
        collector.wait(1)
        with socket.create_connection(("127.0.0.1", server.tcp_port), timeout=TIMEOUT_S) as second:
            assert second.recv(1) == b""
        assert server.stats.errors_by_kind == {"too_many_clients": 1}
        first.close()


def test_ports_zero_are_distinct_and_close_is_quick_and_idempotent(collector):
    a = OscServer(collector, udp_port=0, tcp_port=0).start()
    b = OscServer(collector, udp_port=0).start()
    assert a.udp_port and a.tcp_port and b.udp_port and a.udp_port != b.udp_port and b.tcp_port is None
    with pytest.raises(OSError):
        OscServer(collector, udp_port=a.udp_port).start()  # taken
    t0 = time.monotonic()
    a.close()
    b.close()
    a.close()
    assert time.monotonic() - t0 < 1.0
    OscServer(collector, udp_port=0).close()  # never started


@pytest.mark.parametrize("kwargs, match", [
    ({}, "udp_port and/or a tcp_port"),
    ({"udp_port": 0, "allow": ("lights",)}, "allow-list"),
    ({"udp_port": 0, "host": "my-laptop"}, "not an IP address"),
    ({"udp_port": 0, "rate_limit_per_s": 0}, "positive"),
])
def test_server_arguments_are_checked(collector, kwargs, match):
    with pytest.raises(ValueError, match=match):
        OscServer(collector, **kwargs)


def test_command_for_is_pure():
    assert command_for("/liveperf/tap", "f", (0.0,)) is None
    assert command_for("/liveperf/tap", "h", (2,)) == Command("tap")
    with pytest.raises(OscInputError) as e:
        command_for("/liveperf/feedback/add", "si", ("192.168.1.20", 9000))
    assert e.value.kind == "not_allowed"
    assert command_for("/liveperf/feedback/add", "si", ("192.168.1.20", 9000), host_allowed=lambda ip: True) == \
        Command("feedback_add", ("192.168.1.20", 9000))
    assert decode_message(_msg("/x", 1, 0.5, "a", True, False)) == ("/x", "ifsTF", (1, 0.5, "a", True, False))
    assert split_packet(_bundle(_bundle(_msg("/a")), _msg("/b"))) == [_msg("/a"), _msg("/b")]
    deep = _msg("/a")
    for _ in range(osc.MAX_BUNDLE_DEPTH + 1):
        deep = _bundle(deep)
    with pytest.raises(OscInputError, match="nested"):
        split_packet(deep)



def test_idle_tcp_connections_never_lock_a_genuine_client_out(collector):
    # 16 connections that say nothing (a crashed tablet's, a port scanner's), all from this machine: 8 are held (the
    # per-source limit), 8 refused. A genuine client from here still connects: the longest-idle one makes room.
    with OscServer(collector, tcp_port=0, tcp_evict_idle_s=0.5) as server:
        idle = [socket.create_connection(("127.0.0.1", server.tcp_port), timeout=TIMEOUT_S) for _ in range(16)]
        time.sleep(1.0)
        t0 = time.monotonic()
        client = SimpleTCPClient("127.0.0.1", server.tcp_port, mode=MODE_1_0, timeout=TIMEOUT_S)
        client.send_message("/liveperf/ping", [])
        assert [OscMessage(d).address for d in client.receive(TIMEOUT_S)] == ["/liveperf/pong"]
        assert time.monotonic() - t0 < 1.0
        s = server.stats
        assert s.tcp_evicted >= 1 and "too_many_clients" in s.errors_by_kind  # connections 9-16 were refused
        client.close()
        for sock in idle:
            sock.close()


def test_a_tcp_connection_silent_past_the_idle_timeout_is_closed(collector):
    with OscServer(collector, tcp_port=0, tcp_idle_timeout_s=0.3) as server:
        with socket.create_connection(("127.0.0.1", server.tcp_port), timeout=5.0) as silent:
            assert silent.recv(1) == b""  # closed by the server (the sweep runs at least once a second)
        wait_until(lambda: server.stats.tcp_idle_closed == 1, what="the idle close to be counted")


def test_selecting_a_song_the_setlist_does_not_have_gets_an_error_reply(collector):
    # The show passes its setlist's check; here a setlist of 3 songs, one titled "Blue Moon".
    def no_such_song(value):
        if isinstance(value, int):
            return None if 1 <= value <= 3 else f"no song number {value}; the setlist has songs 1..3"
        return None if value.lower() in "blue moon" else f"no song matches {value!r}"

    with OscServer(collector, udp_port=0, song_check=no_such_song) as server:
        peer = UdpPeer(server.udp_port)
        peer.send("/liveperf/song/select", 99)
        assert peer.reply() == ("/liveperf/error", ["/liveperf/song/select",
                                                    "no_such_song: no song number 99; the setlist has songs 1..3"])
        peer.send("/liveperf/song/select", "Yesterday")
        assert peer.reply()[1][1] == "no_such_song: no song matches 'Yesterday'"
        peer.send("/liveperf/song/select", 2)
        assert collector.wait(1) == [Command("song_select", 2)]
        assert server.stats.errors_by_kind == {"no_such_song": 2}
        peer.close()
