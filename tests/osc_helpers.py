"""Waiting, tool checks and peers shared by the OSC tests (``test_osc``, ``test_osc_limits``, ``test_osc_feedback``)."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time

import pytest
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import build_msg

from liveperf.io.osc import Command

TIMEOUT_S = 5.0


def wait_until(predicate, timeout_s: float = TIMEOUT_S, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.002)


def need_tools(*names: str) -> None:
    """Skip without liblo-tools, except in CI (CI=true), where the tools are installed and their absence fails."""
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        reason = f"liblo tools not installed: {', '.join(missing)} (Debian/Ubuntu: apt-get install liblo-tools)"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(reason)
        pytest.skip(reason)


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


def bind_or_skip(sock: socket.socket, ip: str) -> None:
    try:
        sock.bind((ip, 0))
    except OSError as e:
        sock.close()
        pytest.skip(f"cannot bind a second loopback address {ip} here ({e})")


def osc_message(address: str, *args) -> bytes:
    return build_msg(address, list(args)).dgram


def osc_bundle(*elements: bytes) -> bytes:
    return b"#bundle\0" + bytes(8) + b"".join(len(e).to_bytes(4, "big") + e for e in elements)
