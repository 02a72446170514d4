"""What a show reports: per song and for the whole show (counters, timing, recording, control, OSC, input).
Plain data, filled by ``liveperf.show.run`` after each song and at the end; printed by the CLI and written as JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class SongReport:
    title: str
    # The tempo played (``ShowController.played_tempo_bpm``): the median of the clock's tempo at each beat, i.e. the
    # followed MIDI clock's when following, else the setlist's (or what taps and tempo changes made it); the
    # setlist's when no beat was played.
    tempo_bpm: float
    setlist_tempo_bpm: float = 0.0  # the song's ``tempo_bpm`` in the setlist
    steps: int = 0
    steps_per_beat: int = 4
    performer_notes: int = 0
    responses: int = 0
    plans_late: int = 0  # call and response: answers whose plan was not ready in time, drawn step by step instead
    interrupted: int = 0
    partner_tokens: int = 0
    phrases: int = 0
    phrases_late: int = 0  # phrase mode: phrases made too late for their first step, played from where they came in
    harmonies: int = 0
    reflex_answers: int = 0  # harmonies the jack-native port sent in the note-on's own cycle (liveperf.modes.reflex)
    comp_chords: int = 0  # chords the comp chose (``liveperf.modes.comp``)
    model_errors: int = 0
    copies_redrawn: int = 0  # phrases / answers (or answer tokens) drawn again by the copy guard
    copies_cut: int = 0  # ... cut short of a training passage after every redraw
    echoes: int = 0
    switches: list = field(default_factory=list)  # (step, mode) of each live mode switch
    clock: str = "internal"
    clock_stats: dict = field(default_factory=dict)  # the followed clock's counters (MIDI clock or Link)
    error: str = ""
    start_ns: int = 0  # monotonic ns of the song's step 0
    step_ns: float = 0.0  # one grid step in ns
    end_ns: int = 0  # where it ended: the bar line of a song change, or when it stopped
    next_song: int | None = None  # setlist index of the song that followed by a song change (None: in order/end)
    input_ignored: int = 0  # performer messages the engine did not use (wrong kind, channel, garbage)
    all_notes_off: int = 0
    chord_changes: int = 0  # how often the chord the performer holds changed (``liveperf.music.chords``)
    last_chord: str = ""
    key_changes: int = 0  # how often the partner's key moved with the performer (``liveperf.music.key_finder``)
    last_key: str = ""  # the key the song ended in, when it followed the performer
    swing: float = 0.5  # the partner's swing at the end (liveperf.music.feel)
    swing_heard: float | None = None  # the performer's, estimated from their eighth pairs (None: none heard)
    late_ms: float | None = None  # how far behind the beat the performer plays (negative: ahead)


@dataclass
class ShowReport:
    backend: str
    songs: list[SongReport] = field(default_factory=list)
    sent: int = 0
    late_dropped: int = 0
    send_errors: int = 0
    timing_us: dict = field(default_factory=dict)  # p50/p99/max of send time minus due time
    # the same, apart: messages scheduled ahead (grid notes, their note-offs, clock...) and reactions (due the moment
    # they were computed: a partner's answer to a note it heard; they go out in a following cycle by design)
    timing_ahead_us: dict = field(default_factory=dict)
    timing_reactions_us: dict = field(default_factory=dict)
    record_path: Path | None = None
    record_files: list[Path] = field(default_factory=list)
    record_errors: int = 0
    record_fallback_files: list[Path] = field(default_factory=list)  # written elsewhere at the end: disk full
    recovered: list[Path] = field(default_factory=list)
    stopped: str = "end"
    scheduling: str = ""
    errors_ns: list[int] = field(default_factory=list)  # send time minus due time of every message sent
    due_ns: list[int] = field(default_factory=list)  # the due time of each of those messages, in the same order
    late_due_ns: list[int] = field(default_factory=list)  # the due time of each message dropped as late
    reactions: list[int] = field(default_factory=list)  # 1 where that message sent was a reaction (same order)
    control: dict = field(default_factory=dict)  # show control counters (ShowController.stats)
    osc_ports: dict = field(default_factory=dict)  # bound OSC ports
    osc_in: dict = field(default_factory=dict)  # OSC input counters (OscServer.stats)
    osc_feedback: dict = field(default_factory=dict)
    osc_error: str = ""
    warnings: list[str] = field(default_factory=list)  # songs whose settings can never sound (setlist_warnings)
    input: dict = field(default_factory=dict)  # performer input: port counters and what the engines ignored
    unheld_offs: int = 0  # note-offs not sent: their note was not sounding (see timing.plan.TimingStats)
    cancelled: int = 0
    port_dropped: int = 0  # messages a port refused while JACK was down
    reflex_sent: int = 0  # notes the port sent itself (harmonize's reflex), adopted by the scheduler
    wire_offs: int = 0  # note-offs the scheduler's last net sent for notes the port still had sounding at the end
    port: dict = field(default_factory=dict)  # the output port's own counters (jack-native: its JACK thread's)
    # MIDI clock out (``[show] send_clock``): starts, stops, ticks scheduled / sent / what the songs' lengths call for
    clock_out: dict = field(default_factory=dict)
    # Ableton Link (``clock = "link"``): the clock's counters and the peers at the end; {} while it runs, None when
    # Link was asked for but could not start (the show played on its internal clock)
    link: dict | None = field(default_factory=dict)


def timing_figures(errors_ns) -> dict:
    """p50 / p99 / max in µs and the count ``n`` of send - due errors (ns); {} for none."""
    errs = np.asarray(errors_ns, dtype=np.int64)
    if not errs.size:
        return {}
    return {"p50": float(np.percentile(errs, 50) / 1e3), "p99": float(np.percentile(errs, 99) / 1e3),
            "max": float(errs.max() / 1e3), "n": int(errs.size)}


def add_timing(report: ShowReport, errors_ns, dues_ns, reactions, late_dues_ns) -> None:
    """The scheduler's timing records (``TimingStats``) into the report: pooled and split by kind."""
    report.errors_ns, report.due_ns = list(errors_ns), list(dues_ns)
    report.reactions, report.late_due_ns = [int(r) for r in reactions], list(late_dues_ns)
    report.timing_us = timing_figures(report.errors_ns)
    flags = np.asarray(report.reactions, dtype=bool)
    errs = np.asarray(report.errors_ns, dtype=np.int64)
    if flags.size == errs.size and flags.any():
        report.timing_ahead_us = timing_figures(errs[~flags])
        report.timing_reactions_us = timing_figures(errs[flags])


def _figures(t: dict) -> str:
    return f"p50 {t['p50']:.0f} µs, p99 {t['p99']:.0f} µs, max {t['max']:.0f} µs"


def send_summary(report: ShowReport) -> str:
    """The report's line about sending, the same for every backend: how many messages went out, how many were
    dropped as late or failed, and the timing error (send time minus due time) of those whose send time is known.

    ``report.sent`` counts what really went out: on rtmidi every message the port took; on jack-native what its
    JACK thread reported sent (its own late drops and revoked notes are not in it) plus the harmonies the port sent
    itself in the note-on's cycle (``reflex_sent``), which were never scheduled and so have no due time. The timing
    covers ``timing_us['n']`` messages: all of them on rtmidi, all but the reflex harmonies on jack-native (measured
    on JACK's frame clock there). Where some were reactions, the line gives the two kinds apart too: a reaction is
    due when it is computed, so it goes out a little after (up to ``scheduler.REACTION_LATE_NS``) by design, while
    a note scheduled ahead should go out on its due time."""
    counts = f"{report.late_dropped} dropped as late, {report.send_errors} send errors"
    if report.sent == 0:
        return f"no messages sent, {counts}"
    head = f"{report.sent} messages sent, {counts}"
    t = report.timing_us
    n = t.get("n", 0) if t else 0
    if n == 0:
        why = ("every one was a harmony the port sent in the note-on's own JACK cycle (reflex), which has no due "
               "time" if report.reflex_sent == report.sent else "no send times were recorded")
        return f"{head}; no timing figures: {why}"
    on = " on JACK's frame clock" if report.backend == "jack-native" else ""
    of = f"{n} messages" if n == report.sent else f"{n} of them"
    untimed = (f" (the other {report.sent - n} are reflex harmonies, with no due time)"
               if n < report.sent and report.reflex_sent == report.sent - n else "")
    line = f"{head}; timing error (send - due{on}) {_figures(t)} over {of}{untimed}"
    ahead, react = report.timing_ahead_us, report.timing_reactions_us
    if ahead and react:
        line += (f"; of these, {ahead['n']} scheduled ahead: {_figures(ahead)}; {react['n']} reactions (due when "
                 f"computed, so sent a little after): {_figures(react)}")
    return line


def add_engine_figures(rep: SongReport, engine, end_step: int) -> None:
    """A played song's counters from its engine (engine thread done): input, chords, key, feel, mode switches (a
    band's partners' as ``(step, "p2 comp")``) and every mode's counters."""
    rep.performer_notes = engine.input_stats.note_ons
    rep.echoes = engine.input_stats.echoes
    rep.input_ignored = engine.input_stats.ignored
    rep.all_notes_off = engine.input_stats.all_notes_off
    rep.chord_changes = engine.chords.changes
    rep.key_changes = len(engine.key_changes)
    key = engine.key_at(end_step)
    rep.last_key = str(key[0]) if key is not None and key[0] is not None else ""
    feel = next((m.feel for m in engine.modes.values() if getattr(m, "feel", None) is not None), None)
    if feel is not None:
        est = feel.estimator
        rep.swing = round(feel.swing, 3)
        rep.swing_heard = round(est.swing, 3) if est.confident else None
        rep.late_ms = round(est.offset_ns / 1e6, 1) if est.confident else None
    rep.last_chord = engine.chords.current.name if engine.chords.current is not None else ""
    rep.switches = list(engine.switches)
    for k, part in enumerate(getattr(engine.mode, "parts", ()), start=1):
        rep.switches += [(step, f"p{k} {name}") for step, name in part.switches]
    for mode in engine.modes.values():
        rep.responses += mode.stats.responses
        rep.plans_late += mode.stats.plans_late
        rep.interrupted += mode.stats.interrupted
        rep.partner_tokens += mode.stats.tokens
        rep.phrases += mode.stats.phrases
        rep.phrases_late += mode.stats.phrases_late
        rep.harmonies += mode.stats.harmonies
        rep.reflex_answers += getattr(mode, "reflex_answers", 0)
        rep.comp_chords += getattr(mode, "chords", 0)
        rep.model_errors += mode.stats.model_errors
        rep.copies_redrawn += mode.stats.copies_redrawn
        rep.copies_cut += mode.stats.copies_cut
