"""The command line: clear errors and exit codes before the show, model listing, ports without a MIDI system."""

import pytest

from liveperf.cli import main
from liveperf.models.onnx_model import shipped_models_dir

HAS_MODEL = (shipped_models_dir() / "melody_dnn.onnx").exists()


def test_bad_setlist_exits_2_with_message(tmp_path, capsys):
    p = tmp_path / "s.toml"
    p.write_text('[[song]]\ntitle = "x"\ntempo_bpm = 1000\nkey = "C major"\n')
    assert main(["play", str(p), "--backend", "file"]) == 2
    err = capsys.readouterr().err
    assert "s.toml: song 1 ('x'): field 'tempo_bpm' = 1000" in err


def test_broken_model_file_is_refused_before_the_show(tmp_path, capsys):
    (tmp_path / "bad.onnx").write_bytes(b"\x08\x01garbage")
    p = tmp_path / "s.toml"
    p.write_text('[[song]]\ntitle = "x"\ntempo_bpm = 100\nkey = "C major"\nmodel = "bad.onnx"\ntake = "t.mid"\n')
    assert main(["play", str(p), "--backend", "file"]) == 2
    assert "bad.onnx: not a loadable ONNX model" in capsys.readouterr().err


def test_missing_take_is_refused(tmp_path, capsys):
    p = tmp_path / "s.toml"
    p.write_text('[[song]]\ntitle = "x"\ntempo_bpm = 100\nkey = "C major"\ntake = "nope.mid"\n')
    assert main(["play", str(p), "--backend", "file"]) == 2
    assert "nope.mid: no such file" in capsys.readouterr().err


def test_unknown_song_selector(capsys):
    assert main(["play", "setlists/demo.toml", "--song", "9", "--backend", "file"]) == 2
    assert "no song number 9" in capsys.readouterr().err


def test_ports_without_midi_system(monkeypatch, capsys):
    monkeypatch.setenv("JACK_DEFAULT_SERVER", "liveperf-test-no-such-server")
    monkeypatch.setenv("JACK_NO_START_SERVER", "1")
    assert main(["ports"]) == 2
    assert "No MIDI system found" in capsys.readouterr().err


@pytest.mark.skipif(not HAS_MODEL, reason="shipped model missing")
def test_models_lists_the_shipped_model(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "melody_dnn" in out and "dnn_step" in out
    assert main(["models", "--json"]) == 0
    assert '"melody_dnn"' in capsys.readouterr().out


@pytest.mark.parametrize("field, value, says", [
    ("model", "nope", "field 'model' = 'nope'"),
    ("duet_model", "gone.onnx", "field 'duet_model' = 'gone.onnx'"),
    ("take", "model.txt", "field 'take' = 'model.txt': no shipped take of that name"),
    ("take", "missing.mid", "field 'take' = 'missing.mid'"),
])
def test_a_missing_model_or_take_names_the_setlist_the_song_and_the_field(tmp_path, capsys, field, value, says):
    p = tmp_path / "s.toml"
    p.write_text('[[song]]\ntitle = "ok"\ntempo_bpm = 100\nkey = "C major"\ntake = "demo_reel_a"\n'
                 f'[[song]]\ntitle = "x"\ntempo_bpm = 100\nkey = "C major"\n{field} = "{value}"\n')
    for command in (["play", str(p), "--backend", "file"], ["check", str(p), "--no-midi"]):
        code = main(command)
        out = capsys.readouterr()
        text = out.err + out.out
        assert code == (2 if command[0] == "play" else 1), text
        assert f"song 2 ('x'): {says}" in text or (command[0] == "check" and says in text), text
        if command[0] == "play":
            assert f"{p}: song 2 ('x')" in text
