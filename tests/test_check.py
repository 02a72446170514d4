"""`liveperf check`: GO / NO-GO, the JSON, exit codes; every broken part is found before the show and named."""

import json
import shutil
from pathlib import Path

import pytest

from liveperf.cli import main
from liveperf.models.onnx_model import shipped_models_dir

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not (shipped_models_dir() / "melody_dnn.onnx").exists(), reason="no shipped model")

SONG = '[[song]]\ntitle = "{title}"\ntempo_bpm = 120\nkey = "C major"\nmodel = "{model}"\n'


# OSC on any free port: the check binds what the setlist names, and another show on this machine may hold 9000.
FREE_OSC = "[show.osc]\nudp_port = 0\ntcp_port = 0\n"


def setlist(tmp_path, *songs, show="[show]\nlookahead_ms = 100\n" + FREE_OSC):
    p = tmp_path / "set.toml"
    p.write_text(show + "".join(SONG.format(title=t, model=m) for t, m in songs))
    return p


def test_go_writes_json_with_per_song_latency(tmp_path):
    # lookahead 100 ms: a budget no healthy machine misses, so this asserts behaviour, not speed.
    p = setlist(tmp_path, ("One", "melody_dnn"), ("Two", "melody_dnn"))
    out = tmp_path / "check.json"
    assert main(["check", str(p), "--json", str(out), "--steps", "200", "--no-midi"]) == 0
    data = json.loads(out.read_text())
    assert data["verdict"] == "GO"
    assert [s["title"] for s in data["songs"]] == ["One", "Two"]
    for s in data["songs"]:
        assert s["verdict"] == "GO" and s["step_us"]["n"] == 200
        assert 0 < s["step_us"]["p50"] <= s["step_us"]["p99"] <= s["step_us"]["max"]
        assert s["stage_budget_us"] == 100_000 and s["song_budget_us"] == 62_500


def test_bad_model_in_a_later_song_is_found_now(tmp_path, capsys):
    (tmp_path / "broken.onnx").write_bytes((shipped_models_dir() / "melody_dnn.onnx").read_bytes()[:5000])
    p = setlist(tmp_path, ("One", "melody_dnn"), ("Two", "melody_dnn"), ("Five", "broken.onnx"))
    out = tmp_path / "c.json"
    assert main(["check", str(p), "--json", str(out), "--steps", "100", "--no-midi"]) == 1
    text = capsys.readouterr().out
    assert "NO-GO" in text and "broken.onnx: not a loadable ONNX model" in text
    data = json.loads(out.read_text())
    assert [s["verdict"] for s in data["songs"]] == ["GO", "GO", "NO-GO"] and data["verdict"] == "NO-GO"


def test_model_with_wrong_metadata_is_refused(tmp_path, capsys):
    import onnx

    proto = onnx.load(str(shipped_models_dir() / "melody_dnn.onnx"))
    for prop in proto.metadata_props:
        if prop.key == "liveperf.vocabulary":
            prop.value = json.dumps(["HOLD", "OFF"] + [f"N{i}" for i in range(100)])
    onnx.save(proto, str(tmp_path / "vocab.onnx"))
    p = setlist(tmp_path, ("V", "vocab.onnx"))
    assert main(["check", str(p), "--steps", "100", "--no-midi"]) == 1
    assert "vocab.onnx: vocabulary differs" in capsys.readouterr().out


def test_broken_setlist_is_no_go(tmp_path, capsys):
    p = tmp_path / "bad.toml"
    p.write_text('[[song]]\ntitle = "x"\n')
    assert main(["check", str(p), "--no-midi"]) == 1
    assert "field 'tempo_bpm' is missing" in capsys.readouterr().out


def test_missing_take_is_no_go(tmp_path, capsys):
    p = tmp_path / "set.toml"
    p.write_text('[[song]]\ntitle = "T"\ntempo_bpm = 90\nkey = "A minor"\ntake = "gone.mid"\n')
    assert main(["check", str(p), "--steps", "100", "--no-midi"]) == 1
    assert "gone.mid: no such file" in capsys.readouterr().out


def test_require_midi_without_a_midi_system(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JACK_DEFAULT_SERVER", "liveperf-test-none")
    p = setlist(tmp_path, ("One", "melody_dnn"))
    assert main(["check", str(p), "--steps", "100"]) == 0  # a warning only
    assert "warning: no MIDI system" in capsys.readouterr().out
    assert main(["check", str(p), "--steps", "100", "--require-midi"]) == 1


@pytest.mark.jack
def test_midi_ports_open_on_jack(jack_server, tmp_path, capsys):
    p = setlist(tmp_path, ("One", "melody_dnn"))
    assert main(["check", str(p), "--steps", "100", "--require-midi"]) == 0
    assert "MIDI: jack-native: opened liveperf-check:out, liveperf-check:in" in capsys.readouterr().out


def test_demo_setlist_checks(tmp_path):
    shutil.copy(ROOT / "setlists" / "demo.toml", tmp_path / "demo.toml")
    text = (tmp_path / "demo.toml").read_text().replace("lookahead_ms = 8.0", "lookahead_ms = 100")
    (tmp_path / "demo.toml").write_text(text.replace("[[song]]", FREE_OSC + "\n[[song]]", 1))
    assert main(["check", str(tmp_path / "demo.toml"), "--steps", "200", "--no-midi"]) == 0


def test_each_mode_times_its_own_unit_of_work(tmp_path):
    text = (ROOT / "setlists" / "modes_tour.toml").read_text().replace("lookahead_ms = 8.0", "lookahead_ms = 100")
    p = tmp_path / "tour.toml"
    p.write_text(text.replace("[[song]]", FREE_OSC + "\n[[song]]", 1))
    out = tmp_path / "c.json"
    assert main(["check", str(p), "--json", str(out), "--steps", "200", "--no-midi"]) == 0
    songs = json.loads(out.read_text())["songs"]
    assert [s["mode"] for s in songs] == ["harmonize", "duet", "phrase", "phrase"]
    assert songs[0]["unit"].startswith("harmonize reaction") and songs[1]["unit"].startswith("duet: anticipation")
    assert "fused" in songs[1]["unit"]  # the shipped pair has its fused graph (liveperf.models.fused_duet)
    assert songs[2]["unit"].startswith("VAE phrase") and songs[2]["step_us"]["n"] == 50
    assert songs[3]["unit"].startswith("VAE phrase") and songs[3]["step_us"]["n"] == 50  # restyle


def test_osc_port_in_use_is_no_go(tmp_path, capsys):
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        p = setlist(tmp_path, ("One", "melody_dnn"),
                    show=f"[show]\nlookahead_ms = 100\n[show.osc]\nudp_port = {port}\ntcp_port = -1\n")
        out = tmp_path / "c.json"
        assert main(["check", str(p), "--json", str(out), "--steps", "100", "--no-midi"]) == 1
    text = capsys.readouterr().out
    assert f"OSC udp cannot listen on 127.0.0.1:{port}" in text and "NO-GO" in text
    assert json.loads(out.read_text())["songs"][0]["verdict"] == "GO"  # the songs are fine; the rig is not


def test_several_setlists_and_a_long_one_measured_once_per_kind_of_song(tmp_path, capsys):
    from liveperf.check import run_check

    a = setlist(tmp_path, *[(f"Song {i}", "melody_dnn") for i in range(40)])
    calls = []
    report = run_check(a, steps=100, warmup=10, midi=False, on_progress=lambda done, n: calls.append((done, n)))
    assert calls == [(i, 40) for i in range(1, 40)] and report.go
    # 40 songs that differ only in title: measured once, the others say whose figures they share.
    assert report.songs[0].step_us["n"] == 100 and all("(as song 1:" in s.unit for s in report.songs[1:])
    b_dir = tmp_path / "b"
    b_dir.mkdir()
    b = setlist(b_dir, ("Broken", "gone.onnx"))
    assert main(["check", str(a), str(b), "--no-midi", "--steps", "100", "--json", str(tmp_path / "c.json")]) == 1
    assert f"NO-GO: {a} GO, {b} NO-GO" in capsys.readouterr().out
    assert [d["verdict"] for d in json.loads((tmp_path / "c.json").read_text())] == ["GO", "NO-GO"]


def test_a_link_setlist_without_aalink_is_no_go_and_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    from liveperf import check

    p = setlist(tmp_path, ("One", "melody_dnn"), show='[show]\nlookahead_ms = 100\nclock = "link"\n' + FREE_OSC)
    monkeypatch.setattr(check, "find_spec", lambda name: None if name == "aalink" else object())
    assert main(["check", str(p), "--steps", "50", "--no-midi"]) == 1
    out = capsys.readouterr().out
    assert "! clock = \"link\" needs the link extra: pip install 'liveperf[link]'" in out and "NO-GO" in out

