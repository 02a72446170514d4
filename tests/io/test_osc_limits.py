"""OSC in, its limits, over real sockets on 127.0.0.1 with ephemeral ports: a flood from one source, each source's
bucket, the allow-list, too many TCP clients, idle TCP connections, the server's arguments and ports.

Every wait is a poll or an event with a timeout; nothing sleeps for a fixed time.
"""

from __future__ import annotations

import socket
import time

import pytest
from pythonosc.osc_message import OscMessage
from pythonosc.osc_tcp_server import MODE_1_0
from pythonosc.tcp_client import SimpleTCPClient

from liveperf.io import osc
from liveperf.io.osc import (Command, OscInputError, OscServer, _SourcePolicy, command_for,
                             decode_message, split_packet)
from tests.osc_helpers import TIMEOUT_S, UdpPeer, bind_or_skip, osc_bundle, osc_message, wait_until


# -- Rate limit and allow-list -----------------------------------------------------------------------------------

def test_flood_from_one_source_is_rate_limited_without_stalling(collector):
    with OscServer(collector, udp_port=0, rate_limit_per_s=200) as server:
        flooder = UdpPeer(server.udp_port)
        tap = osc_message("/liveperf/tap")
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
            other.sendto(osc_message("/liveperf/ping"), ("127.0.0.1", server.udp_port))
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
        probe.sendto(osc_message("/liveperf/stop"), ("127.0.0.1", server.udp_port))
        probe.sendto(osc_message("/liveperf/ping"), ("127.0.0.1", server.udp_port))
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
    assert decode_message(osc_message("/x", 1, 0.5, "a", True, False)) == ("/x", "ifsTF", (1, 0.5, "a", True, False))
    assert split_packet(osc_bundle(osc_bundle(osc_message("/a")), osc_message("/b"))) == [osc_message("/a"), osc_message("/b")]
    deep = osc_message("/a")
    for _ in range(osc.MAX_BUNDLE_DEPTH + 1):
        deep = osc_bundle(deep)
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
