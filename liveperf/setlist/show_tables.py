"""The ``[show]`` sub-tables: ``[show.osc]`` (show control in, feedback out) and ``[show.link]`` (an Ableton Link
session's transport and tempo, with ``clock = "link"``). Parsed once where the setlist is loaded; errors name the
file, the table, the field and what is allowed (``liveperf.setlist.fields``)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from liveperf.setlist.fields import (SetlistError, bad, check_unknown, choice, flag, host_port_list, ip_list, number,
                                     text)

FEEDBACK_PROTOCOLS = ("udp", "tcp")
LINK_TEMPO = ("follow", "lead")


@dataclass(frozen=True)
class OscSettings:
    """``[show.osc]``: control in (UDP/TCP) and feedback out."""

    enabled: bool = True
    host: str = "127.0.0.1"
    udp_port: int | None = 9000  # None: do not listen; 0: any free port
    tcp_port: int | None = 9001
    allow: tuple[str, ...] = ()  # sources beyond loopback: IPs or networks
    rate_limit_per_s: float = 200.0
    feedback: tuple[tuple[str, int], ...] = ()  # (ip, port) targets
    feedback_protocol: str = "udp"



OSC_FIELDS: dict[str, tuple[Any, str]] = {
    "enabled": (True, "true or false"),
    "host": ("127.0.0.1", "an IP address of this machine to listen on (127.0.0.1: this machine only; 0.0.0.0: all)"),
    "udp_port": (9000, "an integer 1..65535, 0 for any free port, or -1 for no UDP"),
    "tcp_port": (9001, "an integer 1..65535, 0 for any free port, or -1 for no TCP (OSC 1.0 framing)"),
    "allow": ([], "a list of source IP addresses or networks allowed besides loopback, e.g. [\"192.168.1.0/24\"]"),
    "rate_limit_per_s": (200, "a number from 1 to 100000 (packets per second per source)"),
    "feedback": ([], "a list of \"ip:port\" targets for beat/note/song feedback, e.g. [\"192.168.1.20:8000\"]"),
    "feedback_protocol": ("udp", f"one of {', '.join(FEEDBACK_PROTOCOLS)}"),
}


def parse_osc(raw: Any, where: str) -> OscSettings:
    """``[show.osc]`` from its TOML table (``where`` names the file and table in errors)."""
    if not isinstance(raw, dict):
        raise SetlistError(f"{where}: must be a table")
    check_unknown(raw, OSC_FIELDS, where)
    f = OSC_FIELDS
    host = text(raw, "host", f, where, non_empty=True)
    try:
        ipaddress.ip_address("127.0.0.1" if host == "localhost" else host)
    except ValueError:
        raise bad(where, "host", host, f) from None
    udp = number(raw, "udp_port", -1, 65535, f, where, integer=True)
    tcp = number(raw, "tcp_port", -1, 65535, f, where, integer=True)
    return OscSettings(
        enabled=flag(raw, "enabled", f, where),
        host="127.0.0.1" if host == "localhost" else host,
        udp_port=None if udp < 0 else udp,
        tcp_port=None if tcp < 0 else tcp,
        allow=ip_list(raw, "allow", f, where),
        rate_limit_per_s=float(number(raw, "rate_limit_per_s", 1, 100000, f, where)),
        feedback=host_port_list(raw, "feedback", f, where),
        feedback_protocol=choice(raw, "feedback_protocol", FEEDBACK_PROTOCOLS, f, where),
    )


@dataclass(frozen=True)
class LinkSettings:
    """``[show.link]``: how a show with ``clock = "link"`` shares the session's transport and tempo."""

    start_stop: bool = True  # follow (and share) the session's start/stop; off: always playing on the session's grid
    tempo: str = "follow"  # "lead": each song's tempo, taps and OSC tempo go to the session


LINK_FIELDS: dict[str, tuple[Any, str]] = {
    "start_stop": (True, "true or false (start and stop with the Link session's transport; the show presses play "
                         "when it starts; false: play on the session's grid whatever its transport)"),
    "tempo": ("follow", f"one of {', '.join(LINK_TEMPO)} (follow the session's tempo; lead: set it from each song's "
                        f"tempo, taps and OSC)"),
}


def parse_link(raw: Any, where: str) -> LinkSettings:
    """``[show.link]`` from its TOML table."""
    if not isinstance(raw, dict):
        raise SetlistError(f"{where}: must be a table")
    check_unknown(raw, LINK_FIELDS, where)
    return LinkSettings(start_stop=flag(raw, "start_stop", LINK_FIELDS, where),
                        tempo=choice(raw, "tempo", LINK_TEMPO, LINK_FIELDS, where))
