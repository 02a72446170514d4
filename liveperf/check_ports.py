"""``liveperf check``'s look at what the show's ports need: the OSC ports free on their host, a MIDI system whose
ports open (on JACK the default, jack-native, first). Split from ``liveperf.check``; called once per check, from
its thread."""

from __future__ import annotations

import socket

from liveperf.setlist.show_tables import OscSettings


def check_osc(osc: OscSettings) -> tuple[str, list[str]]:
    """(description, problems): can the OSC server listen where the setlist says? Binds and closes at once."""
    if not osc.enabled:
        return "off", []
    done, problems = [], []
    for kind, port, name in ((socket.SOCK_DGRAM, osc.udp_port, "udp"), (socket.SOCK_STREAM, osc.tcp_port, "tcp")):
        if port is None:
            continue
        family = socket.AF_INET6 if ":" in osc.host else socket.AF_INET
        try:
            with socket.socket(family, kind) as sock:
                sock.bind((osc.host, port))
                done.append(f"{name} {sock.getsockname()[1]}")
        except OSError as exc:
            problems.append(f"OSC {name} cannot listen on {osc.host}:{port} ({exc.strerror or exc}); is another "
                            f"program (or liveperf) using it? Change [show.osc] {name}_port or stop the other program")
    return (f"{osc.host}: {', '.join(done)} free" if done else "no OSC port"), problems


def check_midi(require: bool) -> tuple[str, list[str], list[str]]:
    """(description, problems, warnings) for the MIDI system: can we open our virtual ports?"""
    from liveperf.io import midi_ports

    try:
        backend = midi_ports.detect_backend("auto")
    except midi_ports.MidiUnavailable as exc:
        msg = f"no MIDI system: {exc}"
        return "none (file mode only)", ([msg] if require else []), ([] if require else [msg])
    if backend == "jack":  # the show's default on JACK: the compiled frame-exact client (README, "MIDI backends")
        try:
            from liveperf.io.jack_native_ports import open_ports
            out, inp = open_ports("liveperf-check")
            names = f"{out.full_name}, {inp.full_name}"
            inp.close()
            out.close()
            return f"jack-native: opened {names}", [], []
        except Exception as exc:  # noqa: BLE001 - a finding to report; the rtmidi fallback is tried below
            native = f"jack-native: cannot open its client ({type(exc).__name__}: {exc}); `--backend jack-rtmidi`"
        backend = "jack-rtmidi"
    else:
        native = ""
    system = "jack" if backend == "jack-rtmidi" else backend
    try:
        out = midi_ports.MidiOutPort.open_virtual("liveperf-check-out", "out", system)
        inp = midi_ports.MidiInPort.open_virtual("liveperf-check-in", "in", system)
        names = f"{out.full_name}, {inp.full_name}"
        out.close()
        inp.close()
    except Exception as exc:  # any failure to open a port is a finding to report, not a crash of the check
        return backend, [f"{backend}: cannot open virtual ports ({type(exc).__name__}: {exc})"] + (
            [native] if native else []), []
    if native:
        return f"{backend}: opened {names}", [native + " opens (use it)"], []
    return f"{backend}: opened {names}", [], []
