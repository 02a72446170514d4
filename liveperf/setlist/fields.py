"""Field checks for setlist tables: each takes the table, the field name, the field table (default and allowed values
in words) and ``where`` (file, song), and raises ``SetlistError`` naming all of them. Used by
``liveperf.setlist.schema``.

Parameter fields (those in ``liveperf.params.PARAMS``) are checked against the one parameter table, so a value the
setlist accepts is always a value OSC and MIDI mappings can set too.
"""

from __future__ import annotations

import ipaddress
import math
from typing import Any

from liveperf.params import PARAMS, ParamError, coerce

REQUIRED = object()


class SetlistError(ValueError):
    """A setlist that cannot be played; the message says where and what is allowed."""


def param_allowed(name: str, note: str = "") -> str:
    """The allowed values of a parameter field, in words, from the parameter table."""
    return PARAMS[name].allowed() + (f" ({note})" if note else "")


def check_unknown(table: dict, fields: dict, where: str) -> None:
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise SetlistError(f"{where}: unknown field(s) {unknown}; allowed fields: {', '.join(fields)}")


def get(table: dict, name: str, fields: dict, where: str) -> Any:
    default, allowed = fields[name]
    if name not in table:
        if default is REQUIRED:
            raise SetlistError(f"{where}: field '{name}' is missing; it must be {allowed}")
        return default
    return table[name]


def bad(where: str, name: str, value: Any, fields: dict) -> SetlistError:
    return SetlistError(f"{where}: field '{name}' = {value!r} is not allowed; it must be {fields[name][1]}")


def number(table, name, lo, hi, fields, where, integer=False, lo_open=False):
    v = get(table, name, fields, where)
    ok_type = isinstance(v, int) if integer else isinstance(v, (int, float))
    # ``not lo <= v <= hi`` also refuses NaN (every comparison with it is false); TOML also reads ``inf``.
    if isinstance(v, bool) or not ok_type or (isinstance(v, float) and not math.isfinite(v)) or \
            not lo <= v <= hi or (lo_open and v == lo):
        raise bad(where, name, v, fields)
    return v


def param(table, name, fields, where, param_name: str | None = None):
    """A field that is a live parameter: checked (and typed) by ``params.coerce``."""
    v = get(table, name, fields, where)
    try:
        return coerce(param_name or name, v)
    except ParamError:
        raise bad(where, name, v, fields) from None


def choice(table, name, choices, fields, where):
    v = get(table, name, fields, where)
    if v not in choices:
        raise bad(where, name, v, fields)
    return v


def flag(table, name, fields, where) -> bool:
    v = get(table, name, fields, where)
    if not isinstance(v, bool):
        raise bad(where, name, v, fields)
    return v


def text(table, name, fields, where, non_empty: bool = False) -> str:
    v = get(table, name, fields, where)
    if not isinstance(v, str) or (non_empty and not v):
        raise bad(where, name, v, fields)
    return v


def names(table, name, fields, where) -> tuple[str, str]:
    v = get(table, name, fields, where)
    if not isinstance(v, list) or len(v) != 2 or not all(isinstance(x, str) and x for x in v):
        raise bad(where, name, v, fields)
    return v[0], v[1]


def ip_list(table, name, fields, where) -> tuple[str, ...]:
    """IP addresses or networks (``192.168.1.0/24``)."""
    v = get(table, name, fields, where)
    if not isinstance(v, list):
        raise bad(where, name, v, fields)
    for x in v:
        try:
            ipaddress.ip_network(x, strict=False)
        except (TypeError, ValueError):
            raise SetlistError(f"{where}: field '{name}': {x!r} is not an IP address or network; it must be "
                               f"{fields[name][1]}") from None
    return tuple(v)


def host_port_list(table, name, fields, where) -> tuple[tuple[str, int], ...]:
    """``"host:port"`` strings (an IP address or ``localhost``; no name lookups on stage)."""
    v = get(table, name, fields, where)
    if not isinstance(v, list):
        raise bad(where, name, v, fields)
    out = []
    for x in v:
        host, _, port = x.rpartition(":") if isinstance(x, str) else ("", "", "")
        ip = "127.0.0.1" if host == "localhost" else host.strip("[]")
        try:
            ipaddress.ip_address(ip)
            ok = port.isdigit() and 1 <= int(port) <= 65535
        except ValueError:
            ok = False
        if not ok:
            raise SetlistError(f"{where}: field '{name}': {x!r} is not allowed; it must be {fields[name][1]}")
        out.append((ip, int(port)))
    return tuple(out)
