"""Call and response: the performer plays a phrase; when it ends, the partner continues it for a few bars.

Policy, per song (``ModeSettings``):
- A phrase starts with the performer's first note after the partner was quiet; the model state is reset there, so
  the partner is primed with exactly this phrase (as the model was trained: tunes start at their first note).
- Every step, the model is fed the token of the step before (the performer's grid token, or the partner's own
  token while it answers) and returns logits for this step. One model step per grid step, whatever happens.
- The phrase ends when no performer note has sounded for ``silence_steps`` steps, or at an explicit trigger.
  The answer starts at that step and lasts ``response_bars`` bars, sampled in the song's key and range. Settings
  that leave no note to draw (temperature 0, top_k 1, a narrow top_p or range) play the likeliest allowed note
  where the model expects one, and always at the answer's first step (``liveperf.modes.note_choice``).
- A performer note-on during the answer stops it at once: pending partner notes are cancelled and the sounding
  one gets its note-off at the time of the performer's note.
- Planning (``answer_candidates`` > 0, ``liveperf.modes.answer_plan``): half the silence after the phrase's last
  note ended (``plan_wait_steps``), while the answer is still the other half away, the whole answer is planned from the model's state
  (several candidates in one batched model call per step, scored by likelihood, reuse of the call's beats,
  cadence and no drone) on the assumption that the silence holds; the answer then plays the plan. A performer
  note during the silence drops the plan (the phrase goes on). Where there is no time to plan (an explicit
  trigger, ``silence_steps`` 1, a model error) the answer is drawn step by step as before. The plan is a job for
  the song's planner (``liveperf.modes.planner``): in a show it runs on the planner's thread while the engine goes
  on stepping (17-29 ms of work must not hold up every partner's next notes), and is collected at a later step;
  one not done when the answer starts is dropped and the answer drawn step by step (counted: ``plans_late``). In
  virtual time it runs at once. The job owns copies (the forked model state, the settings as they are, its own
  RNG stream, seeded by one draw from the mode's), so it plays the same answer wherever it runs
  (``liveperf check`` times it per song).
- The copy guard (``guard``, ``liveperf.music.copy_guard``): a planned candidate that replays a training passage of
  ``max_copy_bars`` is passed over (all of them: the best is cut short of its copy); step by step, a token that
  would complete one is drawn again, then becomes a rest. Counted (``copies_redrawn``, ``copies_cut``).

Owned by the engine thread; it sees time only as steps and the clock's ``ns_at_step``.
"""

from __future__ import annotations

import copy
import time
from concurrent.futures import Future

import numpy as np

from liveperf.music import melody
from liveperf.timing.clock import InternalClock
from liveperf.music.copy_guard import CopyGuard
from liveperf.music.dynamics import Dynamics
from liveperf.music.feel import Feel
from liveperf.models.step_model import StepError, StepModel
from liveperf.modes.answer_plan import Plan, plan_answer
from liveperf.modes.note_choice import NoteChoice
from liveperf.modes.planner import INLINE
from liveperf.modes.partner_voice import PartnerVoice
from liveperf.modes.settings import ModeSettings, ModeStats, settings_for  # noqa: F401  (re-exported)
from liveperf.music.performer_grid import PerformerGrid
from liveperf.music.sampler import new_rng_state, next_uniform
from liveperf.timing.scheduler import OutputSink


MAX_CALL_STEPS = 256  # the call a plan looks back at: its last 16 bars of 4/4 at most
MAX_STEP_REDRAWS = 3  # step by step, a token that completes a copy is drawn again this often (then a rest)


def plan_wait_steps(silence_steps: int) -> int:
    """Steps of silence after which the answer is planned: half the silence that ends a phrase (at least 1). A
    shorter gap is most often a rest inside the phrase: planning at every detached note's gap made 8 plans per
    answer with an eighth-note call (``bench.band_step``), each 12 ms of work dropped at the next note. The plan has
    the other half of the silence to be made in (``liveperf check``'s budget is half of that)."""
    return max(1, silence_steps // 2)


class CallAndResponse:
    name = "call_response"

    def __init__(self, settings: ModeSettings, stepper: StepModel, clock: InternalClock, sink: OutputSink,
                 rng_state: np.ndarray, feel=None, guard: CopyGuard | None = None, planner=INLINE) -> None:
        self.s = settings
        self.planner = planner  # where whole answers are planned (``liveperf.modes.planner``)
        self.guard = guard if guard is not None and guard.window_steps else None
        self.stepper = stepper
        self.clock = clock
        self.sink = sink
        self.rng = rng_state
        self.stats = ModeStats()
        self.spb = clock.steps_per_beat
        self.voice = PartnerVoice(settings.channel, sink, settings.max_note_steps, settings.density)
        self.choice = NoteChoice()
        self.dynamics = Dynamics(settings.steps_per_bar, clock.steps_per_beat)  # the performer's accents
        self.feel = feel if feel is not None else Feel(clock, clock.steps_per_beat, settings.swing)
        self.begin(0)

    def begin(self, step: int) -> None:
        """Start listening afresh at ``step`` (song start, a switch to this mode, a transport relocation)."""
        self.grid = PerformerGrid(step)
        self._begin_step = step
        self._phrase_start: int | None = None  # first step of the phrase being heard/answered
        self._fed_through = -1  # last step fed to the model
        self._logits: np.ndarray | None = None  # the model's prediction for step _fed_through + 1
        self._answer_start: int | None = None
        self._answer_end = -1
        self._answer_tokens: dict[int, int] = {}
        self._velocity = 100
        self._trigger = False
        self._finalized = step - 1
        self._call: list[int] = []  # the performer's tokens of the open phrase (its last MAX_CALL_STEPS) ...
        self._call_start = step  # ... from this step
        self._plan: Plan | None = None
        self._planning: Future | None = None  # a plan submitted to the planner, not yet collected
        self.last_plan: Plan | None = None  # the latest plan made (reports, tests)
        self.plan_ns: list[int] = []  # wall time of each plan (for ``liveperf check``; not read on the hot path)

    # ---- state -----------------------------------------------------------------------------------------------
    @property
    def answering(self) -> bool:
        return self._answer_start is not None

    @property
    def idle(self) -> bool:
        """Nothing heard that still needs an answer, and no answer playing."""
        return self._phrase_start is None and not self.answering

    # ---- performer input (engine thread, in arrival order) -----------------------------------------------------
    def note_on(self, ts_ns: int, pitch: int, velocity: int) -> None:
        if self.answering:
            self.stats.interrupted += 1
            self._stop_answer(ts_ns, cancel=True)
        self.feel.heard(ts_ns)
        step = self.grid.note_on(self.feel.nearest_step(ts_ns), pitch, velocity)
        self.dynamics.heard(step, velocity)
        self._drop_plan()  # planned for a silence that did not hold: the phrase goes on
        if self._phrase_start is None:
            self._phrase_start = step
            self._fed_through = step - 1
            self._logits = None
            self._call, self._call_start = [], step
            self.grid.velocities = [velocity]
            self.stepper.reset()

    def note_off(self, ts_ns: int, pitch: int) -> None:
        self.grid.note_off(self.feel.nearest_step(ts_ns), pitch)

    def release_performer(self, ts_ns: int) -> None:
        """Release every performer note still held (their note-offs will never come)."""
        self.grid.release_all(self.feel.nearest_step(ts_ns))

    def trigger(self) -> None:
        """End the phrase now (explicit trigger): the answer starts at the next step computed."""
        if self._phrase_start is not None and not self.answering:
            self._trigger = True

    # ---- the grid (engine thread, once per step, a little before the step is due) ------------------------------
    def on_step(self, step: int) -> None:
        self._feed_until(step - 1)
        if self._planning is not None and self._planning.done():
            self._collect_plan()
        if self.answering and step >= self._answer_end:
            self._stop_answer(self.clock.ns_at_step(step), cancel=False)
        if not self.answering and self._phrase_start is not None and step > self._phrase_start:
            silent_for = step - self.grid.last_note_end_step
            if self._trigger or (not self.grid.sounding and self.grid.last_note_end_step >= self._begin_step
                                 and silent_for >= self.s.silence_steps):
                self._start_answer(step)
        if self.answering:
            self._play(step)
        elif (self.s.answer_candidates > 0 and self._plan is None and self._planning is None
              and self._phrase_start is not None):
            self._plan_ahead(step)

    def _plan_ahead(self, step: int) -> None:
        """Submit the answer's plan if the phrase has gone silent and the answer is still ahead (module docstring)."""
        if self.grid.sounding or self.grid.last_note_end_step < self._begin_step or self._logits is None:
            return
        if step - self.grid.last_note_end_step < plan_wait_steps(self.s.silence_steps):
            return  # a gap between notes, not yet a silence: a plan for every gap would be wasted work
        start = self.grid.last_note_end_step + self.s.silence_steps
        call = self._call[:self.grid.last_note_end_step - self._call_start + 1]  # without the silence after it
        if start <= step or self._fed_through != step - 1 or not call:
            return
        try:
            batch = self.stepper.fork(self.s.answer_candidates)
        except StepError as exc:
            self._plan_failed(exc)
            return
        seed = int(next_uniform(self.rng) * (1 << 53))  # the plan's own stream: one draw of the mode's
        self._planning = self.planner.submit(
            plan_job, batch, self._logits.copy(), [(melody.HOLD, t) for t in range(step, start)], start,
            copy.copy(self.s), np.asarray(call, dtype=np.int64), self._call_start, self.spb, self.guard, seed)
        if self._planning.done():
            self._collect_plan()  # planned at once (virtual time)

    def _collect_plan(self) -> None:
        """Take the finished plan job's answer (engine thread; the job is done)."""
        job, self._planning = self._planning, None
        try:
            plan, ns = job.result()
        except StepError as exc:
            self._plan_failed(exc)
            return
        self._plan = plan
        self.plan_ns.append(ns)
        self.stats.plans += 1
        self.stats.copies_redrawn += plan.copied
        self.stats.copies_cut += plan.cut
        self.last_plan = plan

    def _plan_failed(self, exc: Exception) -> None:
        self.stats.model_errors += 1
        self.stats.last_error = str(exc)
        self._plan = None

    def _drop_plan(self) -> None:
        """Forget the plan and any plan still being made (its result is never read)."""
        self._plan = None
        if self._planning is not None:
            self._planning.cancel()
            self._planning = None

    def _feed_until(self, last: int) -> None:
        """Finalise the performer's grid through ``last`` and feed the model every step of an open phrase."""
        for s in range(self._finalized + 1, last + 1):
            performer_token = self.grid.finalize(s)
            self._finalized = s
            if self._phrase_start is None or s < self._phrase_start or s <= self._fed_through:
                continue
            if not self.answering:
                self._call.append(performer_token)
                if len(self._call) > MAX_CALL_STEPS:
                    del self._call[0]
                    self._call_start += 1
            token = self._answer_tokens.get(s, performer_token)
            try:
                self._logits = self.stepper.feed(token, s)
            except StepError as exc:
                self._model_failed(exc, self.clock.ns_at_step(s + 1))
                return
            self._fed_through = s

    def _start_answer(self, step: int) -> None:
        self._trigger = False
        self._answer_start = step
        self._answer_end = step + self.s.response_steps
        self._answer_tokens = {}
        vel = self.s.velocity
        if vel is None:
            heard = self.grid.velocities or [100]
            vel = int(round(sum(heard) / len(heard)))
        self._velocity = min(127, max(1, vel))
        self.stats.responses += 1
        if self._planning is not None:  # not done in time (it was collected above if it was): draw step by step
            self.stats.plans_late += 1
            self._drop_plan()
        if self._plan is not None and self._plan.start != step:
            self._plan = None  # planned for another start (a trigger came first): draw step by step

    def _play(self, step: int) -> None:
        if self._plan is not None:
            i = step - self._plan.start
            token = int(self._plan.tokens[i]) if 0 <= i < len(self._plan.tokens) else melody.HOLD
            self.stats.tokens += 1
            self._answer_tokens[step] = self.voice.play(step, self.feel.due_ns(step), token,
                                                        self._velocity_at(step))
            return
        if self._logits is None or self._fed_through != step - 1:
            return  # the model could not be fed up to here (error counted): stay silent this step
        token = self.choice.choose(self._logits, self.s.allowed, self.s, self.rng, melody.HOLD,
                                   need_note=step == self._answer_start)
        if not self.s.allowed[token]:
            token = melody.HOLD
        if self.guard is not None:
            token = self._guard_step(step, token)
        self.stats.tokens += 1
        self._answer_tokens[step] = self.voice.play(step, self.feel.due_ns(step), token, self._velocity_at(step))

    def _guard_step(self, step: int, token: int) -> int:
        """Step by step, the copy guard asks of each token whether it completes a training passage (the answer so
        far plus it): then the token is drawn again without it (``MAX_STEP_REDRAWS`` times), then the step is a
        rest; counted as a redraw, or a cut."""
        line = [self._answer_tokens.get(s, melody.HOLD) for s in range(self._answer_start, step)]
        allowed = self.s.allowed
        for _ in range(MAX_STEP_REDRAWS):
            if self.guard.first_copy(np.asarray(line + [token]), len(line)) is None:
                return token
            self.stats.copies_redrawn += 1
            allowed = allowed.copy()
            allowed[token] = False
            token = self.choice.choose(self._logits, allowed, self.s, self.rng, melody.OFF)
            token = token if allowed[token] else melody.OFF
        if self.guard.first_copy(np.asarray(line + [token]), len(line)) is None:
            return token
        self.stats.copies_cut += 1
        return melody.OFF if token != melody.OFF else melody.HOLD

    def _velocity_at(self, step: int) -> int:
        """The answer's level (the call's mean velocity, or the song's number) with the performer's own accent for
        this place in the bar (``liveperf.music.dynamics``; none when the song fixes the velocity)."""
        if self.s.velocity is not None:
            return self._velocity
        return min(127, max(1, int(round(self._velocity + self.dynamics.accent(step)))))

    def _stop_answer(self, at_ns: int, cancel: bool) -> None:
        """End the answer at ``at_ns``; ``cancel`` also drops what was computed ahead and is not yet due."""
        self.voice.silence(at_ns, cancel)
        self._answer_start = None
        self._answer_tokens = {}
        self._drop_plan()
        self._phrase_start = None
        self._logits = None

    def _model_failed(self, exc: Exception, at_ns: int) -> None:
        self.stats.model_errors += 1
        self.stats.last_error = str(exc)
        if self.answering:
            self._stop_answer(at_ns, cancel=True)
        self._phrase_start = None
        self._logits = None

    def stop(self, now_ns: int) -> None:
        """Silence the partner now (song end, mode switch, transport stop, panic, shutdown)."""
        if self.answering:
            self._stop_answer(now_ns, cancel=True)
        self._drop_plan()
        self._phrase_start = None


def plan_job(batch, logits: np.ndarray, lead: list[tuple[int, int]], start: int, settings: ModeSettings,
             call: np.ndarray, call_start: int, spb: int, guard: CopyGuard | None, seed: int) -> tuple[Plan, int]:
    """One whole answer planned (``answer_plan.plan_answer``) with the mode's sampling rules (``NoteChoice``), on
    whichever thread the planner runs it; owns every argument (copies made by the engine thread). Returns the plan
    and its wall time in ns."""
    t0 = time.perf_counter_ns()
    choice, rng, allowed = NoteChoice(), new_rng_state(seed), settings.allowed

    def choose(row: np.ndarray, need_note: bool) -> int:
        token = choice.choose(row, allowed, settings, rng, melody.HOLD, need_note=need_note)
        return token if allowed[token] else melody.HOLD

    plan = plan_answer(batch, logits, lead, start, settings.response_steps, call, call_start, allowed, choose, spb,
                       settings.steps_per_bar, settings.tonic_pcs, guard,
                       settings.style if any(settings.style) else None)
    return plan, time.perf_counter_ns() - t0
