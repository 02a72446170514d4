"""The stage keys: the key map (pure, property-tested) and the key reader on a real pty, with the terminal given
back however the show ends."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import termios
import textwrap
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liveperf.io.osc_protocol import Command
from liveperf.params import MODES
from liveperf.stage.keys import HELP, KeyReader, KeyState, map_keys
from liveperf.stage.view import SHOW_CURSOR

from tests.stage.test_stage_view import ROOT, S, PtyReader, pty_pair, wait_for  # noqa: F401 (pty_pair: a fixture)


def modes_from(current="duet", available=MODES):
    return lambda: (current, available)


def feed(chunks, modes=modes_from(), state=None):
    """Feed (time_ns, bytes) reads through map_keys; returns (commands, notices, final state)."""
    state = state or KeyState()
    commands, notices = [], []
    for now_ns, data in chunks:
        result = map_keys(state, data, now_ns, modes)
        state = result.state
        commands += result.commands
        notices += result.notices
    return commands, notices, state


def kinds(commands):
    return [(c.kind, c.value) for c in commands]


def test_keys_plain():
    commands, _, _ = feed([(0, b"n"), (1, b"p"), (2, b" "), (3, b"!"), (4, b"x")])
    assert kinds(commands) == [("song_next", None), ("song_prev", None), ("tap", None), ("panic", None)]


@pytest.mark.parametrize("seq, kind", [(b"\x1b[C", "song_next"), (b"\x1bOC", "song_next"), (b"\x1b[D", "song_prev"),
                                       (b"\x1bOD", "song_prev"), (b"\x1b[1;2C", "song_next")])
def test_keys_arrows_in_one_read_and_split_at_every_byte(seq, kind):
    assert kinds(feed([(0, seq)])[0]) == [(kind, None)]
    split = [(i, seq[i:i + 1]) for i in range(len(seq))]
    for i in range(1, len(seq)):
        before, _, state = feed(split[:i])
        assert before == [] and state.escape == seq[:i]
    assert kinds(feed(split)[0]) == [(kind, None)]


def test_keys_other_sequences_are_ignored():
    commands, _, state = feed([(0, b"\x1b[A\x1b[B\x1b[15~\x1bOP"), (1, b"n")])
    assert kinds(commands) == [("song_next", None)] and state.escape == b""


def test_keys_escape_escape_is_panic_within_one_second():
    assert kinds(feed([(0, b"\x1b\x1b")])[0]) == [("panic", None)]
    assert kinds(feed([(0, b"\x1b"), (S // 2, b"\x1b")])[0]) == [("panic", None)]
    assert feed([(0, b"\x1b"), (S + 1, b"\x1b")])[0] == []  # too slow: the second Esc starts afresh ...
    assert kinds(feed([(0, b"\x1b"), (S + 1, b"\x1b"), (S + 2, b"\x1b")])[0]) == [("panic", None)]  # ... this
    assert kinds(feed([(0, b"\x1b\x1b[C")])[0]) == [("song_next", None)]  # Alt+right is not a panic
    assert kinds(feed([(0, b"\x1b"), (5 * S, b"n")])[0]) == [("song_next", None)]  # a lone Esc, then a key


def test_keys_q_twice_within_two_seconds_stops():
    commands, notices, _ = feed([(0, b"q")])
    assert commands == [] and notices == ["press q again within 2 s to stop the show"]
    assert kinds(feed([(0, b"q"), (2 * S, b"q")])[0]) == [("stop", None)]
    assert feed([(0, b"q"), (2 * S + 1, b"q")])[0] == []  # too slow: this q arms again
    assert kinds(feed([(0, b"q"), (3 * S, b"q"), (4 * S, b"q")])[0]) == [("stop", None)]
    assert kinds(feed([(0, b"q"), (1, b"n"), (2, b"q")])[0]) == [("song_next", None)]  # another key disarms
    assert kinds(feed([(0, b"qq")])[0]) == [("stop", None)]


def test_keys_digits_and_enter_select_a_song():
    assert kinds(feed([(0, b"1"), (1, b"2"), (2, b"\r")])[0]) == [("song_select", 12)]
    assert kinds(feed([(0, b"7\n")])[0]) == [("song_select", 7)]
    assert kinds(feed([(0, b"19\x7f3\r")])[0]) == [("song_select", 13)]
    commands, notices, _ = feed([(0, b"0\r")])
    assert commands == [] and notices[-1] == "songs are numbered from 1"
    commands, notices, _ = feed([(0, b"4"), (1, b"n"), (2, b"\r")])  # another key cancels the number
    assert kinds(commands) == [("song_next", None)] and "song 4: cancelled" in notices
    assert feed([(0, b"4"), (5 * S + 1, b"\r")])[0] == []  # typed too long ago
    assert kinds(feed([(0, b"4"), (4 * S, b"2"), (8 * S, b"\r")])[0]) == [("song_select", 42)]
    assert feed([(0, b"\r")])[0] == []
    _, notices, _ = feed([(0, b"1"), (1, b"2")])
    assert notices == ["song 1_ (Enter selects)", "song 12_ (Enter selects)"]


def test_keys_m_cycles_modes():
    assert kinds(feed([(0, b"m")])[0]) == [("param", ("mode", "harmonize"))]
    assert kinds(feed([(0, b"mm")])[0]) == [("param", ("mode", "harmonize")), ("param", ("mode", "phrase"))]
    # quick presses go on from the last ask (the engine may not have taken it up); a later one asks modes() again
    assert kinds(feed([(0, b"m"), (2 * S, b"m")])[0]) == [("param", ("mode", "harmonize")),
                                                          ("param", ("mode", "phrase"))]
    assert kinds(feed([(0, b"m"), (2 * S + 1, b"m")])[0]) == [("param", ("mode", "harmonize"))] * 2
    assert kinds(feed([(0, b"m")], modes_from("phrase"))[0]) == [("param", ("mode", "comp"))]
    assert kinds(feed([(0, b"m")], modes_from("comp"))[0]) == [("param", ("mode", "call_response"))]
    assert kinds(feed([(0, b"m")], modes_from("gone", ("duet", "phrase")))[0]) == [("param", ("mode", "duet"))]
    commands, notices, _ = feed([(0, b"m")], modes_from("duet", ()))
    assert commands == [] and notices == ["no modes to switch to"]
    calls = []
    feed([(0, b"npq 12\r")], lambda: calls.append(1) or ("duet", MODES))
    assert calls == []  # the mode list is asked for only when m is pressed


def test_keys_help():
    commands, notices, _ = feed([(0, b"?")])
    assert commands == [] and notices == [HELP]


KEY_TOKENS = [b"n", b"p", b" ", b"!", b"q", b"m", b"?", b"x", b"1", b"2", b"\r", b"\x7f",
              b"\x1b[C", b"\x1b[D", b"\x1bOC", b"\x1b[1;5D", b"\x1b[A"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(KEY_TOKENS), max_size=30), st.data())
def test_keys_do_not_depend_on_how_the_bytes_were_split(tokens, data):
    stream = b"".join(tokens)
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(stream) - 1)), max_size=len(stream))))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)]) if stream[a:b]]
    whole = feed([(0, stream)])
    pieces = feed([(0, c) for c in chunks])
    assert whole[0] == pieces[0] and whole[2] == pieces[2]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3 * S), st.binary(max_size=12)), max_size=20))
def test_keys_survive_any_bytes(reads):
    now = 0
    state = KeyState()
    for dt, data in reads:
        now += dt
        result = map_keys(state, data, now, modes_from())
        state = result.state
        assert all(c.kind in ("song_next", "song_prev", "song_select", "panic", "stop", "tap", "param")
                   for c in result.commands)
        assert len(state.escape) <= 16 and len(state.digits) <= 4


# -- KeyReader on a real pty ------------------------------------------------------------------------------------

def test_key_reader_reads_keys_from_a_tty_and_restores_it(pty_pair):
    master, slave = pty_pair
    before = termios.tcgetattr(slave)
    got: queue.Queue = queue.Queue()
    notices: queue.Queue = queue.Queue()
    reader = KeyReader(lambda ts, cmd: got.put((ts, cmd)), modes=modes_from(), on_notice=notices.put, fd=slave)
    assert reader.start() and reader.start()
    during = termios.tcgetattr(slave)
    assert not during[3] & (termios.ECHO | termios.ICANON) and not during[0] & termios.IXON

    def next_command():
        return got.get(timeout=10)[1]

    os.write(master, b"n")
    assert next_command() == Command("song_next")
    os.write(master, b"\x1b[")  # an arrow split across two reads
    time.sleep(0.1)
    os.write(master, b"D")
    assert next_command() == Command("song_prev")
    os.write(master, b"12\r")
    assert next_command() == Command("song_select", 12)
    os.write(master, b"m")
    assert next_command() == Command("param", ("mode", "harmonize"))
    t0 = time.monotonic_ns()
    os.write(master, b" ")
    ts, cmd = got.get(timeout=10)
    assert cmd == Command("tap") and t0 <= ts <= time.monotonic_ns()
    while not notices.empty():
        notices.get()
    os.write(master, b"q")
    assert notices.get(timeout=10).startswith("press q again")
    os.write(master, b"q")
    assert next_command() == Command("stop")
    reader.close()
    reader.close()
    assert not reader.active and reader.errors == 0
    assert termios.tcgetattr(slave) == before
    os.write(master, b"n")  # nobody reads any more
    time.sleep(0.2)
    assert got.empty()


def test_key_reader_survives_a_failing_callback(pty_pair):
    master, slave = pty_pair
    got = []

    def on_command(ts, cmd):
        if cmd.kind == "panic":
            raise RuntimeError("queue full")
        got.append(cmd)

    with KeyReader(on_command, modes=modes_from(), fd=slave) as reader:
        os.write(master, b"!")
        assert wait_for(lambda: reader.errors == 1)
        os.write(master, b"n")
        assert wait_for(lambda: got == [Command("song_next")])
    assert isinstance(reader.error, RuntimeError)


def test_key_reader_without_a_tty_does_nothing():
    r, w = os.pipe()
    try:
        threads = threading.active_count()
        reader = KeyReader(lambda ts, cmd: None, modes=modes_from(), fd=r)
        assert not reader.start() and not reader.active and threading.active_count() == threads
        reader.close()
    finally:
        os.close(r)
        os.close(w)


CHILD = textwrap.dedent("""
    import os, signal, sys, time
    from liveperf.stage.keys import KeyReader
    from liveperf.stage.view import StageState, StageView
    keys = KeyReader(lambda ts, cmd: None, modes=lambda: ("duet", ("duet",)))
    view = StageView()
    assert keys.start() and view.start()
    view.update(StageState(song_number=1, song_title="Child Song"))
    time.sleep(1.0)
    print("READY", flush=True)
    time.sleep(0.5)
    if sys.argv[1] == "raise":
        with view, keys:
            raise RuntimeError("the show crashed")
    if sys.argv[1] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    sys.exit(0)  # nobody closes anything: the atexit hooks must
""")


@pytest.mark.parametrize("how", ["raise", "exit", "kill"])
def test_terminal_is_restored_when_the_show_dies(pty_pair, how):
    master, slave = pty_pair
    before = termios.tcgetattr(slave)
    reader = PtyReader(master)
    proc = subprocess.Popen([sys.executable, "-c", CHILD, how], stdin=slave, stdout=slave, stderr=slave, cwd=ROOT)
    try:
        assert wait_for(lambda: "READY" in reader.text(), 30), reader.text()
        assert not termios.tcgetattr(slave)[3] & termios.ECHO  # cbreak, no echo while the show runs
        assert proc.wait(30) == {"raise": 1, "exit": 0, "kill": -signal.SIGKILL}[how]
    finally:
        if proc.poll() is None:
            proc.kill()
    # the cursor is back: the display process saw its input end, also when the show was killed
    assert wait_for(lambda: reader.text().rfind(SHOW_CURSOR) > reader.text().rfind("\x1b[?25l") >= 0, 10)
    reader.stop()
    text = reader.text()
    assert "Child Song" in text
    if how == "raise":
        assert "RuntimeError: the show crashed" in text
    if how != "kill":  # a killed process cannot restore its terminal's attributes (the shell does)
        assert termios.tcgetattr(slave) == before
