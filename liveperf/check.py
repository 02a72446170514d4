"""The pre-gig check: is tonight's setlist playable on tonight's machine? GO or NO-GO, with numbers.

For a setlist it: validates the file; loads every model of every song (a bad model in song 5 is found now, not at
song 5) and every performer take; warms onnxruntime and the numba sampler; measures per song the *step latency*
(model step + sampling, as the engine does it, over ``steps`` steps after ``warmup``) against two budgets:
- the **stage budget**: the setlist's ``lookahead_ms`` — a step is computed that long before it is due, so its p99
  must fit in it, or notes would be dropped as late;
- the **song budget**: the step's duration at the song's tempo minus a safety margin — even the slowest step (max)
  must fit, or the engine would fall behind the grid.
The unit of work timed is the one of the song's mode: call-and-response times the melody DNN's step + sampling;
duet the duet DNN's step + sampling; harmonize one reaction (the duet model's peek + consonance-masked sampling);
phrase one whole 2-bar phrase (GAN best of K ranked by the critic, or VAE decode + sampling), the slowest thing
the engine does in one step; comp one step of the comp (its model step, the voicing chooser on a move step, the
three voices' notes). Every model the song can switch to live is loaded and checked too.
It also checks that the MIDI system opens virtual ports (a missing MIDI system is NO-GO only with
``require_midi``) and that the OSC server can listen where the setlist says (NO-GO: the desk could not reach us);
a setlist with ``clock = "link"`` is NO-GO without aalink (the ``link`` extra): it could not join the session.
Settings that can never sound (a key and pitch range with no pitch in common, density 0) are warned about per song
(``liveperf.setlist.lint``); they do not make a NO-GO.
Runs in the caller's thread; the result is plain data (``CheckReport``) for the table and JSON.
"""

from __future__ import annotations

import json
from importlib.util import find_spec
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from liveperf.music import melody
from liveperf.io.link_session import INSTALL_HINT
from liveperf.io.midi_file import MidiFileError
from liveperf.models.metadata import ModelMetadataError
from liveperf.models.onnx_model import ModelLoadError
from liveperf.models.phrase_models import DuetStepper, GanModel
from liveperf.models.step_model import OnnxStepper, StepError
from liveperf.modes.call_response import plan_job, plan_wait_steps
from liveperf.check_ports import check_midi, check_osc
from liveperf.check_units import comp_stepper, measure_band, measure_copy_guard
from liveperf.music.copy_guard import CopyIndexError
from liveperf.modes.build import SongModels, duet_anticipation, key_follower
from liveperf.modes.harmonize import harmony_mask
from liveperf.modes.note_choice import NoteChoice
from liveperf.modes.phrase import GanPhrases, VaePhrases
from liveperf.modes.settings import settings_for
from liveperf.music.sampler import NO_CANDIDATE, new_rng_state, sample
from liveperf.setlist.schema import SetlistError, load_setlist
from liveperf.setlist.lint import song_warnings

SONG_BUDGET_MARGIN = 0.5  # use at most half of a step: the rest is for the scheduler, input and the OS


@dataclass
class SongCheck:
    number: int
    title: str
    tempo_bpm: float
    model: str
    mode: str = ""
    unit: str = ""  # what one timed call is (the mode's unit of work)
    step_us: dict = field(default_factory=dict)  # p50 / p99 / max
    song_budget_us: float = 0.0
    stage_budget_us: float = 0.0
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # settings that make the song silent; not a NO-GO
    plan_us: dict | None = None  # call and response: planning one whole answer (all candidates), µs
    plan_budget_us: float = 0.0
    key_us: dict | None = None  # key = "auto" / key_follow: the key finder's cost per step (bar lines included), µs

    @property
    def go(self) -> bool:
        return not self.problems


@dataclass
class CheckReport:
    setlist: str
    songs: list[SongCheck] = field(default_factory=list)
    midi: str = ""
    osc: str = ""
    problems: list[str] = field(default_factory=list)  # not tied to one song
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    copy_guard_us: dict = field(default_factory=dict)  # the copy guard: a phrase's check and a step's, µs

    @property
    def go(self) -> bool:
        return not self.problems and all(s.go for s in self.songs)

    def to_json(self) -> dict:
        return {
            "setlist": self.setlist,
            "verdict": "GO" if self.go else "NO-GO",
            "songs": [{**asdict(s), "verdict": "GO" if s.go else "NO-GO"} for s in self.songs],
            "midi": self.midi,
            "osc": self.osc,
            "problems": self.problems,
            "warnings": self.warnings,
            "copy_guard_us": self.copy_guard_us,
            "seconds": round(self.seconds, 3),
        }


def _percentiles_us(ns: list[int]) -> dict:
    a = np.asarray(ns, dtype=np.float64) / 1e3
    return {"p50": round(float(np.median(a)), 1), "p99": round(float(np.percentile(a, 99)), 1),
            "max": round(float(a.max()), 1), "n": int(a.size)}


def measure_song(stepper: OnnxStepper, song, steps: int, warmup: int) -> dict:
    """Step latency of ``song``'s model + sampler, fed its own samples as in an answer (ns per step)."""
    s = settings_for(song, stepper.steps_per_beat)
    rng, choice = new_rng_state(song.seed), NoteChoice()
    token, times = melody.on(sum(song.pitch_range) // 2), []
    stepper.reset()
    for i in range(warmup + steps):
        t0 = time.perf_counter_ns()
        logits = stepper.feed(token, i)
        token = choice.choose(logits, s.allowed, s, rng, melody.HOLD)
        t1 = time.perf_counter_ns()
        if i >= warmup:
            times.append(t1 - t0)
        if i % (4 * s.response_steps) == 0:
            stepper.reset()  # phrases restart, as in a show
    return _percentiles_us(times)


def measure_plan(models: SongModels, song, n: int = 30, warmup: int = 3) -> dict | None:
    """Time planning a whole answer (``answer_plan``, every candidate) after a 2-bar call, as call and response
    does in the silence after a phrase; None when the song does not plan."""
    s = settings_for(song, models.steps_per_beat)
    if s.answer_candidates <= 0:
        return None
    stepper = OnnxStepper(models.melody, song.meter)
    notes = [melody.on(p) for p in range(song.pitch_range[0], song.pitch_range[1] + 1) if song.key.contains(p)]
    call = np.array([notes[(k // 2) % len(notes)] if k % 2 == 0 else melody.HOLD for k in range(2 * s.steps_per_bar)],
                    dtype=np.int64)
    left = s.silence_steps - plan_wait_steps(s.silence_steps)  # silent steps still to feed when the plan starts

    def plan(i: int) -> None:
        stepper.reset()
        logits = None
        for k, tok in enumerate(call):
            logits = stepper.feed(int(tok), k)
        lead = [(melody.HOLD, t) for t in range(len(call), len(call) + left)]
        plan_job(stepper.fork(s.answer_candidates), logits, lead, len(call) + left, s, call, 0,
                 models.steps_per_beat, None, song.seed + i)  # the planner thread's job, timed on this one

    return _timed(plan, n, warmup)


def probe_song(models: SongModels, song) -> str | None:
    """A few steps of every model ``song`` can play (any mode can be switched to live), of every partner: the melody
    model, the duet model (with its anticipation), the comp and the phrase model, fed as ``check`` feeds them. None, or why one fails: a model
    whose metadata is right but whose output is NaN or mis-shaped loads fine, and would leave the song silent."""
    try:
        measure_song(OnnxStepper(models.melody, song.meter), song, 8, 0)
        measure_mode(models, replace(song, mode="duet"), 8, 0)
        measure_mode(models, replace(song, mode="comp"), 8, 0)  # also compiles the voicing chooser before the show
        s = settings_for(song, models.steps_per_beat)
        source = GanPhrases(models.phrase) if isinstance(models.phrase, GanModel) else VaePhrases(models.phrase)
        history = np.full(source.phrase_steps, melody.on(sum(song.pitch_range) // 2), dtype=np.int64)
        source.next_phrase(s, history, new_rng_state(song.seed))
    except (StepError, ValueError) as exc:  # a phrase model's non-finite output is a ValueError (as PhraseMode's)
        return f"a model fails a probe step: {exc}"
    for k, (pm, partner) in enumerate(zip(models.partners, song.partners), start=2):
        why = probe_song(pm, partner)
        if why is not None:
            return f"partner {k}: {why}"
    return None


def _timed(fn, n: int, warmup: int) -> dict:
    times = []
    for i in range(warmup + n):
        t0 = time.perf_counter_ns()
        fn(i)
        t1 = time.perf_counter_ns()
        if i >= warmup:
            times.append(t1 - t0)
    return _percentiles_us(times)


def measure_mode(models: SongModels, song, steps: int, warmup: int) -> tuple[str, dict]:
    """(unit, p50/p99/max in µs) of the unit of work of ``song``'s mode (module docstring)."""
    if song.mode == "call_response":
        return "melody DNN step + sampling", measure_song(OnnxStepper(models.melody, song.meter), song, steps, warmup)
    s = settings_for(song, models.steps_per_beat)
    rng = new_rng_state(song.seed)
    spb = models.steps_per_beat
    performer = [melody.on(p) for p in range(song.pitch_range[0], song.pitch_range[1] + 1) if song.key.contains(p)]
    if song.mode == "comp":
        return "model step + voicing + 3 voices", _timed(comp_stepper(models, song, s, rng, performer),
                                                                steps, warmup)
    if song.mode in ("duet", "harmonize"):
        stepper = DuetStepper(models.duet, meter=song.meter)
        prev, choice = [melody.HOLD], NoteChoice()
        anticipation = duet_anticipation(models, song, s)

        line = [performer[(k // 4) % len(performer)] if k % 4 == 0 else melody.HOLD for k in range(64)]
        voice = {"before": melody.HOLD, "held": None}

        def duet_step(i: int) -> None:
            if anticipation is not None:  # as Duet.on_step: hear step i - 1, then the partner's logits for i
                if i:
                    anticipation.hear(line[(i - 1) % 64], voice["before"], i - 1, prev[0])
                logits = anticipation.partner_logits(prev[0], i, voice["held"])
            else:
                logits = stepper.feed(performer[i % len(performer)], prev[0], s.voice, i)
            token = choice.choose(logits, s.allowed, s, rng, melody.HOLD)
            voice["before"], prev[0] = prev[0], token
            if melody.is_on(token):
                voice["held"] = melody.pitch_of(token)
            elif token == melody.OFF:
                voice["held"] = None

        def reaction(i: int) -> None:
            tok = performer[i % len(performer)]
            logits = stepper.peek(tok, prev[0], s.voice, i % spb)
            sample(logits, harmony_mask(s.allowed, melody.pitch_of(tok)), s.temperature, s.top_k, s.top_p, rng,
                   NO_CANDIDATE)
            if i % spb == 0:
                stepper.feed(tok, prev[0], s.voice, i % spb)  # the grid moves on between note-ons

        if song.mode == "duet":
            unit = ("duet: anticipation, one fused model call (predictor step, duet step, peek) + sampling"
                    if anticipation.fused is not None else
                    "duet: anticipation (melody step, batched duet peek) + sampling") if anticipation else \
                "duet DNN step + sampling"
            return unit, _timed(duet_step, steps, warmup)
        return "harmonize reaction (duet peek + masked sampling)", _timed(reaction, steps, warmup)
    source = GanPhrases(models.phrase) if isinstance(models.phrase, GanModel) else VaePhrases(models.phrase)
    history = np.array([performer[(k // 2) % len(performer)] if k % 2 == 0 else melody.HOLD
                        for k in range(source.phrase_steps)], dtype=np.int64)
    unit = (f"GAN phrase: best of {s.candidates} by the critic" if isinstance(source, GanPhrases) else
            f"VAE phrase ({song.latent}): decode + sampling")
    n = max(50, steps // 10)  # a phrase every few bars: fewer, longer calls
    return unit, _timed(lambda i: source.next_phrase(s, history, rng), n, max(5, warmup // 20))


def measure_key_finder(song, steps_per_beat: int, steps: int, warmup: int) -> dict | None:
    """p50/p99/max µs of the key finder's work per step for a song that follows the key (None otherwise): the
    fade and count every step, the follower's question at every bar line, a performer's scale in 8th notes."""
    bar = song.steps_per_bar(steps_per_beat)
    keys = key_follower(song, bar, steps_per_beat)
    if keys is None:
        return None
    scale = [60 + i for i in range(12) if song.key.contains(60 + i)] or [60]

    def step(i: int) -> None:
        keys.finder.on_step(i)
        if i % bar == 0:
            keys.ask(i)
        if i % 2 == 0:
            keys.finder.release_all(i)
            keys.finder.note_on(scale[(i // 2) % len(scale)], i)

    return _timed(step, steps, warmup)


def _measure_key(song) -> str:
    """What a song's measured step cost depends on: everything but its title, tempo, take, channel and the like
    (the budgets, which do depend on the tempo, are per song)."""
    fields = asdict(song)
    for name in ("title", "tempo_bpm", "take", "channel", "program", "bank", "select_program", "select_bank",
                 "seed"):
        fields.pop(name, None)
    return json.dumps(fields, sort_keys=True, default=str)


def run_check(path: str | Path, *, steps: int = 2000, warmup: int = 300, require_midi: bool = False,
              midi: bool = True, provider: str = "cpu",
              on_progress: Callable[[int, int], None] | None = None) -> CheckReport:
    """``on_progress(songs done, songs)`` after each song (a long setlist says how far it is). Songs that differ
    only in title, tempo, take, channel and such are measured once (the figures are marked as shared)."""
    t_start = time.perf_counter()
    report = CheckReport(setlist=str(path))
    try:
        setlist = load_setlist(path)
    except SetlistError as exc:
        report.problems.append(str(exc))
        report.seconds = time.perf_counter() - t_start
        return report
    from liveperf.show.load import song_take

    cache: dict = {}
    measured: dict[str, tuple] = {}  # _measure_key -> (song number, unit, step_us, plan_us)
    for i, song in enumerate(setlist.songs):
        if on_progress is not None and i:
            on_progress(i, len(setlist.songs))
        sc = SongCheck(i + 1, song.title, song.tempo_bpm, song.model, mode="band" if song.partners else song.mode)
        sc.warnings = song_warnings(song, i, setlist.path)
        report.songs.append(sc)
        try:  # every model the song can switch to live: melody, duet and its phrase pair
            models = SongModels.load(song, setlist.path.parent, provider, cache)
        except (ModelLoadError, ModelMetadataError, StepError) as exc:
            sc.problems.append(f"model: {exc}")
            continue
        try:
            song_take(setlist, song)
        except MidiFileError as exc:
            sc.problems.append(f"take: {exc}")
        step_ns = 60e9 / (song.tempo_bpm * models.steps_per_beat)
        sc.song_budget_us = round(step_ns * SONG_BUDGET_MARGIN / 1e3, 1)
        sc.stage_budget_us = round(setlist.lookahead_ms * 1e3, 1)
        key = _measure_key(song)
        same = measured.get(key)
        if same is not None:
            sc.unit, sc.step_us = f"{same[1]} (as song {same[0]}: same models and settings)", same[2]
        else:
            try:
                sc.unit, sc.step_us = (measure_band if song.partners else measure_mode)(models, song, steps, warmup)
            except StepError as exc:
                sc.problems.append(f"model step failed: {exc}")
                continue
            measured[key] = (i + 1, sc.unit, sc.step_us, None)
        if sc.step_us["p99"] > sc.stage_budget_us:
            sc.problems.append(f"{sc.unit}: p99 {sc.step_us['p99']:.0f} µs > stage budget {sc.stage_budget_us:.0f} "
                               f"µs (lookahead_ms): notes would be dropped as late")
        if sc.step_us["max"] > sc.song_budget_us:
            sc.problems.append(f"{sc.unit}: slowest {sc.step_us['max']:.0f} µs > song budget "
                               f"{sc.song_budget_us:.0f} µs (half a step at {song.tempo_bpm:g} BPM)")
        sc.key_us = measure_key_finder(song, models.steps_per_beat, steps, warmup)
        lead = next(((p, pm) for p, pm in zip((song,) + song.partners, [models] + models.partners)
                     if p.mode == "call_response"), None)  # a band's first call-and-response partner
        if lead is not None:
            lead_song, lead_models = lead
            try:
                sc.plan_us = same[3] if same is not None else measure_plan(lead_models, lead_song)
            except StepError as exc:
                sc.problems.append(f"answer planning failed: {exc}")
                continue
            # The plan is made on the planner's thread in the silence before the answer (submitted plan_wait_steps
            # into it); it must take less than half the time left, so that a busy core still has it in time.
            left = lead_song.silence_steps - plan_wait_steps(lead_song.silence_steps)
            budget = step_ns * max(left, 0) / 2 / 1e3
            sc.plan_budget_us = round(budget, 1)
            if same is None:
                measured[key] = measured[key][:3] + (sc.plan_us,)
            if sc.plan_us is not None and sc.plan_us["p99"] > budget:
                sc.problems.append(f"answer planning ({lead_song.answer_candidates} candidates): p99 "
                                   f"{sc.plan_us['p99']:.0f} µs > {budget:.0f} µs (half the silence before the "
                                   f"answer): lower answer_candidates")
    if setlist.max_copy_bars:
        try:
            report.copy_guard_us = measure_copy_guard(setlist.max_copy_bars)
        except CopyIndexError as exc:
            report.problems.append(f"copy guard: {exc}")
    report.osc, problems = check_osc(setlist.osc)
    report.problems += problems
    if setlist.clock == "link" and find_spec("aalink") is None:  # the show would play on its own clock instead
        report.problems.append(f"{INSTALL_HINT}; without it the show cannot join the Link session")
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
        if s.unit:
            lines.append(f"      {s.mode}: {s.unit}")
        if s.plan_us:
            p = s.plan_us
            lines.append(f"      answer planning: p50 {p['p50'] / 1e3:.2f} ms, p99 {p['p99'] / 1e3:.2f} ms, max "
                         f"{p['max'] / 1e3:.2f} ms (budget {s.plan_budget_us / 1e3:.1f} ms)")
        if s.key_us:
            k = s.key_us
            lines.append(f"      key finder (key follows the performer): p50 {k['p50']:.0f} µs, p99 {k['p99']:.0f} µs, "
                         f"max {k['max']:.0f} µs per step")
        for p in s.problems:
            lines.append(f"      ! {p}")
        for w in s.warnings:
            lines.append(f"      warning: {w}")
    lines.append("")
    if report.copy_guard_us:
        g = report.copy_guard_us
        lines.append(f"Copy guard ({g['window_steps']}-step passages): a phrase p50 {g['phrase']['p50']:.0f} µs, p99 "
                     f"{g['phrase']['p99']:.0f} µs; an answer step p50 {g['step']['p50']:.0f} µs, p99 "
                     f"{g['step']['p99']:.0f} µs")
    lines.append(f"MIDI: {report.midi}")
    lines.append(f"OSC: {report.osc}")
    for w in report.warnings:
        lines.append(f"warning: {w}")
    for p in report.problems:
        lines.append(f"! {p}")
    lines.append(f"\n{'GO' if report.go else 'NO-GO'}  ({report.seconds:.1f} s)")
    return "\n".join(lines)
