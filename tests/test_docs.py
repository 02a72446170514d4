"""The manual (issue 18): the README stays short, the reference pages are the code's own tables, the OSC table
names exactly the addresses the code handles and sends, and the manual builds with ``mkdocs build --strict``."""

from __future__ import annotations

import inspect
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from liveperf import docs_ref
from liveperf.io import osc_feedback, osc_protocol
from liveperf.io.osc_table import OSC_IN, OSC_OUT

ROOT = Path(__file__).resolve().parent.parent


def test_readme_is_short():
    assert (ROOT / "README.md").stat().st_size <= 12 * 1024


def test_reference_pages_are_the_code_tables(tmp_path):
    assert docs_ref.main(["--check"]) == 0, "run: python -m liveperf.docs_ref"
    docs_ref.main(["--out", str(tmp_path)])
    setlist = (tmp_path / "setlist.md").read_text()
    assert "| `max_copy_bars` | `2` |" in setlist and "| `title` | **required** |" in setlist
    assert "| `style_mood` | -1 – 1 | 0 |" in (tmp_path / "parameters.md").read_text()


def test_osc_table_names_what_the_code_handles_and_sends():
    parser = inspect.getsource(osc_protocol.command_for)
    handled = set(re.findall(r'"(/liveperf/[a-z/]+)"', parser)) | set(osc_protocol.TRIGGERS)
    handled.add(osc_protocol.OSC_PARAM_PREFIX + "<name>")
    assert {a for a, *_ in OSC_IN} == handled
    sent = set(re.findall(r'"(/liveperf/[a-z/]+)"', inspect.getsource(osc_feedback.OscFeedback)))
    osc_server = (ROOT / "liveperf" / "io" / "osc.py").read_text()
    sent |= set(re.findall(r'_reply_dgram\("(/liveperf/[a-z/]+)"', osc_server))
    assert {a for a, *_ in OSC_OUT} == sent


def test_the_manual_builds_strictly(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    assert mkdocs, "mkdocs is not installed: bash scripts/setup.sh test installs the docs extra"
    run = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "WARNING" not in run.stderr, run.stderr
    assert (tmp_path / "site" / "reference" / "osc" / "index.html").exists()
