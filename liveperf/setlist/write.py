"""Writing back into a setlist file: MIDI learn stores its mappings in ``[show] cc``.

The file is edited with tomlkit, so the performer's comments, order and formatting stay as they were; only the
``cc`` array changes. The new text is validated with the same parser the show uses before it replaces the file
(write to a temporary file in the same folder, fsync, ``os.replace``), so a crash mid-write leaves the old setlist
and never a broken one. Runs on the worker thread, never on the engine thread.
"""

from __future__ import annotations

import os
import tempfile
import tomllib
from pathlib import Path

import tomlkit

from liveperf.setlist.schema import parse_setlist


def store_cc_mappings(path: Path, mappings: list[dict]) -> None:
    """Replace ``[show] cc`` in the setlist at ``path`` with ``mappings`` ({"param", "channel" 1..16, "cc"})."""
    path = Path(path)
    doc = tomlkit.parse(path.read_text(encoding="utf-8"))
    if "show" not in doc:
        doc["show"] = tomlkit.table()
    array = tomlkit.array()
    for m in mappings:
        item = tomlkit.inline_table()
        item.update({"param": m["param"], "channel": int(m["channel"]), "cc": int(m["cc"])})
        array.append(item)
    array.multiline(len(mappings) > 1)
    doc["show"]["cc"] = array
    text = tomlkit.dumps(doc)
    parse_setlist(tomllib.loads(text), path)  # never write a setlist the show would refuse
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
