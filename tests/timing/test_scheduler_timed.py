"""Scheduler with a timed port (the jack-native backend's contract), step by step on an injected clock: hand-over
``lead_ns`` ahead, a cancel revokes what was handed over from its cut on, the true send times come back."""

from __future__ import annotations

from liveperf.music.notes import note_off, note_on
from liveperf.timing.scheduler import ENGINE_SLACK_NS, REACTION_LATE_NS, Scheduler, engine_lookahead_ns

MS = 1_000_000


class TimedPort:
    lead_ns = 5 * MS

    def __init__(self) -> None:
        self.handed: list[tuple[int, int, bytes]] = []  # (clock at hand-over, due, data)
        self.revoked: list[tuple[int | None, int]] = []
        self.reports: list[tuple[int, int]] = []
        self.late_ok: list[int | None] = []  # each hand-over's own late tolerance (None: the port's)
        self.now = 0

    def send(self, data: bytes) -> bool:
        raise AssertionError("a timed port gets send_at")

    def send_at(self, due_ns: int, data: bytes, late_ok_ns: int | None = None) -> bool:
        self.handed.append((self.now, due_ns, bytes(data)))
        self.late_ok.append(late_ok_ns)
        return True

    def revoke(self, channel, from_ns: int) -> None:
        self.revoked.append((channel, from_ns))

    def emitted(self) -> list[tuple[int, int]]:
        out, self.reports = self.reports, []
        return out

    def pending(self) -> int:
        return 0


def _scheduler(port: TimedPort) -> Scheduler:
    return Scheduler(port, realtime_priority=None, clock_ns=lambda: port.now)


def test_messages_are_handed_over_lead_ahead_and_a_cancel_revokes_from_its_cut():
    port = TimedPort()
    s = _scheduler(port)
    s.schedule(20 * MS, note_on(0, 60, 100))
    s.schedule(30 * MS, note_off(0, 60))
    s.schedule(40 * MS, note_on(0, 62, 100))
    port.now = 14 * MS
    s.pump(0)
    assert port.handed == []  # 20 ms is 6 ms away: more than the lead
    port.now = 15 * MS
    s.pump(0)
    assert port.handed == [(15 * MS, 20 * MS, note_on(0, 60, 100))]
    port.now = 36 * MS
    s.pump(0)
    assert [h[1:] for h in port.handed[1:]] == [(30 * MS, note_off(0, 60)), (40 * MS, note_on(0, 62, 100))]
    s.cancel_pending(0, 38 * MS)  # a transport stop at 38 ms: the note-on due at 40 ms was already handed over
    s.pump(0)
    assert port.revoked == [(0, 38 * MS)]
    # The cut ends what the scheduler believes sounds (the port swallows the off of a revoked note).
    assert port.handed[-1][1:] == (38 * MS, note_off(0, 62))


def test_true_send_times_come_from_the_port_and_its_late_drops_are_counted():
    port = TimedPort()
    s = _scheduler(port)
    port.reports = [(10 * MS, 10 * MS + 21_000), (20 * MS, -1), (30 * MS, 30 * MS), (31 * MS, -2), (32 * MS, -3)]
    s.pump(0)
    assert list(s.stats.errors_ns) == [21_000, 0]
    assert list(s.stats.dues_ns) == [10 * MS, 30 * MS]  # each sent message's due time, in the same order
    assert list(s.stats.late_dues_ns) == [20 * MS]  # and each dropped one's
    assert s.stats.late_dropped == 1 and s.stats.cancelled == 1  # -2 revoked; -3 a swallowed note-off: neither
    assert s.stats.sent == 2  # only what the port says went out: the report's "sent" and its timing agree


def test_a_hand_over_is_not_counted_as_sent_until_the_port_reports_it():
    port = TimedPort()
    s = _scheduler(port)
    s.schedule(10 * MS, note_on(0, 60, 100))
    s.schedule(12 * MS, note_on(0, 62, 100))
    port.now = 8 * MS
    s.pump(0)
    assert len(port.handed) == 2 and s.stats.sent == 0
    port.reports = [(10 * MS, 10 * MS + 5_000), (12 * MS, -1)]  # the second went late in JACK's thread: dropped
    s.pump(0)
    assert (s.stats.sent, s.stats.late_dropped, list(s.stats.errors_ns)) == (1, 1, [5_000])


def test_a_message_handed_over_late_beyond_the_tolerance_is_dropped_note_offs_still_go():
    port = TimedPort()
    s = _scheduler(port)
    s.schedule(10 * MS, note_on(1, 50, 90))
    s.schedule(11 * MS, note_off(1, 50))
    port.now = 8 * MS
    s.pump(0)
    s.schedule(12 * MS, note_on(1, 52, 90))
    s.schedule(13 * MS, note_off(1, 52))
    port.now = 16 * MS  # the thread was stalled 4 ms past 12 ms: more than the 2 ms tolerance
    s.pump(0)
    assert [h[2] for h in port.handed] == [note_on(1, 50, 90), note_off(1, 50)]
    assert s.stats.late_dropped == 1 and s.stats.unheld_offs == 1  # its off is not sent: the note never sounded


def test_a_late_program_change_still_goes_out_a_late_note_on_does_not():
    """A song change that ran late must not leave the synth on the old patch: Program Change and Control Change
    (Bank Select) go out late and are counted; a late note-on is dropped."""
    port = TimedPort()
    s = _scheduler(port)
    port.now = 0
    s.pump(0)
    s.schedule(10 * MS, bytes((0xB1, 0, 1)))
    s.schedule(10 * MS, bytes((0xC1, 4)))
    s.schedule(10 * MS, note_on(1, 60, 90))
    port.now = 16 * MS  # 6 ms past due: beyond the 2 ms tolerance
    s.pump(0)
    assert [h[2] for h in port.handed] == [bytes((0xB1, 0, 1)), bytes((0xC1, 4))]
    assert s.stats.late_dropped == 1 and s.stats.late_note_offs == 2
    assert list(s.stats.late_dues_ns) == [10 * MS]  # dropped at hand-over: its due time is kept too


def test_panic_and_close_revoke_everything_handed_over():
    port = TimedPort()
    s = _scheduler(port)
    s.schedule(10 * MS, note_on(2, 70, 90))
    port.now = 6 * MS
    s.pump(0)
    s.panic()
    s.pump(0)
    assert port.revoked == [(None, 6 * MS), (None, 6 * MS)]  # the panic's cut, then its silence
    assert port.handed[-1][1:] == (6 * MS, note_off(2, 70))


def test_a_reaction_handed_over_late_still_goes_a_grid_note_as_late_is_dropped():
    """A reaction (due when computed: ``late_ok_ns`` = REACTION_LATE_NS) handed over 6 ms after its due time is
    sent, and the port gets its tolerance; a grid note 6 ms late is dropped; a reaction later than its own
    tolerance too."""
    port = TimedPort()
    s = _scheduler(port)
    port.now = 0
    s.pump(0)
    s.schedule(10 * MS, note_on(1, 60, 90))  # a grid note
    s.schedule(10 * MS, note_on(2, 62, 90), REACTION_LATE_NS)  # the duet's answer to a note it heard
    s.schedule(10 * MS - REACTION_LATE_NS - MS, note_on(3, 64, 90), REACTION_LATE_NS)
    port.now = 16 * MS  # the scheduler thread ran 6 ms late (a busy core)
    s.pump(0)
    assert [h[1:] for h in port.handed] == [(10 * MS, note_on(2, 62, 90))]
    assert port.late_ok == [REACTION_LATE_NS]
    assert s.stats.late_dropped == 2 and list(s.stats.late_dues_ns) == [10 * MS - REACTION_LATE_NS - MS, 10 * MS]


def test_a_reaction_is_never_held_to_less_than_the_shows_tolerance():
    port = TimedPort()
    s = Scheduler(port, realtime_priority=None, clock_ns=lambda: port.now, late_tolerance_ns=30 * MS)
    s.schedule(10 * MS, note_on(2, 62, 90), REACTION_LATE_NS)  # 20 ms, under the show's 30
    port.now = 35 * MS  # 25 ms late
    s.pump(0)
    assert [h[1:] for h in port.handed] == [(10 * MS, note_on(2, 62, 90))] and port.late_ok == [30 * MS]


def test_the_port_reports_tell_a_reaction_from_a_note_scheduled_ahead():
    """The stats flag each sent message that was a reaction (the report gives the two kinds' timing apart): a
    timed port reports only (due, sent), so the scheduler keeps the reactions it handed over by due time; one
    the port dropped is forgotten too."""
    port = TimedPort()
    s = _scheduler(port)
    s.schedule(10 * MS, note_on(1, 60, 90))  # the grid's
    s.schedule(10 * MS + 123, note_on(2, 62, 90), REACTION_LATE_NS)  # two reactions due the same ns: a chord
    s.schedule(10 * MS + 123, note_on(2, 66, 90), REACTION_LATE_NS)
    s.schedule(12 * MS + 7, note_on(3, 64, 90), REACTION_LATE_NS)
    port.now = 9 * MS
    s.pump(0)
    assert len(port.handed) == 4
    port.reports = [(10 * MS, 10 * MS + 5), (10 * MS + 123, 11 * MS), (10 * MS + 123, 11 * MS), (12 * MS + 7, -1)]
    s.pump(0)
    assert list(s.stats.errors_ns) == [5, MS - 123, MS - 123]
    assert list(s.stats.reactions) == [0, 1, 1]
    assert s._reactions_out == {}  # nothing left waiting: the dropped reaction's report took it back too


def test_an_untimed_port_flags_reactions_as_it_sends():
    class Port:
        def __init__(self):
            self.sent = []

        def send(self, data):
            self.sent.append(bytes(data))

    port, now = Port(), [0]
    s = Scheduler(port, realtime_priority=None, clock_ns=lambda: now[0], spin_ns=0, late_tolerance_ns=10 * MS)
    s.schedule(1 * MS, note_on(1, 60, 90))
    s.schedule(2 * MS, note_on(2, 62, 90), REACTION_LATE_NS)
    s.schedule(3 * MS, note_off(1, 60))
    now[0] = 5 * MS
    s.pump(0)
    assert port.sent == [note_on(1, 60, 90), note_on(2, 62, 90), note_off(1, 60)]
    assert list(s.stats.reactions) == [0, 1, 0] and list(s.stats.dues_ns) == [1 * MS, 2 * MS, 3 * MS]


def test_the_engine_computes_a_step_ahead_of_a_timed_ports_lead_with_slack():
    """A 256-frame JACK period's lead (7.3 ms) plus the slack overrides the show's 8 ms; at 64 frames (lead 4 ms)
    the show's 8 ms stands; a port that is not timed keeps the show's lookahead."""
    class Lead:
        def __init__(self, lead_ns):
            self.lead_ns = lead_ns

    lead_256 = 256 * 1_000_000_000 // 48_000 + 2 * MS
    assert engine_lookahead_ns(8 * MS, Lead(lead_256)) == lead_256 + ENGINE_SLACK_NS == 11_333_333
    assert engine_lookahead_ns(8 * MS, Lead(4 * MS)) == 8 * MS
    assert engine_lookahead_ns(20 * MS, Lead(lead_256)) == 20 * MS
    assert engine_lookahead_ns(8 * MS, object()) == 8 * MS
