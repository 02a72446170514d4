"""Answers planned and phrases made off the engine thread (``liveperf.modes.planner``): a job that takes time, in
virtual time (exact event lists), and the real planner thread with the shipped melody model."""

import threading
from concurrent.futures import Future

import numpy as np
import pytest

from liveperf.models.onnx_model import load_model, resolve_model_path
from liveperf.models.step_model import OnnxStepper, StepError
from liveperf.modes.answer_plan import tonic_triad
from liveperf.engine import Engine
from liveperf.modes.call_response import plan_job
from liveperf.modes.phrase import PhraseMode
from liveperf.modes.planner import INLINE, ThreadPlanner
from liveperf.music.melody import HOLD, OFF, on
from liveperf.music.sampler import new_rng_state
from liveperf.music.scales import SCALES
from liveperf.music.notes import describe
from liveperf.timing.clock import InternalClock
from liveperf.timing.virtual_scheduler import VirtualScheduler
from tests.fakes import STEP_NS_120 as S
from tests.fakes import FixedPhrases, ScriptedStepper, performer, run_engine, run_virtual, settings
from tests.modes.test_call_response import ANSWER, PHRASE

C_TRIAD = tonic_triad(0, SCALES["major"])


class SlowPlanner:
    """Runs each job at once, but the engine sees it done only ``delay_ns`` of virtual time after it was
    submitted: a plan that takes that long on the planner's thread. Records its futures."""

    def __init__(self, now_ns, delay_ns: int) -> None:
        self.now_ns, self.delay_ns = now_ns, delay_ns
        self.jobs: list[Slow] = []

    def submit(self, fn, *args):
        self.jobs.append(Slow(fn(*args), self.now_ns() + self.delay_ns, self.now_ns))
        return self.jobs[-1]


class Slow:
    def __init__(self, result, ready_ns: int, now_ns) -> None:
        self._result, self.ready_ns, self._now_ns = result, ready_ns, now_ns
        self.cancelled, self.read = False, False

    def done(self) -> bool:
        return not self.cancelled and self._now_ns() >= self.ready_ns

    def result(self):
        assert self.done(), "the engine read a plan that was not done"
        self.read = True
        return self._result

    def cancel(self) -> bool:
        self.cancelled = True
        return True


def slow(delay_steps: float):
    made = []

    def planner(now_ns):
        made.append(SlowPlanner(now_ns, int(delay_steps * S)))
        return made[-1]
    return planner, made


def test_a_plan_done_before_the_answer_plays_as_if_made_at_once():
    """Submitted at step 10 (computed 8 ms before it is due, half the silence in), done two steps later; the
    answer starts at 12 and plays the plan: the wire is the inline planner's, note for note."""
    planner, made = slow(2)
    wire, mode, _ = run_virtual(performer(PHRASE), ScriptedStepper(ANSWER, strength=1.0), answer_candidates=4,
                                tonic_pcs=C_TRIAD, planner=planner)
    inline, ref, _ = run_virtual(performer(PHRASE), ScriptedStepper(ANSWER, strength=1.0), answer_candidates=4,
                                 tonic_pcs=C_TRIAD)
    assert wire == inline and ref.last_plan.echo  # the echo wins: the plan, not a step-by-step draw, is heard
    assert mode.stats.plans == 1 and mode.stats.plans_late == 0
    assert [j.read for j in made[0].jobs] == [True]


def test_a_plan_not_done_when_the_answer_starts_is_dropped_and_the_answer_drawn():
    """The plan would be done at step 15, after the answer started at 12: the answer is drawn step by step (the
    certain model's own answer), the late plan is never read, and it is counted."""
    planner, made = slow(5)
    wire, mode, _ = run_virtual(performer(PHRASE), ScriptedStepper(ANSWER, strength=1.0), answer_candidates=4,
                                tonic_pcs=C_TRIAD, planner=planner)
    assert mode.stats.plans == 0 and mode.stats.plans_late == 1 and mode.stats.responses == 1
    job = made[0].jobs[0]
    assert job.cancelled and not job.read
    drawn = [(t // S, d[2]) for t, d in wire if d[0] == "on"]
    assert drawn and drawn[0][0] == 12  # answered on time, without the plan
    planned = job._result[0].tokens  # what the plan would have played: an echo of the call, not what was drawn
    assert [(12 + i, int(t) - on(0)) for i, t in enumerate(planned) if t >= on(0)] != drawn


def test_a_note_in_the_silence_cancels_the_plan_being_made():
    """The performer plays again at step 10 while the plan submitted for step 10 is being made: it is cancelled,
    never read; the next silence is planned at step 14, done at 16, and the answer at 16 plays it."""
    planner, made = slow(2)
    events = performer(PHRASE + [(10.0, 11.9, 67, 100)])
    wire, mode, _ = run_virtual(events, ScriptedStepper(ANSWER), answer_candidates=4, tonic_pcs=C_TRIAD,
                                steps=48, planner=planner)
    first, second = made[0].jobs
    assert first.cancelled and not first.read and second.read
    assert mode.stats.plans == 1 and mode.stats.plans_late == 0 and mode.last_plan.start == 16
    assert all(t >= 16 * S for t, d in wire if d[0] == "on")


def test_stop_cancels_a_plan_being_made():
    planner, made = slow(100)
    wire, mode, _ = run_virtual(performer(PHRASE), ScriptedStepper(ANSWER), answer_candidates=4,
                                tonic_pcs=C_TRIAD, steps=11, planner=planner)  # stops during the silence
    assert [j.cancelled for j in made[0].jobs] == [True] and not any(d[0] == "on" for _, d in wire)


# ---- phrase mode -------------------------------------------------------------------------------------------------
FIRST = [on(60)] + [HOLD] * 31  # held to the phrase's end
SECOND = [on(62), HOLD, on(64), HOLD, on(65), HOLD, OFF]


def phrase_run(delay_steps: float | None, steps: int = 48):
    made = []

    def make(clock, sink, now_fn):
        extra = {}
        if delay_steps is not None:
            made.append(SlowPlanner(now_fn, int(delay_steps * S)))
            extra["planner"] = made[-1]
        mode = PhraseMode(settings(channel=1, velocity=70, phrase_every_steps=32, max_note_steps=64),
                          FixedPhrases([FIRST, SECOND]), clock, sink, new_rng_state(0), **extra)
        return Engine(mode, clock=clock, sink=sink)
    wire, engine, _ = run_engine([], make, InternalClock(120, 4, 0), steps=steps)
    return wire, engine.mode, made


def test_a_phrase_made_within_its_step_plays_as_if_made_at_once():
    """The phrase for step 32 is submitted at step 31 and done half a step later: the wire is the inline one. The
    first phrase, due at step 0 where the mode began, is made at once on the engine thread."""
    wire, mode, made = phrase_run(0.5)
    assert wire == phrase_run(None)[0] == [
        (0, ("on", 1, 60, 70)), (32 * S, ("off", 1, 60)), (32 * S, ("on", 1, 62, 70)), (34 * S, ("off", 1, 62)),
        (34 * S, ("on", 1, 64, 70)), (36 * S, ("off", 1, 64)), (36 * S, ("on", 1, 65, 70)), (38 * S, ("off", 1, 65))]
    assert mode.stats.phrases == 2 and mode.stats.phrases_late == 0 and [j.read for j in made[0].jobs] == [True]


def test_a_late_phrase_plays_from_the_step_it_comes_in():
    """Done 3.2 steps after step 31 was computed: the first phrase ends on time at step 32, the second comes in when
    step 35 is computed and plays from there (its step 3, a HOLD, does not tie over: the note at 36 is its next);
    counted."""
    wire, mode, _ = phrase_run(3.2)
    assert wire == [(0, ("on", 1, 60, 70)), (32 * S, ("off", 1, 60)), (36 * S, ("on", 1, 65, 70)),
                    (38 * S, ("off", 1, 65))]
    assert mode.stats.phrases == 2 and mode.stats.phrases_late == 1


def test_stop_cancels_a_phrase_being_made():
    wire, mode, made = phrase_run(100, steps=33)
    assert [j.cancelled for j in made[0].jobs] == [True] and mode.stats.phrases == 1 and mode.idle


class ManualPlanner:
    """Jobs start running when submitted (``cancel`` then fails, as on a busy thread) and finish when the test
    calls ``finish``."""

    def __init__(self) -> None:
        self.jobs: list[tuple[Future, tuple]] = []

    def submit(self, fn, *args):
        fut = Future()
        fut.set_running_or_notify_cancel()
        self.jobs.append((fut, (fn, args)))
        return fut

    def finish(self) -> None:
        for fut, (fn, args) in self.jobs:
            if not fut.done():
                fut.set_result(fn(*args))


def test_a_phrase_due_when_the_mode_begins_again_waits_for_a_job_still_running():
    """The transport stops while the phrase for step 32 is being made (the job owns the source and the RNG until
    it is done) and starts again at step 32: the phrase due there is not made at once on the engine thread beside
    that job, but queued behind it; it comes in at step 33 and plays from there, counted late."""
    planner, sched, clock = ManualPlanner(), VirtualScheduler(), InternalClock(120, 4, 0)
    mode = PhraseMode(settings(channel=1, velocity=70, phrase_every_steps=32, max_note_steps=64),
                      FixedPhrases([FIRST, SECOND, SECOND]), clock, sched, new_rng_state(0), planner=planner)
    for step in range(32):
        mode.on_step(step)
    assert len(planner.jobs) == 1  # the first phrase was made at once, the one for step 32 is running
    mode.stop(clock.ns_at_step(32) - 1_000_000)
    mode.begin(32)
    mode.on_step(32)
    assert len(planner.jobs) == 2 and mode.stats.phrases == 1
    planner.finish()
    mode.on_step(33)
    mode.on_step(34)
    assert mode.stats.phrases == 2 and mode.stats.phrases_late == 1
    sched.flush()
    # step 33 of the phrase is a HOLD: no tie-over, nothing sounds; its next note is at step 34
    assert [(t, describe(d)) for t, d in sched.sent] == [(0, ("on", 1, 60, 70)), (32 * S - 1_000_000, ("off", 1, 60)),
                                                        (34 * S, ("on", 1, 64, 70))]


# ---- the real planner thread -----------------------------------------------------------------------------------
CALL = np.array([on(60), HOLD, on(62), HOLD, on(64), HOLD, on(65), OFF, on(67), HOLD, HOLD, HOLD, on(64), HOLD,
                 on(60), OFF], dtype=np.int64)


def primed_stepper() -> tuple[OnnxStepper, np.ndarray]:
    stepper = OnnxStepper(load_model(resolve_model_path("melody_dnn", None)), (4, 4))
    logits = None
    for step, tok in enumerate(CALL):
        logits = stepper.feed(int(tok), step)
    return stepper, logits


def job_args(stepper: OnnxStepper, logits: np.ndarray, seed: int):
    s = settings(answer_candidates=8, tonic_pcs=C_TRIAD)
    lead = [(HOLD, t) for t in range(16, 18)]
    return (stepper.fork(8), logits.copy(), lead, 18, s, CALL, 0, 4, None, seed)


def test_the_planner_thread_plans_what_the_engine_would_while_the_engine_goes_on_stepping():
    """The job owns a fork of the model state: the engine feeding its own stepper meanwhile (the same onnxruntime
    session, from another thread) changes nothing; the plan is the one made at once, token for token."""
    stepper, logits = primed_stepper()
    planner = ThreadPlanner()
    try:
        threads = []

        def job(*args):
            threads.append(threading.current_thread().name)
            return plan_job(*args)
        fut = planner.submit(job, *job_args(stepper, logits, seed=11))
        for step in range(16, 80):  # the engine goes on
            stepper.feed(on(72) if step % 3 == 0 else HOLD, step)
        threaded, ns = fut.result(timeout=30)
    finally:
        planner.close()
    fresh, fresh_logits = primed_stepper()
    inline, _ = INLINE.submit(plan_job, *job_args(fresh, fresh_logits, seed=11)).result()
    assert threads[0].startswith("liveperf-planner") and ns > 0
    assert threaded.tokens.tolist() == inline.tokens.tolist() and threaded.score == inline.score
    assert (threaded.tokens >= on(0)).any()


def test_a_failing_job_hands_its_error_to_the_engine_and_close_drops_jobs_not_started():
    planner = ThreadPlanner()
    gate = threading.Event()

    def fail():
        gate.wait(10)
        raise StepError("scripted failure")
    first = planner.submit(fail)
    queued = planner.submit(lambda: 1)
    planner.close()  # returns at once: the first job is running, the second never starts
    gate.set()
    with pytest.raises(StepError):
        first.result(timeout=10)
    assert queued.cancelled()
    with pytest.raises(StepError):
        INLINE.submit(fail).result()  # the gate is open: fails at once, through the future as well
