"""OSC in over real sockets on 127.0.0.1 with ephemeral ports: python-osc and liblo (oscsend/oscdump) peers.

Every wait is a poll or an event with a timeout; nothing sleeps for a fixed time.
"""

from __future__ import annotations

import random
import socket
import subprocess
import time

import pytest
from pythonosc.osc_bundle_builder import OscBundleBuilder
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import build_msg
from pythonosc.osc_tcp_server import MODE_1_0
from pythonosc.tcp_client import SimpleTCPClient
from pythonosc.udp_client import SimpleUDPClient

from liveperf.io.osc import Command, OscInputError, OscServer, command_for, decode_message, split_packet
from tests.osc_helpers import TIMEOUT_S, UdpPeer, need_tools, osc_bundle, osc_message, wait_until


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

_RNG = random.Random(1234)
BAD = [  # (id, packet, error kind, address in the error reply)
    ("unknown address", osc_message("/liveperf/nope"), "unknown_address", "/liveperf/nope"),
    ("address without slash", osc_message("liveperf/tempo", 120.0), "not_osc", "liveperf/tempo"),
    ("wrong type", osc_message("/liveperf/tempo", "fast"), "bad_type", "/liveperf/tempo"),
    ("float for an int param", osc_message("/liveperf/param/velocity", 64.0), "bad_type", "/liveperf/param/velocity"),
    ("float for a song number", osc_message("/liveperf/song/select", 2.0), "bad_type", "/liveperf/song/select"),
    ("blob argument", osc_message("/liveperf/tempo", b"\x01\x02"), "bad_type", "/liveperf/tempo"),
    ("missing argument", osc_message("/liveperf/tempo"), "bad_arg_count", "/liveperf/tempo"),
    ("extra argument", osc_message("/liveperf/tempo", 120.0, 1), "bad_arg_count", "/liveperf/tempo"),
    ("extra argument on a button", osc_message("/liveperf/tap", 1, 1), "bad_arg_count", "/liveperf/tap"),
    ("feedback without port", osc_message("/liveperf/feedback/add", "127.0.0.1"), "bad_arg_count",
     "/liveperf/feedback/add"),
    ("out of range", osc_message("/liveperf/tempo", 500.0), "out_of_range", "/liveperf/tempo"),
    ("int out of range", osc_message("/liveperf/param/velocity", 0), "out_of_range", "/liveperf/param/velocity"),
    ("unknown mode", osc_message("/liveperf/mode", "disco"), "out_of_range", "/liveperf/mode"),
    ("song zero", osc_message("/liveperf/song/select", 0), "out_of_range", "/liveperf/song/select"),
    ("feedback to a name", osc_message("/liveperf/feedback/add", "lights.local", 9000), "out_of_range",
     "/liveperf/feedback/add"),
    ("feedback port zero", osc_message("/liveperf/feedback/add", "127.0.0.1", 0), "out_of_range",
     "/liveperf/feedback/add"),
    ("feedback to a foreign host", osc_message("/liveperf/feedback/add", "10.1.2.3", 9000), "not_allowed",
     "/liveperf/feedback/add"),
    ("unknown param", osc_message("/liveperf/param/volume", 1.0), "unknown_param", "/liveperf/param/volume"),
    ("learn unknown param", osc_message("/liveperf/learn", "volume"), "unknown_param", "/liveperf/learn"),
    ("wildcard pattern", osc_message("/liveperf/*"), "pattern", "/liveperf/*"),
    ("huge packet", osc_message("/liveperf/tempo", "x" * 60_000), "too_large", ""),
    ("garbage after slash", b"/\xff\xfe\xfd", "malformed", ""),
    ("arguments cut off", osc_message("/liveperf/tempo", 120.0)[:-2], "malformed", "/liveperf/tempo"),
    ("random bytes", b"\xff" + bytes(_RNG.randrange(256) for _ in range(199)), "not_osc", ""),
    ("empty packet", b"", "not_osc", ""),
    ("bundle element too long", osc_bundle(osc_message("/liveperf/tap"))[:-4], "malformed", ""),
    ("bundle of 40 messages", osc_bundle(*[osc_message("/liveperf/tap")] * 40), "too_many_messages", ""),
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
    seeds = [osc_message("/liveperf/param/temperature", 1.5), osc_message("/liveperf/song/select", "Blue"),
             osc_message("/liveperf/feedback/add", "127.0.0.1", 9000),
             osc_bundle(osc_message("/liveperf/tap"), osc_message("/liveperf/tempo", 99))]
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
