"""MidiClockFollower and TapTempo in virtual time: integer-ns tick streams, exact event lists.

Streams: the true tick ``n`` of a clock at ``bpm`` is at ``t0 + n * 60e9 / (24 * bpm)`` (exact fraction). JACK-like
stamps add seeded uniform jitter of +-0.2 ms (the sender's USB/driver) and then floor to the start of the audio
period (64 or 256 frames at 48 kHz). Floored stamps lie half a period early on average: a constant latency that no
fit can see, so quantised streams are compared with the true grid shifted by -period/2.
"""

import random
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liveperf.timing.midi_clock import ClockEvent, MidiClockFollower
from liveperf.timing.tap_tempo import TapTempo

F8, FA, FB, FC = b"\xf8", b"\xfa", b"\xfb", b"\xfc"
T0 = 10**12 + 12_345  # an arbitrary monotonic origin, far from 0


def tick_ns(bpm):
    return Fraction(60 * 10**9) / (Fraction(str(bpm)) * 24)


def period_ns(frames):
    return Fraction(frames * 10**9, 48_000)


def true_ticks(bpm, count, t0=T0, first=0):
    """Exact true times of ticks first..first+count-1."""
    return [t0 + (first + n) * tick_ns(bpm) for n in range(count)]


def stamps(times, frames=None, seed=0, jitter_ns=200_000):
    """Integer stamps: floored, optionally jittered and floored to JACK periods."""
    if frames is None:
        return [int(t) for t in times]
    rng, per = random.Random(seed), period_ns(frames)
    return [int((int(t) + rng.randint(-jitter_ns, jitter_ns)) // per * per) for t in times]


def feed(f, ts_list, data=F8):
    events = []
    for ts in ts_list:
        events += f.on_message(ts, data)
    return events


def started(**kw):
    f = MidiClockFollower(**kw)
    assert f.on_message(T0 - 1_000_000, FA) == [ClockEvent("start", T0 - 1_000_000, 0)]
    return f


# -- start and the map ------------------------------------------------------------------------------------------

def test_start_predicts_then_first_tick_is_step_0():
    f = MidiClockFollower()  # 120 BPM: a tick is 20_833_333.3 ns
    assert f.on_message(5_000, FA) == [ClockEvent("start", 5_000, 0)]
    assert f.running and f.dropout_deadline_ns() == 5_000 + 250_000_001
    assert f.ns_at_step(0) == 5_000 + 20_833_333
    assert f.on_message(17_000_000, F8) == []
    assert f.ns_at_step(0) == 17_000_000
    assert f.ns_at_step(1) == 17_000_000 + 125_000_000  # previous estimate, anchored on the tick
    assert f.step_at(17_000_000) == 0 and f.step_at(16_999_999) == -1
    assert f.nearest_step(17_000_000 + 62_500_000) == 1
    assert f.stats.ticks == 1 and f.stats.starts == 1


@pytest.mark.parametrize("bpm", [123.4, 97.3])
def test_clean_stream_is_exact(bpm):
    f = started()
    feed(f, stamps(true_ticks(bpm, 96)))
    assert f.tempo_bpm == pytest.approx(bpm, abs=1e-6)
    for step in range(-4, 40):
        assert abs(f.ns_at_step(step) - (T0 + step * 6 * tick_ns(bpm))) <= 2  # floored stamps: within 2 ns
        assert f.step_at(f.ns_at_step(step)) == step
        assert f.ns_at_step(step + 1) > f.ns_at_step(step)
    assert f.step_ns == pytest.approx(float(6 * tick_ns(bpm)))
    assert f.start_ns == f.ns_at_step(0)
    assert f.ns_at_tick(960, 480) == f.ns_at_step(8)


@pytest.mark.parametrize("bpm", [123.4, 97.3])
@pytest.mark.parametrize("frames, max_err_ns, max_bpm_err", [(64, 500_000, 0.1), (256, 1_500_000, 0.25)])
@pytest.mark.parametrize("seed", range(3))
def test_jack_quantised_stream_is_smoothed(bpm, frames, max_err_ns, max_bpm_err, seed):
    """After 1 beat, the current and next step are within 0.5 ms (64 frames) / 1.5 ms (256 frames) of the true grid
    shifted by the constant -period/2; after 2 beats the tempo is within 0.1 / 0.25 BPM. (48-tick least squares:
    the stamp error is uniform over the period, so the fit's error scales with it; see the module docstring.)"""
    f = started()
    times = true_ticks(bpm, 24 * 16)
    shift = period_ns(frames) / 2
    for n, ts in enumerate(stamps(times, frames, seed)):
        assert f.on_message(ts, F8) == []
        if n >= 23:
            for step in (n // 6, n // 6 + 1):
                assert abs(f.ns_at_step(step) - (T0 + step * 6 * tick_ns(bpm) - shift)) < max_err_ns
                assert f.ns_at_step(step + 1) > f.ns_at_step(step)
        if n >= 47:
            assert abs(f.tempo_bpm - bpm) < max_bpm_err
    assert f.stats.rejected_ticks == f.stats.rejected_fits == 0


def test_tempo_change_followed_within_two_beats():
    f = started()
    before = true_ticks(123.4, 96)
    after = true_ticks(131.7, 96, t0=before[-1] + tick_ns(123.4), first=96)
    feed(f, stamps(before))
    estimates = []
    for ts in stamps(after):
        f.on_message(ts, F8)
        estimates.append(f.tempo_bpm)
    # Smooth: the estimate moves monotonically from the old tempo to the new one, no overshoot.
    assert all(a <= b + 1e-6 for a, b in zip(estimates, estimates[1:]))
    assert 123.4 - 1e-6 <= estimates[0] and estimates[-1] <= 131.7 + 1e-6
    assert estimates[47] == pytest.approx(131.7, abs=0.1)  # 2 beats after the change
    assert abs(f.ns_at_step(200 // 6 + 1) - (after[0] + (34 * 6 - 96) * tick_ns(131.7))) <= 2


def test_tempo_change_with_jack_stamps():
    f = started()
    before = true_ticks(123.4, 96)
    after = true_ticks(131.7, 48, t0=before[-1] + tick_ns(123.4), first=96)
    feed(f, stamps(before + after, frames=64, seed=7))
    assert f.tempo_bpm == pytest.approx(131.7, abs=0.1)


# -- lost ticks, stalls --------------------------------------------------------------------------------------------

def test_lost_ticks_are_recovered_when_the_next_tick_confirms():
    """Ticks 30, 60 and 61 never arrive (a JACK client that missed cycles): the position jumps over them once the
    next tick comes one period after the gap, and the map is that of the full stream."""
    f = started()
    ts = stamps(true_ticks(123.4, 96))
    feed(f, ts[:30])
    before = [f.ns_at_step(s) for s in range(20)]
    assert f.on_message(ts[31], F8) == []  # 2 periods after tick 29: held out of the fit
    assert [f.ns_at_step(s) for s in range(20)] == before
    feed(f, ts[32:60] + ts[62:96])
    assert f.stats.lost_ticks == 3 and f.stats.ticks == 93
    for step in range(20):
        assert abs(f.ns_at_step(step) - (T0 + step * 6 * tick_ns(123.4))) <= 2
    assert f.on_message(ts[95] + 1, FC) == [ClockEvent("stop", ts[95] + 1, 15)]  # tick 95 is in step 15
    assert f.on_message(ts[95] + 2, FB) == [ClockEvent("continue", ts[95] + 2, 16)]


def test_lost_tick_in_jack_stamps_is_recovered():
    f = started()
    ts = stamps(true_ticks(97.3, 120), frames=64, seed=3)
    feed(f, ts[:40] + ts[41:120])
    assert f.stats.lost_ticks == 1
    assert abs(f.ns_at_step(21) - (T0 + 126 * tick_ns(97.3) - period_ns(64) / 2)) < 500_000


@pytest.mark.parametrize("lost_at", [0, 1, 3, 5, 9])
def test_a_tick_lost_just_after_a_tempo_change_is_recovered(lost_at):
    """97.3 -> 131.7 BPM (jack_transport), and jack_midi_clock skips a tick a few ticks later, while the 2-beat fit
    still holds much of the old period: the last intervals' own period tells the gap was two ticks (seen through
    JACK: the show stayed a tick, 19 ms, behind the band until the next locate)."""
    f = started()
    before = true_ticks(97.3, 96)
    after = true_ticks(131.7, 60, t0=before[-1] + tick_ns(131.7) - 96 * tick_ns(131.7), first=96)
    ts = stamps(before + after)
    feed(f, ts[:96 + lost_at] + ts[96 + lost_at + 1:])
    assert f.stats.lost_ticks == 1 and f.stats.ticks == 155
    step = 150 // 6  # a step well after the change: on the band's grid, not a tick late
    assert abs(f.ns_at_step(step) - int(after[0] + (6 * step - 96) * tick_ns(131.7))) <= 2


def test_tempo_halving_is_not_lost_ticks():
    """After a jump from 120 to 60 BPM every interval is two old periods, but none is followed by one old period:
    every tick counts, as the MIDI spec says."""
    f = started()
    fast = true_ticks(120, 48)
    slow = true_ticks(60, 48, t0=fast[-1] - 47 * tick_ns(60), first=48)  # tick 48 one slow period after 47
    feed(f, stamps(fast + slow))
    assert f.stats.lost_ticks == 0 and f.stats.ticks == 96
    assert f.tempo_bpm == pytest.approx(60, abs=1e-6)
    assert abs(f.ns_at_step(16) - (fast[-1] + 49 * tick_ns(60))) <= 2


@pytest.mark.parametrize("late_periods", [Fraction(1, 2), Fraction(3, 4)])
def test_stalled_delivery_is_counted_and_followed_within_a_16th(late_periods):
    """From tick 48 on every tick comes late by a fixed 0.5 / 0.75 period (a stalled JACK graph): not lost ticks;
    6 ticks later the map goes through the late ticks (the phase follows), with the window's tempo."""
    f = started()
    true = true_ticks(123.4, 97)
    late = late_periods * tick_ns(123.4)
    feed(f, stamps(true[:48] + [t + late for t in true[48:54]]))
    assert f.stats.lost_ticks == 0 and f.stats.ticks == 54
    assert abs(f.ns_at_step(9) - (true[54] + late)) < 1_000_000
    feed(f, stamps([t + late for t in true[54:96]]))
    assert abs(f.ns_at_step(16) - (true[96] + late)) <= 2


def test_a_late_tick_followed_by_one_on_time_is_counted():
    f = started()
    true = true_ticks(123.4, 60)
    ts = stamps(true[:30] + [true[30] + tick_ns(123.4)] + true[31:60])  # tick 30 comes with tick 31
    feed(f, ts)
    assert f.stats.lost_ticks == 0 and f.stats.ticks == 60
    assert abs(f.ns_at_step(10) - true[59] - tick_ns(123.4)) < 100_000  # one outlier among 48 points


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(2, 30), st.integers(1, 3)), max_size=6), st.integers(0, 99),
       st.sampled_from([97.3, 123.4, 180.0]))
def test_any_scattered_losses_are_recovered(gaps, seed, bpm):
    """Runs of 1..3 lost ticks, each followed by at least 2 received ticks, after the first 8: position and map as
    for the full stream (JACK 64-frame stamps)."""
    dropped, n = set(), 8
    for keep, lose in gaps:
        n += keep
        dropped.update(range(n, n + lose))
        n += lose + 2
    count = n + 24
    ts = stamps(true_ticks(bpm, count), frames=64, seed=seed)
    f = started()
    feed(f, [t for i, t in enumerate(ts) if i not in dropped])
    assert f.stats.lost_ticks == len(dropped)
    step = count // 6 + 1
    assert abs(f.ns_at_step(step) - (T0 + step * 6 * tick_ns(bpm) - period_ns(64) / 2)) < 700_000
    assert f.on_message(ts[-1] + 1, FC) == [ClockEvent("stop", ts[-1] + 1, (count - 1) // 6)]


# -- transport --------------------------------------------------------------------------------------------------

def test_stop_and_continue_keep_position():
    f = started()
    ts = stamps(true_ticks(123.4, 40))
    feed(f, ts[:32])  # ticks 0..31
    assert f.on_message(ts[31] + 1_000, FC) == [ClockEvent("stop", ts[31] + 1_000, 5)]  # tick 31 is in step 5
    assert not f.running and f.dropout_deadline_ns() is None
    frozen = [f.ns_at_step(s) for s in range(8)]
    # Devices keep sending F8 while stopped: the position and the map do not move.
    assert feed(f, [10**13 + k * 20_000_000 for k in range(30)]) == []
    assert f.stats.idle_ticks == 30 and f.stats.ticks == 32
    assert [f.ns_at_step(s) for s in range(8)] == frozen
    t_cont = 2 * 10**13
    assert f.on_message(t_cont, FB) == [ClockEvent("continue", t_cont, 6)]  # position 32: next whole step is 6
    assert f.on_message(t_cont + 20_000_000, F8) == []  # this is tick 32
    assert f.ns_at_step(6) == t_cont + 100_000_000  # tick 36, at the period the idle ticks measured (20 ms)
    assert f.step_at(t_cont + 20_000_000) == 5
    assert f.on_message(t_cont + 20_000_001, FB) == []  # already running
    assert f.stats.continues == 2


def test_idle_ticks_refine_tempo():
    f = MidiClockFollower(initial_tempo_bpm=120)
    feed(f, stamps(true_ticks(97.3, 24)))
    assert f.tempo_bpm == pytest.approx(97.3, abs=1e-6)
    assert f.on_message(T0 + 10**9, FA) == [ClockEvent("start", T0 + 10**9, 0)]
    assert abs(f.ns_at_step(0) - (T0 + 10**9 + tick_ns(97.3))) <= 2


def test_song_position_pointer_locates_exact_step():
    f = MidiClockFollower()
    assert f.on_message(1_000, b"\xf2\x0a\x00") == [ClockEvent("locate", 1_000, 10)]  # 10 sixteenths
    assert f.on_message(2_000, FB) == [ClockEvent("continue", 2_000, 10)]
    f.on_message(3_000_000, F8)  # tick 60
    assert f.ns_at_step(10) == 3_000_000 and f.step_at(3_000_000) == 10
    # 14 bits: lsb 0x7f, msb 0x01 -> 255 sixteenths; while running it locates too and the next tick is there.
    assert f.on_message(4_000_000, b"\xf2\x7f\x01") == [ClockEvent("locate", 4_000_000, 255)]
    f.on_message(9_000_000, F8)
    assert f.ns_at_step(255) == 9_000_000
    assert f.stats.locates == 2


def test_song_position_between_steps_gives_next_step():
    f = MidiClockFollower(steps_per_beat=2)  # a step is 12 ticks, an SPP unit 6
    assert f.on_message(0, b"\xf2\x03\x00") == [ClockEvent("locate", 0, 2)]  # 18 ticks: between steps 1 and 2
    assert f.on_message(1, FB) == [ClockEvent("continue", 1, 2)]
    f.on_message(1_000_000, F8)  # tick 18
    assert f.ns_at_step(2) - 1_000_000 == int(6 * tick_ns(120))


def test_start_again_while_running_restarts():
    f = started()
    ts = stamps(true_ticks(123.4, 30))
    feed(f, ts)
    assert f.on_message(ts[-1] + 10_000_000, FA) == [ClockEvent("start", ts[-1] + 10_000_000, 0)]
    f.on_message(ts[-1] + 30_000_000, F8)
    assert f.ns_at_step(0) == ts[-1] + 30_000_000


# -- dropout ----------------------------------------------------------------------------------------------------

def test_dropout_stop_mode_then_resume_as_continue():
    f = started()
    ts = stamps(true_ticks(123.4, 40))
    feed(f, ts[:26])  # ticks 0..25
    last = ts[25]
    assert f.dropout_deadline_ns() == last + 250_000_001
    assert f.poll(last + 250_000_000) == []
    assert f.poll(last + 250_000_001) == [ClockEvent("dropout", last + 250_000_001, 4)]
    assert not f.running and f.poll(last + 10**9) == [] and f.dropout_deadline_ns() is None
    # Ticks come back without FA/FB: as if Continue at position 26 (next whole step 5).
    back = last + 10**9
    assert f.on_message(back, F8) == [ClockEvent("resume", back, 5)]
    assert f.running and f.stats.resumes == 1 and f.stats.dropouts == 1
    f.on_message(back + 20_000_000, F8)  # tick 27
    assert f.step_at(back + 20_000_000) == 4
    assert abs(f.ns_at_step(5) - (back + 20_000_000 + 3 * tick_ns(123.4))) <= 2  # too few ticks: old period
    assert f.stats.ticks == 28


def test_stop_after_dropout_makes_returning_ticks_idle():
    f = started(on_dropout="stop")
    feed(f, stamps(true_ticks(123.4, 10)))
    assert [e.kind for e in f.poll(T0 + 10**9)] == ["dropout"]
    assert f.on_message(T0 + 10**9 + 1, FC) == []  # already stopped: no event, but no resume either
    assert f.on_message(T0 + 10**9 + 2, F8) == [] and not f.running
    assert f.stats.idle_ticks == 1


def test_dropout_freewheel_extrapolates_then_relocks():
    f = started(on_dropout="freewheel")
    true = true_ticks(123.4, 200)
    ts = stamps(true)
    feed(f, ts[:48])
    last = ts[47]
    predicted = [f.ns_at_step(s) for s in range(40)]
    assert f.poll(last + 250_000_000) == []
    assert f.poll(last + 250_000_001) == [ClockEvent("dropout", last + 250_000_001, 7)]  # tick 47 is in step 7
    assert f.running and f.dropout_deadline_ns() is None
    assert f.poll(last + 10**9) == []  # emitted once
    assert [f.ns_at_step(s) for s in range(40)] == predicted  # still extrapolating the same map
    # The source comes back 1.1 ms late on tick 120 (step 20): that tick index is the nearest.
    back = ts[120] + 1_100_000
    assert f.on_message(back, F8) == [ClockEvent("resume", back, 20)]
    assert f.ns_at_step(20) == back  # re-locked on the returning tick, fit history cleared
    assert f.dropout_deadline_ns() == back + 250_000_001
    feed(f, ts[121:200])
    assert abs(f.ns_at_step(33) - (T0 + 198 * tick_ns(123.4))) <= 2


def test_dropout_noticed_by_a_late_message():
    f = started()
    feed(f, [T0, T0 + 20_000_000])
    late = T0 + 20_000_000 + 300_000_000
    assert f.on_message(late, F8) == [ClockEvent("dropout", late, 0), ClockEvent("resume", late, 1)]


def test_freewheel_then_stop():
    f = started(on_dropout="freewheel")
    feed(f, stamps(true_ticks(123.4, 13)))
    f.poll(T0 + 10**9)
    assert f.on_message(T0 + 2 * 10**9, FC) == [ClockEvent("stop", T0 + 2 * 10**9, 2)]
    assert f.on_message(T0 + 3 * 10**9, F8) == [] and not f.running


# -- garbage ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("data", [b"", b"\x90\x3c\x40", b"\xf8\x00", b"\xfa\xfa", b"\xf2\x01", b"\xf2\x80\x00",
                                  b"\xf2\x00\x80\x00", b"\xfe", b"\x00", [0xF3, 1], [0xF8, 300], None, 10**12, "F8"])
def test_garbage_is_ignored_and_counted(data):
    f = started()
    assert f.on_message(T0, data) == []
    assert f.stats.ignored == 1 and f.running


def test_absurd_tick_intervals_are_counted_not_fitted():
    f = started()
    ts = stamps(true_ticks(123.4, 60))
    feed(f, ts[:30])
    f.on_message(ts[29] - 5_000_000, F8)  # runs backwards: tick 30, stamp rejected
    feed(f, ts[31:60])
    assert f.stats.rejected_ticks == 1 and f.stats.ticks == 60
    assert f.tempo_bpm == pytest.approx(123.4, abs=1e-6)
    assert abs(f.ns_at_step(9) - (T0 + 54 * tick_ns(123.4))) <= 2


def test_fit_outside_tempo_range_keeps_estimate():
    f = started()
    feed(f, [T0 + k * 100_000 for k in range(10)])  # 0.1 ms ticks = 25000 BPM
    assert f.stats.rejected_fits == 5 and f.tempo_bpm == 120.0
    assert f.ns_at_step(2) == T0 + 900_000 + int(3 * tick_ns(120))


@pytest.mark.parametrize("kw", [dict(steps_per_beat=5), dict(on_dropout="pause"), dict(min_fit_ticks=1),
                                dict(window_ticks=4), dict(initial_tempo_bpm=500), dict(dropout_ns=0)])
def test_bad_settings_raise(kw):
    with pytest.raises(ValueError):
        MidiClockFollower(**kw)


_clock_messages = st.sampled_from([F8, F8, F8, F8, FA, FB, FC, b"\xf2\x05\x00", b"\xf2\x7f\x7f"])
_messages = st.one_of(_clock_messages, st.binary(max_size=4))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(-30_000_000, 400_000_000), _messages), max_size=80),
       st.sampled_from(["stop", "freewheel"]), st.sampled_from([1, 2, 4, 8]))
def test_fuzz_never_raises_and_map_stays_monotonic(msgs, mode, spb):
    f = MidiClockFollower(spb, 97.3, on_dropout=mode, window_ticks=12, min_fit_ticks=3)
    now = T0
    for dt, data in msgs:
        now += dt
        f.poll(now)
        for ev in f.on_message(now, data):
            assert ev.kind in {"start", "stop", "continue", "locate", "dropout", "resume"} and ev.ts_ns == now
        times = [f.ns_at_step(s) for s in range(-3, 40)]
        assert all(a < b for a, b in zip(times, times[1:]))
        s = f.step_at(now)
        assert f.ns_at_step(s) <= now < f.ns_at_step(s + 1)
        deadline = f.dropout_deadline_ns()
        assert deadline is None or (f.running and deadline > now)


# -- tap tempo --------------------------------------------------------------------------------------------------

def test_tap_regular_taps():
    tap = TapTempo()
    assert tap.tap(0) is None
    assert tap.tap(500_000_000) is None
    assert tap.tap(1_000_000_000) == 120.0
    assert tap.tap(1_600_000_000) == 120.0  # median of 500, 500, 600 ms
    assert tap.tap(2_200_000_000) == pytest.approx(60e9 / 550_000_000)  # median of 500, 500, 600, 600 ms
    assert tap.tap(2_800_000_000) == 100.0  # the last 4 intervals: 500, 600, 600, 600 ms
    assert tap.tap(3_400_000_000) == 100.0


def test_tap_gap_starts_over():
    tap = TapTempo()
    for k in range(4):
        tap.tap(k * 500_000_000)
    t = 3 * 500_000_000 + 2_000_000_001
    assert tap.tap(t) is None
    assert tap.tap(t + 400_000_000) is None
    assert tap.tap(t + 800_000_000) == 150.0


def test_tap_median_rejects_one_outlier():
    tap = TapTempo()
    taps = [0, 500_000_000, 1_000_000_000, 1_590_000_000, 2_000_000_000]  # the fourth tap is 90 ms late
    results = [tap.tap(t) for t in taps]
    assert results[-1] == 120.0  # intervals 500, 500, 590, 410: the median is 500


def test_tap_out_of_range_is_ignored():
    tap = TapTempo(min_bpm=30, max_bpm=300)
    assert [tap.tap(t) for t in (0, 150_000_000, 300_000_000)] == [None, None, None]  # 400 BPM
    with pytest.raises(ValueError):
        TapTempo(min_bpm=300, max_bpm=30)
