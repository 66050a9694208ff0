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


@pytest.fixture
def saved_agent(tmp_path):
    """A (untrained) MATD3 speaker-listener agent saved like a training run saves its elite."""
    import json

    from marlkit import SyncPettingZooVecEnv, create_population, make_speaker_listener

    env = make_speaker_listener(continuous_actions=True)
    ids = env.possible_agents
    net = {"encoder_config": {"hidden_size": [16]}, "head_config": {"hidden_size": [16]}}
    (agent,) = create_population(
        "MATD3",
        [env.observation_space(a) for a in ids],
        [env.action_space(a) for a in ids],
        net,
        {"AGENT_IDS": ids},
        population_size=1,
        seed=3,
    )
    path = tmp_path / "elite.pt"
    agent.save_checkpoint(path)
    (tmp_path / "run.json").write_text(json.dumps({"env_name": "speaker-listener"}))
    with SyncPettingZooVecEnv([lambda: make_speaker_listener(continuous_actions=True)] * 3) as vec:
        vec.reset(seed=5)
        expected = agent.test(vec, loop=1)
    return path, expected


def test_evaluate_reports_the_agents_score(saved_agent, capsys):
    path, expected = saved_agent
    assert main(["evaluate", str(path), "--episodes", "3", "--seed", "5"]) == 0
    out = capsys.readouterr().out
    assert "over 3 episodes of speaker-listener" in out
    # the env is read from run.json beside the checkpoint, and the score is the agent's own test()
    assert float(out.split("mean score ")[1].split()[0]) == pytest.approx(expected, abs=1e-3)


def test_render_writes_a_gif_of_one_episode(saved_agent, tmp_path, capsys):
    from PIL import Image

    path, _ = saved_agent
    gif = tmp_path / "agent.gif"
    assert main(["render", str(path), "--out", str(gif), "--fps", "5"]) == 0
    assert f"wrote {gif}: 25 frames" in capsys.readouterr().out  # one 25-step Speaker Listener episode
    with Image.open(gif) as image:
        assert image.n_frames == 25
        assert image.size[0] > 100 and image.size[1] > 100
