"""The pre-gig check: is tonight's setlist playable on tonight's machine? GO or NO-GO, with numbers.

For a setlist it: validates the file; loads every model of every song (a bad model in song 5 is found now, not at
song 5) and every performer take; warms onnxruntime and the numba sampler; measures per song the *step latency*
(model step + sampling, as the engine does it, over ``steps`` steps after ``warmup``) against two budgets:
- the **stage budget**: the setlist's ``lookahead_ms`` — a step is computed that long before it is due, so its p99
  must fit in it, or notes would be dropped as late;
- the **song budget**: the step's duration at the song's tempo minus a safety margin — even the slowest step (max)
  must fit, or the engine would fall behind the grid.
It also checks that the MIDI system opens virtual ports (a missing MIDI system is NO-GO only with
``require_midi``). Runs in the caller's thread; the result is plain data (``CheckReport``) for the table and JSON.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from liveperf import melody
from liveperf.io.midi_file import MidiFileError
from liveperf.models.onnx_model import ModelLoadError, load_model, resolve_model_path
from liveperf.models.step_model import OnnxStepper, StepError
from liveperf.modes.call_response import settings_for
from liveperf.sampler import new_rng_state, sample
from liveperf.setlist import SetlistError, load_setlist

SONG_BUDGET_MARGIN = 0.5  # use at most half of a step: the rest is for the scheduler, input and the OS


@dataclass
class SongCheck:
    number: int
    title: str
    tempo_bpm: float
    model: str
    step_us: dict = field(default_factory=dict)  # p50 / p99 / max
    song_budget_us: float = 0.0
    stage_budget_us: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def go(self) -> bool:
        return not self.problems


@dataclass
class CheckReport:
    setlist: str
    songs: list[SongCheck] = field(default_factory=list)
    midi: str = ""
    problems: list[str] = field(default_factory=list)  # not tied to one song
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def go(self) -> bool:
        return not self.problems and all(s.go for s in self.songs)

    def to_json(self) -> dict:
        return {
            "setlist": self.setlist,
            "verdict": "GO" if self.go else "NO-GO",
            "songs": [{**asdict(s), "verdict": "GO" if s.go else "NO-GO"} for s in self.songs],
            "midi": self.midi,
            "problems": self.problems,
            "warnings": self.warnings,
            "seconds": round(self.seconds, 3),
        }


def _percentiles_us(ns: list[int]) -> dict:
    a = np.asarray(ns, dtype=np.float64) / 1e3
    return {"p50": round(float(np.median(a)), 1), "p99": round(float(np.percentile(a, 99)), 1),
            "max": round(float(a.max()), 1), "n": int(a.size)}


def measure_song(stepper: OnnxStepper, song, steps: int, warmup: int) -> dict:
    """Step latency of ``song``'s model + sampler, fed its own samples as in an answer (ns per step)."""
    s = settings_for(song, stepper.steps_per_beat)
    rng = new_rng_state(song.seed)
    token, times = melody.on(sum(song.pitch_range) // 2), []
    stepper.reset()
    for i in range(warmup + steps):
        t0 = time.perf_counter_ns()
        logits = stepper.feed(token, i % stepper.steps_per_beat)
        token = int(sample(logits, s.allowed, s.temperature, s.top_k, s.top_p, rng, melody.HOLD))
        t1 = time.perf_counter_ns()
        if i >= warmup:
            times.append(t1 - t0)
        if i % (4 * s.response_steps) == 0:
            stepper.reset()  # phrases restart, as in a show
    return _percentiles_us(times)


def check_midi(require: bool) -> tuple[str, list[str], list[str]]:
    """(description, problems, warnings) for the MIDI system: can we open our virtual ports?"""
    from liveperf.io import midi_ports

    try:
        backend = midi_ports.detect_backend("auto")
    except midi_ports.MidiUnavailable as exc:
        msg = f"no MIDI system: {exc}"
        return "none (file mode only)", ([msg] if require else []), ([] if require else [msg])
    try:
        out = midi_ports.MidiOutPort.open_virtual("liveperf-check-out", "out", backend)
        inp = midi_ports.MidiInPort.open_virtual("liveperf-check-in", "in", backend)
        names = f"{out.full_name}, {inp.full_name}"
        out.close()
        inp.close()
    except Exception as exc:  # any failure to open a port is a finding to report, not a crash of the check
        return backend, [f"{backend}: cannot open virtual ports ({type(exc).__name__}: {exc})"], []
    return f"{backend}: opened {names}", [], []


def run_check(path: str | Path, *, steps: int = 2000, warmup: int = 300, require_midi: bool = False,
              midi: bool = True, provider: str = "cpu") -> CheckReport:
    t_start = time.perf_counter()
    report = CheckReport(setlist=str(path))
    try:
        setlist = load_setlist(path)
    except SetlistError as exc:
        report.problems.append(str(exc))
        report.seconds = time.perf_counter() - t_start
        return report
    from liveperf.show import ShowOptions, song_take

    models = {}
    for i, song in enumerate(setlist.songs):
        sc = SongCheck(i + 1, song.title, song.tempo_bpm, song.model)
        report.songs.append(sc)
        model_path = resolve_model_path(song.model, setlist.path.parent)
        try:
            if model_path not in models:
                models[model_path] = load_model(model_path, provider)
            stepper = OnnxStepper(models[model_path])
        except ModelLoadError as exc:
            sc.problems.append(f"model: {exc}")
            continue
        try:
            song_take(setlist, song, ShowOptions())
        except MidiFileError as exc:
            sc.problems.append(f"take: {exc}")
        step_ns = 60e9 / (song.tempo_bpm * stepper.steps_per_beat)
        sc.song_budget_us = round(step_ns * SONG_BUDGET_MARGIN / 1e3, 1)
        sc.stage_budget_us = round(setlist.lookahead_ms * 1e3, 1)
        try:
            sc.step_us = measure_song(stepper, song, steps, warmup)
        except StepError as exc:
            sc.problems.append(f"model step failed: {exc}")
            continue
        if sc.step_us["p99"] > sc.stage_budget_us:
            sc.problems.append(f"step p99 {sc.step_us['p99']:.0f} µs > stage budget {sc.stage_budget_us:.0f} µs "
                               f"(lookahead_ms): notes would be dropped as late")
        if sc.step_us["max"] > sc.song_budget_us:
            sc.problems.append(f"slowest step {sc.step_us['max']:.0f} µs > song budget {sc.song_budget_us:.0f} µs "
                               f"(half a step at {song.tempo_bpm:g} BPM)")
    if midi:
        report.midi, problems, warnings = check_midi(require_midi)
        report.problems += problems
        report.warnings += warnings
    else:
        report.midi = "not checked"
    report.seconds = time.perf_counter() - t_start
    return report


def format_table(report: CheckReport) -> str:
    lines = [f"liveperf check: {report.setlist}", "",
             f"{'#':>2}  {'song':<26} {'BPM':>5}  {'step p50':>9} {'p99':>8} {'max':>8}  "
             f"{'stage':>7} {'song':>7}  verdict"]
    for s in report.songs:
        st = s.step_us
        nums = (f"{st['p50']:>7.0f}µs {st['p99']:>6.0f}µs {st['max']:>6.0f}µs" if st else f"{'—':>9} {'—':>8} {'—':>8}")
        lines.append(f"{s.number:>2}  {s.title[:26]:<26} {s.tempo_bpm:>5g}  {nums}  {s.stage_budget_us:>5.0f}µs "
                     f"{s.song_budget_us:>5.0f}µs  {'GO' if s.go else 'NO-GO'}")
        for p in s.problems:
            lines.append(f"      ! {p}")
    lines.append("")
    lines.append(f"MIDI: {report.midi}")
    for w in report.warnings:
        lines.append(f"warning: {w}")
    for p in report.problems:
        lines.append(f"! {p}")
    lines.append(f"\n{'GO' if report.go else 'NO-GO'}  ({report.seconds:.1f} s)")
    return "\n".join(lines)
