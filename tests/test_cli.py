"""The command line's error paths: one line, exit code 2."""

import pytest

from marlkit.cli import main


def test_unknown_preset_is_one_line_and_exit_2(capsys):
    assert main(["train", "--preset", "pong"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown preset 'pong'" in err


def test_missing_checkpoint_and_config(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "missing.pt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_not_a_checkpoint(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["evaluate", str(bad)]) == 2
    assert "not a readable marlkit checkpoint" in capsys.readouterr().err


def test_bad_flag_exits_2():
    with pytest.raises(SystemExit) as exc:
        main(["train", "--max-steps", "many"])
    assert exc.value.code == 2
