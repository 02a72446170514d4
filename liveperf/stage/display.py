"""The stage view's display process (``python -m liveperf.stage.display``, started by ``StageView``): reads JSON
states from stdin and draws the newest with rich's Live. A process of its own, so that laying out a frame (~1.5 ms of
pure Python) never holds the show's GIL; see ``liveperf.stage.view``."""

from __future__ import annotations

import os
import select
import signal
import sys
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text

from liveperf.stage.view import REFRESH_HZ, WARN, decode_state, render


def _display_main(refresh_hz: float) -> int:
    """The display process: read JSON states from stdin, draw the newest with rich's Live on stdout, at most
    ``refresh_hz`` times a second and only when the state or the terminal size changed; end at end of input."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the show's to handle; we end when it closes our pipe
    console = Console()
    live = Live(console=console, auto_refresh=False, transient=False, redirect_stdout=False, redirect_stderr=False)
    fd = sys.stdin.fileno()
    period_s = 1.0 / refresh_hz
    pending = b""
    line: bytes | None = None
    drawn: tuple | None = None
    live.start()
    try:
        while True:
            if select.select([fd], [], [], period_s)[0]:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    return 0
                *lines, pending = (pending + chunk).split(b"\n")
                if lines:
                    line = lines[-1]  # latest wins
            if line is None or (line, console.size) == drawn:
                continue
            try:
                view: Any = render(decode_state(line))
            except (ValueError, TypeError) as e:  # a bug on the sending side: say so on screen, keep drawing
                view = Text(f"stage view cannot read this state: {e}", style=WARN)
            live.update(view, refresh=True)
            drawn = (line, console.size)
    finally:
        live.stop()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="liveperf stage view display process (started by StageView)")
    parser.add_argument("--refresh-hz", type=float, default=REFRESH_HZ)
    sys.exit(_display_main(parser.parse_args().refresh_hz))
