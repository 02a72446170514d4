"""Command line: ``liveperf play | check | ports | models``. Parses arguments (argparse), wires a ``Show``, prints results.

Exit codes: 0 success, 1 the show ran but something failed (errors in a song; or a shutdown or port opening that
hung past its limit, ended by faulthandler), 2 bad input before the show
(setlist, model, MIDI file, no MIDI system), 130 stopped by a signal.
"""

from __future__ import annotations

import argparse
import dataclasses
import faulthandler
import json
import signal
import sys
import time
from pathlib import Path

from liveperf.io.midi_file import MidiFileError
from liveperf.models.metadata import ModelMetadataError
from liveperf.models.onnx_model import ModelLoadError, load_model, shipped_model_names, shipped_models_dir
from liveperf.setlist.schema import SetlistError, load_setlist

BACKENDS = ("auto", "jack", "alsa", "coremidi", "file")
# On JACK, ``jack`` (and ``auto``) is the frame-exact compiled client (``jack-native``, its name in reports);
# ``jack-rtmidi`` is python-rtmidi's JACK path, the fallback (README, "MIDI backends").
JACK_NAMES = ("jack-native", "jack-rtmidi")
SHUTDOWN_LIMIT_S = 2.0  # a signal ends the process within this, whatever a library call does on the way out
PORTS_LIMIT_S = 10.0  # opening the MIDI ports gives up after this


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="liveperf", description="A real-time MIDI partner that plays with you.")
    sub = p.add_subparsers(dest="command", required=True)
    play = sub.add_parser("play", help="play a setlist", description=(
        "Play the songs of a setlist. With a MIDI system (JACK, ALSA, CoreMIDI) liveperf opens virtual ports "
        "'liveperf:in' and 'liveperf:out'; with none, it plays in file mode: each song's performer take (or "
        "--input) is played in real time and everything heard is recorded."))
    play.add_argument("setlist", type=Path)
    play.add_argument("--input", type=Path, help="performer part from this MIDI file (for every song played)")
    play.add_argument("--record", type=Path, help="also write the whole show (performer and partner) to this MIDI file")
    play.add_argument("--record-dir", type=Path,
                      help="folder for the per-song recordings (default recordings/<setlist>-<date-time>/); "
                           "crash-safe: after a kill, `liveperf recover FOLDER` (or the next show) restores them")
    play.add_argument("--song", action="append", default=[],
                      help="song number (1-based) or title substring; repeat for several (default: all)")
    play.add_argument("--duration", type=float, help="stop each song after this many seconds")
    play.add_argument("--backend", choices=BACKENDS + JACK_NAMES, default="auto",
                      help="MIDI system (default auto: JACK, then ALSA, then CoreMIDI, else file mode). On JACK the "
                           "default is jack-native: every note on its exact frame, one client with ports "
                           "<client-name>:in and :out (aliased <client-name>-in:in, -out:out); jack-rtmidi: the "
                           "python-rtmidi JACK path, a fallback")
    play.add_argument("--no-reflex", action="store_true",
                      help="jack-native: harmonize answers from Python a cycle later instead of in the note-on's "
                           "own JACK cycle (for comparison)")
    play.add_argument("--provider", choices=("cpu", "cuda", "auto"), default="cpu",
                      help="onnxruntime execution provider (default cpu: fastest for per-step models)")
    play.add_argument("--seed", type=int, help="override every song's sampling seed")
    play.add_argument("--client-name", default="liveperf", help="MIDI client name (default liveperf)")
    play.add_argument("--report-json", type=Path,
                      help="write the run's report (per song, and every message's send time minus due time) as JSON")
    play.add_argument("--no-realtime", action="store_true",
                      help="do not ask for SCHED_FIFO priority for the sending thread")
    play.add_argument("--no-stage-view", action="store_true",
                      help="no terminal status display or stage keys (also off when stdout is not a terminal, "
                           "or with [show] stage_view = false)")
    ports = sub.add_parser("ports", help="list MIDI ports")
    ports.add_argument("--backend", choices=BACKENDS[:-1], default="auto")
    check = sub.add_parser("check", help="pre-gig check: GO / NO-GO for a setlist on this machine",
                           description="Validate the setlist, load every model and take, measure each song's step "
                                       "latency against its budgets, check the MIDI ports. Exit 0 = GO, 1 = NO-GO.")
    check.add_argument("setlist", type=Path, nargs="+", help="one or more setlists (GO only if every one is GO)")
    check.add_argument("--json", type=Path, help="also write the result as JSON to this file (a list for several)")
    check.add_argument("--steps", type=int, default=2000, help="timed steps per song (default 2000, after warm-up)")
    check.add_argument("--require-midi", action="store_true", help="NO-GO when no MIDI system is running")
    check.add_argument("--no-midi", action="store_true", help="skip the MIDI port check")
    check.add_argument("--provider", choices=("cpu", "cuda", "auto"), default="cpu")
    rec = sub.add_parser("recover", help="turn the journals of an interrupted recording into MIDI files")
    rec.add_argument("folder", type=Path)
    models = sub.add_parser("models", help="list the shipped models with their metadata and figures")
    models.add_argument("--json", action="store_true", help="print the full metadata as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "play":
            return _play(args)
        if args.command == "ports":
            return _ports(args)
        if args.command == "check":
            return _check(args)
        if args.command == "recover":
            return _recover(args)
        return _models(args)
    except (SetlistError, ModelLoadError, ModelMetadataError, MidiFileError) as exc:
        print(f"liveperf: {exc}", file=sys.stderr)
        return 2


def _recover(args) -> int:
    from liveperf.io.journal import recover

    failed: list = []

    def on_error(path, why) -> None:
        print(f"liveperf: {path}: {why}", file=sys.stderr)
        failed.append(path)

    written = recover(args.folder, on_error=on_error)
    for p in written:
        print(f"recovered {p}")
    if not written and not failed:
        print(f"nothing to recover in {args.folder}")
    return 1 if failed else 0


def _play(args) -> int:
    from liveperf.io import midi_ports
    from liveperf.show.run import NullPort, Show, ShowOptions

    setlist = load_setlist(args.setlist)
    indices = sorted({i for sel in args.song for i in setlist.find(sel)}) if args.song else list(range(len(setlist.songs)))
    backend, no_midi = args.backend, None
    if backend != "file":
        try:
            backend = midi_ports.detect_backend("jack" if backend in JACK_NAMES else backend)
            if backend == "jack":
                backend = "jack-rtmidi" if args.backend == "jack-rtmidi" else "jack-native"
        except midi_ports.MidiUnavailable as exc:
            if args.backend != "auto":
                print(f"liveperf: {exc}", file=sys.stderr)
                return 2
            no_midi, backend = exc, "file"
    stamp = f"{setlist.path.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    if args.record_dir:
        record_dir = args.record_dir
    elif setlist.record_dir:
        record_dir = setlist.path.parent / setlist.record_dir / stamp
    else:
        record_dir = Path("recordings") / stamp
    if no_midi is not None:
        print(f"liveperf: {no_midi.reason}\n{file_mode_notice(args.input, record_dir)}", flush=True)
    options = ShowOptions(input_path=args.input, record_path=args.record, record_dir=record_dir, backend=backend,
                          duration_s=args.duration,
                          provider=args.provider, client_name=args.client_name, seed=args.seed,
                          realtime=not args.no_realtime, stage_view=not args.no_stage_view)
    show = Show(setlist, options)

    signalled: list[bool] = []  # the first signal's watchdog (below) is the one that counts

    def on_signal(*_) -> None:
        # The show ends at once (every note off, recordings closed: ~0.1 s). Should a MIDI library call block on the
        # way out (rtmidi's jack_client_close once waited for good on a lock held by libjack's own thread, holding
        # the GIL, so no Python code could run), faulthandler's own C thread ends the process SHUTDOWN_LIMIT_S after
        # the signal, with every thread's traceback on stderr, exit status 1.
        if not signalled:
            signalled.append(True)
            faulthandler.dump_traceback_later(SHUTDOWN_LIMIT_S, exit=True)
        show.stop_event.set()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    out_port, in_port, watch = NullPort(), None, None
    if backend != "file":
        # Opening ports calls into libjack / ALSA, which can block for good (a wedged server): give up after
        # PORTS_LIMIT_S, saying so (faulthandler's C thread, as on shutdown), rather than hang before the show.
        if backend == "jack-native":  # compiling the callback is CPU work, not a call that can hang: before the limit
            from liveperf.io.jack_native import JackUnavailable, precompile
            try:
                precompile()
            except JackUnavailable as exc:
                print(f"liveperf: {exc}", file=sys.stderr)
                return 2
        print(f"liveperf: opening {backend} ports (at most {PORTS_LIMIT_S:g} s)", flush=True)
        system = "jack" if backend == "jack-rtmidi" else backend  # the MIDI system, as python-rtmidi names it
        faulthandler.dump_traceback_later(PORTS_LIMIT_S, exit=True)
        # One MIDI client per port (rtmidi opens one per object); named so JACK never renames them to "-01".
        # [show] midi_out / midi_in name the synth and the controller to connect to; else connect by hand.
        try:
            later = ("it is connected when it appears" if backend in JACK_NAMES else
                     "connect it by hand when it is there")

            def missing(field: str, target: str, ours: str) -> None:  # plugged in late: the show starts anyway
                print(f"liveperf: warning: [show] {field} = {target!r}: no such MIDI port yet; liveperf's port is "
                      f"{ours}; {later}", flush=True)

            if backend == "jack-native":
                out_port, in_port = _open_native(args, setlist)
                for side, target in out_port.missing.items():
                    missing(f"midi_{side}", target, out_port.client.out_name if side == "out" else
                            out_port.client.in_name)
                # survive a JACK restart; connect (again) the synth and controller when they (re)appear
                from liveperf.io.jack_native_watch import NativeWatch
                try:
                    watch = NativeWatch(out_port, in_port, out_target=setlist.midi_out, in_target=setlist.midi_in,
                                        on_event=lambda text: show.log(f"ports: {text}")).start()
                except midi_ports.MidiUnavailable:
                    if in_port is not None:
                        in_port.close()
                    raise
            else:
                out_port = None
                if setlist.midi_out:
                    try:
                        out_port = midi_ports.MidiOutPort.open_existing(setlist.midi_out, f"{args.client_name}-out",
                                                                        "out", system)
                    except midi_ports.PortNotFound:
                        pass
                if out_port is None:
                    out_port = midi_ports.MidiOutPort.open_virtual(f"{args.client_name}-out", "out", system)
                    if setlist.midi_out:
                        missing("midi_out", setlist.midi_out, out_port.full_name)
            if args.input is None and backend != "jack-native":
                kw = dict(timing=setlist.clock == "midi")
                if setlist.midi_in:
                    try:
                        in_port = midi_ports.MidiInPort.open_existing(setlist.midi_in, f"{args.client_name}-in",
                                                                      "in", system, **kw)
                    except midi_ports.PortNotFound:
                        pass
                if in_port is None:
                    in_port = midi_ports.MidiInPort.open_virtual(f"{args.client_name}-in", "in", system, **kw)
                    if setlist.midi_in:
                        missing("midi_in", setlist.midi_in, in_port.full_name)
            if backend == "jack-rtmidi":  # survive a JACK restart and a synth or controller that goes and comes back
                from liveperf.io.port_watch import PortWatch
                watch = PortWatch(out_port, in_port, out_target=setlist.midi_out, in_target=setlist.midi_in,
                                  on_event=lambda text: show.log(f"ports: {text}")).start()
                out_port, in_port = watch.output, watch.input
        except (midi_ports.MidiUnavailable, LookupError, ValueError, RuntimeError) as exc:
            faulthandler.cancel_dump_traceback_later()
            print(f"liveperf: {exc}", file=sys.stderr)
            close = getattr(out_port, "close", None)
            if close:
                close()
            return 2
        faulthandler.cancel_dump_traceback_later()
        print(f"liveperf: {backend} ports open: {out_port.full_name}"
              + (f", {in_port.full_name}" if in_port else "") + " — connect your controller and synth to them",
              flush=True)
    try:
        report = show.run(indices, backend, out_port, in_port)
        # The report first: should closing the ports hang below, the show's figures are written already.
        _print_report(report)
        ports = dataclasses.asdict(watch.stats) if watch is not None else None
        if watch is not None and (ports["outages"] or ports["stalls"] or any(ports["peer_lost"].values())):
            print(f"ports: {ports['outages']} JACK outage(s), reconnected in {ports['reconnect_ms']} ms, "
                  f"{ports['dropped']} messages dropped while down, {ports['missed_offs_sent']} note-offs sent on "
                  f"reconnect")
        if args.report_json:
            try:
                args.report_json.parent.mkdir(parents=True, exist_ok=True)
                args.report_json.write_text(json.dumps(dataclasses.asdict(report) | {"ports": ports}, default=str))
            except OSError as exc:  # a full disk after the show: say so; the show itself went fine
                print(f"liveperf: could not write the report {args.report_json}: {exc}", file=sys.stderr)
        sys.stdout.flush()
    except ValueError as exc:
        print(f"liveperf: {exc}", file=sys.stderr)
        return 2
    finally:
        if backend == "jack-native" and watch is not None:
            watch.close()  # no reopening while the ports close
        close = getattr(out_port, "close", None)
        if close:
            # Every note is off already (the scheduler's close). Closing a JACK client can block for good (rtmidi's
            # jack_client_close once waited on a lock libjack's own thread held, after a server restart, holding
            # the GIL): as on a signal, faulthandler's C thread ends the process SHUTDOWN_LIMIT_S later, with every
            # thread's traceback on stderr, exit status 1, rather than leave a process nobody can end but kill -9.
            if not signalled:
                try:
                    faulthandler.dump_traceback_later(SHUTDOWN_LIMIT_S, exit=True, file=sys.__stderr__)
                except (OSError, ValueError, AttributeError):  # no real stderr (run in-process, captured)
                    pass
            close()
            if not signalled:
                faulthandler.cancel_dump_traceback_later()
    if report.stopped == "signal":
        return 130  # a signal (Ctrl-C, SIGTERM); an OSC /liveperf/stop or a stage-view stop ends it normally
    return 1 if any(s.error for s in report.songs) else 0


def file_mode_notice(input_path: Path | None, record_dir: Path) -> str:
    """What ``play`` with ``--backend auto`` does when it finds no MIDI system, in words a newcomer can act on."""
    performer = (f"{input_path} plays the performer's part of every song" if input_path is not None else
                 "each song's performer take (`take` in the setlist; the demo setlists use the shipped takes) "
                 "plays the performer's part")
    own = "" if input_path is not None else "To play your own MIDI file as the performer, add --input FILE.mid. "
    return (f"liveperf: playing in file mode instead: {performer} in real time, the partner answers, and both are "
            f"recorded to {record_dir}/. {own}To play live, start a MIDI system (see above) and run this again.")


def _open_native(args, setlist):
    """The jack-native backend's ports (one JACK client, frame-exact timing; ``liveperf.io.jack_native``)."""
    from liveperf.io.jack_native_ports import open_ports
    return open_ports(args.client_name, in_target=setlist.midi_in or None, out_target=setlist.midi_out or None,
                      inputs=args.input is None, timing=setlist.clock == "midi",
                      drop_late_ns=int(setlist.late_tolerance_ms * 1e6), reflex=not args.no_reflex)


def _print_report(report) -> None:
    from liveperf.show.report import send_summary

    print(f"\n{'song':<28} {'BPM':>6} {'steps':>6} {'notes in':>9} {'answers':>8} {'phrases':>8} {'harmonies':>9} "
          f"{'partner tok':>12} {'errors':>7}")
    for s in report.songs:
        print(f"{s.title[:28]:<28} {s.tempo_bpm:>6g} {s.steps:>6} {s.performer_notes:>9} {s.responses:>8} "
              f"{s.phrases:>8} {s.harmonies:>9} {s.partner_tokens:>12} {s.model_errors + (1 if s.error else 0):>7}"
              + (f"  mode switches {s.switches}" if s.switches else "")
              + (f"  comp: {s.comp_chords} chords" if s.comp_chords else "")
              + (f"  {s.plans_late} answer(s) drawn step by step: their plan was late" if s.plans_late else "")
              + (f"  {s.phrases_late} phrase(s) made late, played from where they came in" if s.phrases_late
                 else "")
              + (f"  copy guard: {s.copies_redrawn} redrawn, {s.copies_cut} cut" if s.copies_redrawn or s.copies_cut
                 else "")
              + (f"  key followed: {s.key_changes} change(s), ended in {s.last_key}" if s.last_key else ""))
    print(f"\n{send_summary(report)}")
    parts = ([f"{report.reflex_sent} harmonies the port sent in the note-on's own JACK cycle (reflex)"]
             if report.reflex_sent else []) + ([f"{report.wire_offs} note-offs sent at the end for notes still "
                                                 f"sounding on the wire"] if report.wire_offs else [])
    if parts:
        print("of those, " + "; ".join(parts))
    if report.osc_in:
        o = report.osc_in
        errors = ", ".join(f"{k} {v}" for k, v in sorted(o["errors_by_kind"].items())) or "none"
        print(f"OSC in: {o['received']} packets, {o['accepted']} accepted; errors: {errors}; "
              f"{o['rejected_sources']} from sources not allowed, {o['rate_limited']} over the rate limit, "
              f"{o['replies_failed']} replies not sent; TCP: {o['tcp_evicted']} idle connections replaced, "
              f"{o['tcp_idle_closed']} closed idle")
    if report.osc_feedback:
        f = report.osc_feedback
        print(f"OSC feedback out: {f['sent']} sent, {f['dropped']} dropped, {f['errors']} errors")
    if report.clock_out:
        c = report.clock_out
        print(f"MIDI clock out: {c['ticks_sent']} ticks sent of {c['ticks_expected']} for the songs' length, "
              f"{c['starts']} Start, {c['stops']} Stop")
    if report.link:
        k = report.link
        print(f"Link: {k['peers']} other peer{'' if k['peers'] == 1 else 's'} at the end (most {k['peers_max']}), "
              f"{k['tempo_changes']} tempo changes, "
              f"{k['starts']} starts, {k['stops']} stops, {k['locates']} timeline jumps followed")
    elif report.link is None:
        print("Link: not started (see the warning above); the show played on its internal clock")
    if report.record_files:
        print(f"recorded {len(report.record_files)} song(s) to {report.record_files[0].parent}/"
              + (f" ({report.record_errors} write errors)" if report.record_errors else ""))
    if report.record_path:
        print(f"recorded to {report.record_path}")
    for path in report.record_fallback_files:
        print(f"recorded to {path} instead (the recording folder could not take it)")


def _check(args) -> int:
    from liveperf.check import format_table, run_check

    reports = []
    for path in args.setlist:
        t0, last = time.monotonic(), [time.monotonic()]

        def progress(done: int, total: int) -> None:  # a long setlist says how far it is, every 2 s
            if time.monotonic() - last[0] >= 2.0:
                last[0] = time.monotonic()
                print(f"liveperf check {path}: {done} of {total} songs checked ({last[0] - t0:.0f} s)",
                      file=sys.stderr, flush=True)

        report = run_check(path, steps=max(100, args.steps), require_midi=args.require_midi,
                           midi=not args.no_midi, provider=args.provider, on_progress=progress)
        print(format_table(report), flush=True)
        reports.append(report)
    if len(reports) > 1:
        print(f"\n{'GO' if all(r.go for r in reports) else 'NO-GO'}: "
              + ", ".join(f"{r.setlist} {'GO' if r.go else 'NO-GO'}" for r in reports))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        doc = reports[0].to_json() if len(reports) == 1 else [r.to_json() for r in reports]
        args.json.write_text(json.dumps(doc, indent=2))
    return 0 if all(r.go for r in reports) else 1


def _ports(args) -> int:
    from liveperf.io import midi_ports

    try:
        backend = midi_ports.detect_backend(args.backend)
    except midi_ports.MidiUnavailable as exc:
        print(f"liveperf: {exc}", file=sys.stderr)
        return 2
    ports = midi_ports.list_ports(backend)
    print(f"MIDI system: {backend}")
    for kind in ("inputs", "outputs"):
        print(f"{kind}:")
        for name in ports.get(kind, []):
            print(f"  {name}")
        if not ports.get(kind):
            print("  (none)")
    return 0


def _headline(info) -> str:
    """One line of the model's own held-out figures from its metadata (each family reports different ones)."""
    m = info.metrics if isinstance(info.metrics, dict) else {}
    test = m.get("test") if isinstance(m.get("test"), dict) else {}
    own = test.get(info.name) if isinstance(test.get(info.name), dict) else None
    if own:  # step models: NLL and accuracy against their baselines
        return f"test NLL {own['nll']:.3f}, acc {own['acc']:.3f}"
    if "recon_acc_argmax_from_mu" in test:
        return f"test recon acc {test['recon_acc_argmax_from_mu']:.3f}, active units {test['active_units']}"
    samples = m.get("samples", {}).get("gan_argmax") if isinstance(m.get("samples"), dict) else None
    if samples:
        return f"in-scale {samples['in_scale_rate']:.3f}, distinct {samples['distinct_rate']:.3f} of 1000 samples"
    return "test: n/a"


def _models(args) -> int:
    names = shipped_model_names()
    if not names:
        print(f"no models in {shipped_models_dir()}")
        return 1
    rows = []
    for name in names:
        m = load_model(shipped_models_dir() / f"{name}.onnx")
        rows.append(m)
        if args.json:
            continue
        size_kb = m.path.stat().st_size / 1024
        print(f"{name:<22} {m.info.family:<14} {size_kb:6.0f} KB  {_headline(m.info)}")
    if args.json:
        print(json.dumps({m.info.name: {"family": m.info.family, "steps_per_beat": m.info.steps_per_beat,
                                        "inputs": m.info.inputs, "outputs": m.info.outputs,
                                        "state_shape": m.info.state_shape, "training_data": m.info.training_data,
                                        "split": m.info.split, "metrics": m.info.metrics,
                                        "training": m.info.training} for m in rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
