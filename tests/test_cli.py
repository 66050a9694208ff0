"""The command line's error paths: one line, exit code 2."""

import numpy as np
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


def test_train_with_yaml_overrides_writes_the_run_directory(tmp_path, capsys):
    import json

    import torch
    import yaml

    config = tmp_path / "hp.yaml"
    config.write_text(
        "INIT_HP:\n  BATCH_SIZE: 8\n  LEARN_STEP: 4\n"
        "NET_CONFIG:\n  encoder_config: {hidden_size: [20]}\n  head_config: {hidden_size: [16]}\n"
        "MUT_P: {NO_MUT: 1.0, ARCH_MUT: 0.0, NEW_LAYER: 0.0, PARAMS_MUT: 0.0, ACT_MUT: 0.0, RL_HP_MUT: 0.0}\n"
        "train:\n  learning_delay: 0\n"
    )
    run_dir = tmp_path / "run"
    argv = ["train", "--config", str(config), "--max-steps", "32", "--evo-steps", "16", "--num-envs", "2",
            "--pop-size", "2", "--run-dir", str(run_dir), "--no-progress",
            "--final-episodes", "6"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    # the batched env by default; the elite is scored on it and on real mpe2, on the same fresh episodes
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["env_impl"] == "batched"
    scores = meta["final_evaluation"]["scores"]
    assert scores["batched"] == pytest.approx(scores["mpe2"], abs=1e-3)
    assert f"final elite on the same 6 fresh episodes: batched {scores['batched']:.3f}, mpe2" in out
    assert f"elite checkpoint: {run_dir / 'elite.pt'}" in out
    # and next to the baselines that expose the centre trick, with the wrong-message ablation
    communication = meta["final_evaluation"]["communication"]
    assert set(communication) == {"trained team", "trained team, speaker shown a wrong goal", "centre listener",
                                  "listener told the goal"}
    assert all(np.isfinite(v) and v < 0 for v in communication.values())
    assert communication["trained team"] == pytest.approx(scores["batched"], abs=1e-3)  # the same episodes
    assert "does it communicate? trained team" in out and "; centre listener" in out
    for name in ("fitness.png", "hyperparameters.png", "elite.pt", "generations.jsonl", "config.yaml"):
        assert (run_dir / name).is_file(), name
    written = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert written["INIT_HP"]["BATCH_SIZE"] == 8  # merged, not replaced: the preset's other keys stay
    assert written["INIT_HP"]["EXPL_NOISE"] == {"speaker_0": 0.1, "listener_0": 1.2}
    assert written["NET_CONFIG"] == {"encoder_config": {"hidden_size": [20]}, "head_config": {"hidden_size": [16]}}
    assert written["train"]["max_steps"] == 32 and written["train"]["learning_delay"] == 0
    generations = [json.loads(line) for line in (run_dir / "generations.jsonl").read_text().splitlines()]
    assert [m["hyperparameters"]["batch_size"] for m in generations[0]["members"]] == [8, 8]
    # --max-steps is each member's budget: 2 generations of 16 steps per member, 64 env steps in all
    assert [m["steps"] for m in generations[-1]["members"]] == [32, 32] and generations[-1]["global_steps"] == 64
    elite = torch.load(run_dir / "elite.pt", weights_only=True)
    net = elite["networks"]["actors/speaker_0"]["config"]["net_config"]  # MUT_P above: no mutation
    assert (net["encoder_config"]["hidden_size"], net["head_config"]["hidden_size"]) == ([20], [16])


def test_train_on_mpe2_gives_the_same_run_as_on_the_batched_env(tmp_path, capsys):
    import json

    def fitnesses(env_impl):
        run_dir = tmp_path / env_impl
        argv = ["train", "--env-impl", env_impl, "--max-steps", "96", "--evo-steps", "24", "--num-envs", "2",
                "--pop-size", "2", "--run-dir", str(run_dir), "--no-progress", "--final-episodes", "0"]
        assert main(argv) == 0
        assert json.loads((run_dir / "run.json").read_text())["env_impl"] == env_impl
        lines = (run_dir / "generations.jsonl").read_text().splitlines()
        return [[m["fitness"] for m in json.loads(line)["members"]] for line in lines]

    expected = fitnesses("mpe2")
    np.testing.assert_allclose(fitnesses("batched"), expected, rtol=0, atol=1e-3)
    assert main(["train", "--preset", "space-invaders", "--env-impl", "batched"]) == 2
    assert "runs its env as one of ['pettingzoo'], not 'batched'" in capsys.readouterr().err


def test_train_discrete_speaker_listener(tmp_path, capsys):
    import json

    import torch

    run_dir = tmp_path / "run"
    argv = ["train", "--discrete", "--max-steps", "32", "--evo-steps", "16", "--num-envs", "2", "--pop-size", "2",
            "--run-dir", str(run_dir), "--no-progress", "--final-episodes", "4"]
    assert main(argv) == 0
    elite = torch.load(run_dir / "elite.pt", weights_only=True)
    assert elite["action_spaces"][0]["type"] == "Discrete"
    scores = json.loads((run_dir / "run.json").read_text())["final_evaluation"]["scores"]
    assert scores["batched"] == pytest.approx(scores["mpe2"], abs=1e-3)
    assert main(["train", "--preset", "space-invaders", "--discrete"]) == 2
    assert "has no continuous/discrete action switch" in capsys.readouterr().err


def test_train_config_with_an_unknown_key_or_hyperparameter(tmp_path, capsys):
    config = tmp_path / "hp.yaml"
    config.write_text("INIT_HP:\n  BATCH_SIZE: 8\nNETCONFIG: {}\n")
    assert main(["train", "--config", str(config)]) == 2
    assert "unknown top-level key(s) ['NETCONFIG']" in capsys.readouterr().err
    config.write_text("INIT_HP:\n  BATCH_SIZ: 8\n")
    assert main(["train", "--config", str(config), "--run-dir", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "BATCH_SIZ" in err
