"""The stage view: render, the display thread and process (keys: test_stage_keys.py)."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import select
import struct
import signal
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest
from rich.console import Console

from liveperf.stage.view import (SHOW_CURSOR, StageState, StageView, big_text, decode_state, encode_state,
                                 format_param, pitch_name, render)

ROOT = Path(__file__).resolve().parents[2]
S = 1_000_000_000

SHOW = StageState(
    setlist="Club night", song_number=3, song_title="Autumn Leaves", song_count=8, next_song="Blue Bossa",
    bar=12, beat=3, tempo_bpm=123.4, clock_source="MIDI clock", transport="playing", mode="duet",
    pending_mode="phrase", pending_song="4. Blue Bossa", chord="Am7/C", key="E dorian 82 %",
    params={"temperature": 0.9, "top_p": 0.95, "velocity": 100, "tempo_bpm": 120.0, "silence_steps": 4},
    notes_in=123, notes_out=98, last_pitch_in=64, last_pitch_out=67, step_p99_us=850.2, osc_in=12)
TROUBLE = StageState(song_number=2, song_title="Night Train", song_count=5, bar=3, beat=2, tempo_bpm=96,
                     mode="call_response", late_dropped=2, osc_in=40, osc_errors=3,
                     messages=("recorder: disk full", "model fell back to silence"))


def text_of(state: StageState, width: int = 80) -> str:
    console = Console(record=True, width=width, force_terminal=True, file=io.StringIO())
    console.print(render(state))
    return console.export_text()


def styled(state: StageState, width: int = 80) -> list[tuple[str, object]]:
    """(text, style) of every segment the view renders to."""
    console = Console(width=width, force_terminal=True, file=io.StringIO())
    lines = console.render_lines(render(state), console.options.update_width(width))
    return [(seg.text, seg.style) for line in lines for seg in line if seg.text]


def is_red(style) -> bool:
    return style is not None and any(c is not None and c.name == "red" for c in (style.color, style.bgcolor))


# -- render -----------------------------------------------------------------------------------------------------

def test_render_shows_song_position_tempo_mode_params_and_activity():
    out = text_of(SHOW)
    for expected in ("Club night", "song 3/8", "3. Autumn Leaves", "next ▸ Blue Bossa",
                     "at next bar ▸ song 4. Blue Bossa, mode phrase", "12:3 · 123.4 BPM · MIDI clock · ▶ playing",
                     "mode duet · chord Am7/C · key E dorian 82 %", "temperature 0.90", "top_p 0.95", "velocity 100", "tempo_bpm 120.0 BPM",
                     "silence_steps 4", "notes in 123 (last E4 64) · out 98 (last G4 67)",
                     "step p99 850 µs · late/dropped 0 · OSC in 12, errors 0"):
        assert expected in out, expected
    assert "velocity 100 velocity" not in out and "silence_steps 4 steps" not in out
    # bar:beat and the rounded tempo in block digits, side by side, for the back of the stage
    big = [b + "    " + t for b, t in zip(big_text("12:3"), big_text("123"))]
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if big[0] in line)
    assert [big[r] in lines[at + r] for r in range(3)] == [True, True, True]


def test_render_calm_show_has_no_red_anywhere():
    assert not [t for t, style in styled(SHOW) if is_red(style)]


def test_render_puts_late_dropped_errors_and_messages_in_red():
    segs = styled(TROUBLE)
    red = "".join(t for t, style in segs if is_red(style))
    for warning in ("late/dropped 2", "OSC in 40, errors 3", "! recorder: disk full", "! model fell back to silence"):
        assert warning in red, warning
    assert "Night Train" not in red
    border = [style for t, style in segs if t.startswith("╭")]
    assert border and all(is_red(s) for s in border)
    out = text_of(TROUBLE)
    assert "3:2 · 96.0 BPM · internal · ■ stopped" in out and "mode call_response" in out


def test_render_notice_is_no_warning():
    segs = styled(StageState(notice="song 12_ (Enter selects)"))
    assert "song 12_ (Enter selects)" in "".join(t for t, _ in segs)
    assert not [t for t, style in segs if is_red(style)]


def test_render_one_warning_is_enough_for_red():
    for state in (StageState(late_dropped=1), StageState(osc_errors=1), StageState(messages=("x",))):
        assert any(is_red(style) for _, style in styled(state))


@pytest.mark.parametrize("width", [60, 38])
def test_render_narrow_terminal_stays_readable(width):
    out = text_of(SHOW, width)
    lines = out.splitlines()
    assert all(len(line) <= width for line in lines)
    for expected in ("3. Autumn Leaves", "Blue Bossa", "12:3", "123.4 BPM", "mode duet", "temperature 0.90",
                     "tempo_bpm 120.0 BPM", "silence_steps 4"):
        assert expected in out, (width, expected)  # parameters wrap between items, never inside one
    has_big = any(big_text("12:3")[0] in line for line in lines)
    assert has_big == (width == 60)


def test_render_big_digits_only_when_they_fit():
    count_in = text_of(StageState(bar=-1, beat=4, tempo_bpm=90))
    assert big_text("-1:4")[1] + "    " + big_text("90")[1] in count_in and "-1:4 · 90.0 BPM" in count_in
    huge = text_of(StageState(bar=123456, beat=1, tempo_bpm=300), width=46)  # 44 columns of digits: no room
    assert big_text("123456:1")[0] not in huge and "123456:1 · 300.0 BPM" in huge
    assert big_text("123456:1")[0] in text_of(StageState(bar=123456, beat=1, tempo_bpm=300), width=48)


def test_render_before_anything_is_known():
    out = text_of(StageState())
    assert "(no song)" in out and "step p99 -" in out and "1:1" in out and "mode -" in out


def test_render_learn_armed_and_waiting_transport():
    out = text_of(StageState(learn_armed="temperature", transport="waiting", clock_source="MIDI clock (freewheel)"))
    assert "MIDI learn: temperature ▸ move a controller" in out
    assert "MIDI clock (freewheel) · … waiting" in out


def test_render_on_an_ascii_terminal_writes_ascii_only():
    raw = io.BytesIO()
    file = io.TextIOWrapper(raw, encoding="ascii")
    console = Console(file=file, width=70, force_terminal=True, record=True)
    console.print(render(TROUBLE))
    file.flush()
    out = console.export_text()
    assert out.isascii() and "3:2 | 96.0 BPM" in out and "step p99 -" in out


def test_render_shows_a_state_it_cannot_lay_out_and_keeps_the_error():
    class Broken:
        def __str__(self):
            raise RuntimeError("no text")

    view = render(StageState(params={"custom": Broken()}))
    console = Console(record=True, width=80, force_terminal=True, file=io.StringIO())
    console.print(view)
    assert "stage view cannot show this state: RuntimeError('no text')" in console.export_text()
    assert isinstance(view.error, RuntimeError)


def test_state_is_a_snapshot():
    params = {"temperature": 0.5}
    messages = ["one"]
    state = StageState(params=params, messages=messages)
    params["temperature"] = 1.5
    messages.append("two")
    assert dict(state.params) == {"temperature": 0.5} and state.messages == ("one",)
    with pytest.raises(TypeError):
        state.params["temperature"] = 2.0
    with pytest.raises(AttributeError):
        state.bar = 5


def test_format_param_and_pitch_name():
    assert format_param("anchor_t", 0) == "anchor_t 0.00"
    assert format_param("top_k", 40) == "top_k 40 tokens"
    assert format_param("partner_channel", 2) == "partner_channel 2"
    assert format_param("mode", "duet") == "mode duet"
    assert format_param("reverb", "wet") == "reverb wet"
    assert [pitch_name(p) for p in (0, 60, 61, 127, None)] == ["C-1 0", "C4 60", "C#4 61", "G9 127", "-"]


# -- StageView and its display process ------------------------------------------------------------------------

def wait_for(predicate, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


class PtyReader:
    """Drains the master side of a pty on a thread (a full pty buffer would block the writer)."""

    def __init__(self, master: int) -> None:
        self.master, self.data, self._stop = master, bytearray(), threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if select.select([self.master], [], [], 0.05)[0]:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:  # EIO: every slave side closed
                    return
                if not chunk:
                    return
                self.data += chunk

    def text(self) -> str:
        return self.data.decode("utf-8", "replace")

    def plain(self) -> str:
        """What a person reads: the text without colours and cursor moves."""
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", self.text())

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(5)


@pytest.fixture
def pty_pair():
    master, slave = pty.openpty()
    yield master, slave
    for fd in (master, slave):
        try:
            os.close(fd)
        except OSError:
            pass


@pytest.fixture
def tty_out(pty_pair):
    """(a text stream on a pty's slave side -- a real TTY --, a PtyReader of what reaches the terminal)."""
    master, slave = pty_pair
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 80, 0, 0))  # 80 columns, 40 rows
    reader = PtyReader(master)
    stream = os.fdopen(os.dup(slave), "w", encoding="utf-8")
    yield stream, reader
    stream.close()
    reader.stop()


def child_pids() -> set[int]:
    return {int(p) for p in Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split()}


@pytest.mark.parametrize("switch", ["off", "not a terminal"])
def test_stage_view_headless_does_nothing(switch, tty_out):
    stream, reader = tty_out
    r, w = os.pipe()
    pipe = os.fdopen(w, "w")
    threads, children = threading.active_count(), child_pids()
    try:
        view = StageView(enabled=False, stream=stream) if switch == "off" else StageView(stream=pipe)
        with view:
            assert not view.active
            view.update(SHOW)
            time.sleep(0.5)
            assert view.latest is SHOW and threading.active_count() == threads and child_pids() == children
        pipe.flush()
        assert reader.text() == "" and not select.select([r], [], [], 0)[0]
    finally:
        pipe.close()
        os.close(r)


def test_stage_view_draws_the_latest_state_and_gives_the_terminal_back(tty_out):
    stream, reader = tty_out
    view = StageView(stream=stream)  # no flags: it sees the TTY itself
    assert view.start() and view.start()  # idempotent
    view.update(SHOW)
    assert wait_for(lambda: "Autumn Leaves" in reader.text())
    assert view.active and "12:3 · 123.4 BPM" in reader.plain()
    t0 = time.perf_counter()
    for bar in range(1, 200):  # update() never waits for the display
        view.update(StageState(song_title="Blue Bossa", bar=bar, beat=1))
    assert time.perf_counter() - t0 < 0.5
    assert wait_for(lambda: "199:1 · 120.0 BPM" in reader.plain())
    drawn = {b for b in range(1, 200) if f" {b}:1 · 120.0 BPM" in reader.plain()}
    assert len(drawn) < 10  # latest wins: the states the display never got to are skipped
    view.close()
    view.close()
    assert not view.active and view.error is None and view.errors == 0
    assert wait_for(lambda: reader.text().rstrip("\r\n").endswith(SHOW_CURSOR))
    assert "\x1b[?25l" in reader.text()  # hidden while the view ran


def test_stage_view_skips_a_state_it_cannot_send_and_keeps_going(tty_out):
    class Broken:
        def __str__(self):
            raise ValueError("bad value")

    stream, reader = tty_out
    with StageView(stream=stream) as view:
        view.update(StageState(params={"x": Broken()}))
        assert wait_for(lambda: view.errors == 1)
        view.update(SHOW)
        assert wait_for(lambda: "Autumn Leaves" in reader.text())
    assert isinstance(view.error, ValueError)


def test_stage_view_whose_display_was_killed_still_gives_the_cursor_back(tty_out):
    stream, reader = tty_out
    with StageView(stream=stream) as view:
        view.update(SHOW)
        assert wait_for(lambda: "Autumn Leaves" in reader.text())
        view._proc.kill()
        view.update(TROUBLE)
        assert wait_for(lambda: not view.active)
    assert "exit code -9" in str(view.error) or isinstance(view.error, OSError)
    assert wait_for(lambda: reader.text().rstrip("\r\n").endswith(SHOW_CURSOR))


def test_display_process_reads_states_shows_bad_lines_ignores_ctrl_c_and_ends_at_eof(tty_out):
    stream, reader = tty_out
    proc = subprocess.Popen([sys.executable, "-m", "liveperf.stage.display", "--refresh-hz", "50"],
                            stdin=subprocess.PIPE, stdout=stream, cwd=ROOT)
    try:
        proc.stdin.write(b"not a state\n")
        proc.stdin.flush()
        assert wait_for(lambda: "stage view cannot read this state" in reader.text(), 30)
        proc.stdin.write(encode_state(TROUBLE)[:20])  # half a line: nothing yet ...
        proc.stdin.flush()
        time.sleep(0.3)
        assert "Night Train" not in reader.text()
        proc.stdin.write(encode_state(TROUBLE)[20:])  # ... then the rest
        proc.stdin.flush()
        assert wait_for(lambda: "Night Train" in reader.text())
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
        assert proc.poll() is None  # Ctrl-C is the show's, not the display's
        proc.stdin.close()
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert wait_for(lambda: reader.text().rstrip("\r\n").endswith(SHOW_CURSOR))


def test_state_survives_the_trip_to_the_display_process():
    for state in (SHOW, TROUBLE, StageState(), StageState(notice="x", learn_armed="top_p", step_p99_us=12.5)):
        assert decode_state(encode_state(state)) == state
    with pytest.raises((ValueError, TypeError)):
        decode_state(b'{"no_such_field": 1}')
    with pytest.raises(ValueError):
        decode_state(b"[1, 2]")


# -- The key map (pure) -----------------------------------------------------------------------------------------
