"""Fixtures of the OSC input tests (``test_osc``, ``test_osc_limits``): a recording ``on_command``, a server on
ephemeral ports, and a raw UDP peer that reads the server's replies."""

from __future__ import annotations

import pytest

from liveperf.io.osc import OscServer
from tests.osc_helpers import Collector, UdpPeer


@pytest.fixture
def collector():
    return Collector()


@pytest.fixture
def server(collector):
    with OscServer(collector, udp_port=0, tcp_port=0) as s:
        yield s


@pytest.fixture
def peer(server):
    p = UdpPeer(server.udp_port)
    yield p
    p.close()
