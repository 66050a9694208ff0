"""SpeakerListenerVecEnv: step-for-step equal to mpe2 (seeding, autoresets, both action types), the
vector-env API, bad input, and training on it gives the same run as training on mpe2."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces
from mpe2 import simple_speaker_listener_v4
from pettingzoo.utils.env_logger import EnvLogger

from marlkit import (
    MultiAgentReplayBuffer,
    Mutations,
    SpeakerListenerVecEnv,
    SyncPettingZooVecEnv,
    TournamentSelection,
    create_population,
    train_multi_agent_off_policy,
    train_multi_agent_on_policy,
)

AGENTS = ["speaker_0", "listener_0"]


def mpe2_env(continuous_actions: bool = True, max_cycles: int = 25, render_mode: str | None = None):
    return simple_speaker_listener_v4.parallel_env(
        continuous_actions=continuous_actions, max_cycles=max_cycles, render_mode=render_mode
    )


def mpe2_vec(num_envs: int, continuous_actions: bool = True, max_cycles: int = 25, render_mode: str | None = None):
    """The reference: real mpe2 envs in marlkit's sync vector env (tested against plain envs in test_vector)."""
    return SyncPettingZooVecEnv([lambda: mpe2_env(continuous_actions, max_cycles, render_mode)] * num_envs)


def random_actions(env, rng, spread: float = 0.25) -> dict[str, np.ndarray]:
    """Random actions; continuous ones reach ``spread`` beyond the Box on each side (to exercise clipping)."""
    actions = {}
    for agent in env.agents:
        space = env.single_action_space(agent)
        if isinstance(space, spaces.Discrete):
            actions[agent] = rng.integers(0, space.n, env.num_envs)
        else:
            low, high = -spread, 1 + spread
            actions[agent] = rng.uniform(low, high, (env.num_envs, *space.shape)).astype(np.float32)
    return actions


def assert_close(expected, actual, path="out"):
    """Nested equality: same keys, dtypes and shapes; float arrays equal to 1e-5 (NaN == NaN), others exactly."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and expected.keys() == actual.keys(), f"{path}: {sorted(expected)} vs {actual}"
        for key in expected:
            assert_close(expected[key], actual[key], f"{path}[{key!r}]")
    elif isinstance(expected, (tuple, list)):
        assert len(expected) == len(actual), path
        for i, (x, y) in enumerate(zip(expected, actual)):
            assert_close(x, y, f"{path}[{i}]")
    else:
        assert isinstance(actual, np.ndarray), f"{path}: {type(actual)}"
        assert expected.dtype == actual.dtype and expected.shape == actual.shape, f"{path}: {expected!r} vs {actual!r}"
        if expected.dtype.kind == "f":
            np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5, err_msg=path)
        else:
            np.testing.assert_array_equal(actual, expected, err_msg=path)


@pytest.fixture(autouse=True)
def _quiet_mpe2():
    # mpe2's ClipOutOfBoundsWrapper logs a warning for every out-of-Box action.
    EnvLogger.suppress_output()
    yield
    EnvLogger.unsuppress_output()


# ----- exactly mpe2 ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("continuous_actions", [True, False])
def test_equals_mpe2_over_many_steps_and_autoresets(continuous_actions):
    """16 sub-envs x 1,000 steps = 16,000 random-action steps, 640 episodes: everything equal to 1e-5."""
    num_envs, steps = 16, 1_000
    rng = np.random.default_rng(7)
    with mpe2_vec(num_envs, continuous_actions) as ref, SpeakerListenerVecEnv(num_envs, continuous_actions) as env:
        assert_close(ref.reset(seed=42), env.reset(seed=42))
        autoresets = 0
        for t in range(steps):
            if t == 610:  # an unseeded reset mid-episode continues every sub-env's own random stream
                assert_close(ref.reset(), env.reset())
            actions = random_actions(env, rng)
            expected = ref.step(actions)
            actual = env.step(actions)
            assert_close(expected, actual, f"step {t}")
            autoresets += int(actual[4]["speaker_0"].get("_final_observation", np.zeros(1)).sum())
        assert autoresets >= 600


def test_single_sub_env_equals_a_plain_mpe2_loop():
    """Seeding convention without marlkit's sync env in between: sub-env i is parallel_env().reset(seed=s+i),
    and after its episode ends it continues as that env's next unseeded reset()."""
    rng = np.random.default_rng(0)
    plain = [mpe2_env() for _ in range(3)]
    plain_obs = [single.reset(seed=100 + i)[0] for i, single in enumerate(plain)]
    with SpeakerListenerVecEnv(3) as env:
        obs, _ = env.reset(seed=100)
        for t in range(60):
            for i in range(len(plain)):
                for agent in AGENTS:
                    np.testing.assert_allclose(obs[agent][i], plain_obs[i][agent], rtol=0, atol=1e-5)
            actions = random_actions(env, rng, spread=0.0)
            obs, rewards, terminations, truncations, infos = env.step(actions)
            for i, single in enumerate(plain):
                last, r, term, trunc, _ = single.step({agent: actions[agent][i] for agent in AGENTS})
                for agent in AGENTS:
                    assert rewards[agent][i] == pytest.approx(r[agent], abs=1e-5)
                    assert terminations[agent][i] == term[agent] == 0
                    assert truncations[agent][i] == trunc[agent]
                plain_obs[i] = single.reset()[0] if not single.agents else last
            assert bool(truncations["listener_0"].all()) == ((t + 1) % 25 == 0)


def test_seeds_per_sub_env_and_determinism():
    with SpeakerListenerVecEnv(3) as env:
        obs, _ = env.reset(seed=10)
        again, _ = env.reset(seed=[12, 11, 10])
        np.testing.assert_array_equal(again["listener_0"][2], obs["listener_0"][0])
        np.testing.assert_array_equal(again["listener_0"][1], obs["listener_0"][1])
        with SpeakerListenerVecEnv(3) as other:
            np.testing.assert_array_equal(other.reset(seed=10)[0]["listener_0"], obs["listener_0"])
        first, _ = env.reset(seed=[5, None, 5])  # None: that sub-env's generator continues
        np.testing.assert_array_equal(first["listener_0"][0], first["listener_0"][2])


@pytest.mark.parametrize("max_cycles", [1, 7])
def test_max_cycles_truncates(max_cycles):
    with SpeakerListenerVecEnv(2, max_cycles=max_cycles) as env, mpe2_vec(2, max_cycles=max_cycles) as ref:
        rng = np.random.default_rng(1)
        assert_close(ref.reset(seed=0), env.reset(seed=0))
        for t in range(3 * max_cycles):
            actions = random_actions(env, rng)
            result = env.step(actions)
            assert_close(ref.step(actions), result)
            assert result[3]["speaker_0"].tolist() == [float((t + 1) % max_cycles == 0)] * 2


# ----- the vector-env API ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("continuous_actions", [True, False])
def test_spaces_and_api_match_the_mpe2_vector_env(continuous_actions):
    with SpeakerListenerVecEnv(4, continuous_actions) as env, mpe2_vec(4, continuous_actions) as ref:
        assert env.agents == env.possible_agents == ref.agents == AGENTS
        assert env.num_envs == 4
        for agent in AGENTS:
            assert env.single_observation_space(agent) == ref.single_observation_space(agent)
            assert env.single_action_space(agent) == ref.single_action_space(agent)
            assert env.observation_space(agent) == ref.observation_space(agent)
            assert env.action_space(agent) == ref.action_space(agent)
        assert env.metadata["name"] == ref.metadata["name"]
        with pytest.raises(ValueError, match="unknown agent 'bob'"):
            env.single_action_space("bob")
        _, infos = env.reset(seed=0)
        assert infos["listener_0"]["active"].tolist() == [True] * 4
        assert "continuous" in repr(env) if continuous_actions else "discrete" in repr(env)
    assert env.closed
    with pytest.raises(RuntimeError, match="closed"):
        env.reset()


def test_out_of_box_actions_are_clipped_as_mpe2_does():
    rng = np.random.default_rng(3)
    with SpeakerListenerVecEnv(4) as wide, SpeakerListenerVecEnv(4) as clipped:
        wide.reset(seed=1)
        clipped.reset(seed=1)
        for _ in range(10):
            actions = random_actions(wide, rng, spread=5.0)
            actions["listener_0"][0] = [np.inf, -np.inf, np.inf, -3.0, 2.0]
            inside = {agent: np.clip(a, 0, 1) for agent, a in actions.items()}
            assert_close(clipped.step(inside), wide.step(actions))


def test_render_is_mpe2_drawing_sub_env_0():
    rng = np.random.default_rng(0)
    with SpeakerListenerVecEnv(2, render_mode="rgb_array") as env, mpe2_vec(2, render_mode="rgb_array") as ref:
        env.reset(seed=3)
        ref.reset(seed=3)
        for t in range(30):  # across an autoreset (the camera's range is reset with the episode)
            actions = random_actions(env, rng, spread=0.0)
            env.step(actions)
            ref.step(actions)
            if t in (0, 12, 26):
                frame = env.render()
                assert frame.shape == (700, 700, 3) and frame.dtype == np.uint8
                np.testing.assert_array_equal(frame, ref.render())
    with SpeakerListenerVecEnv(1) as env, pytest.raises(ValueError, match="render_mode"):
        env.reset(seed=0)
        env.render()


# ----- bad input ----------------------------------------------------------------------------------------------------
def test_bad_actions_give_clear_errors():
    with SpeakerListenerVecEnv(2) as env, SpeakerListenerVecEnv(2) as twin:
        good = {"speaker_0": np.full((2, 3), 0.5), "listener_0": np.full((2, 5), 0.5)}
        with pytest.raises(RuntimeError, match=r"reset\(\) before step\(\)"):
            env.step(good)
        env.reset(seed=0)
        twin.reset(seed=0)
        with pytest.raises(ValueError, match="no entry for agent 'listener_0'"):
            env.step({"speaker_0": good["speaker_0"]})
        with pytest.raises(ValueError, match=r"actions\['speaker_0'\] has shape \(3, 3\), expected \(2, 3\)"):
            env.step({**good, "speaker_0": np.zeros((3, 3))})
        with pytest.raises(ValueError, match=r"actions\['listener_0'\] has shape \(2, 4\)"):
            env.step({**good, "listener_0": np.zeros((2, 4))})
        with pytest.raises(ValueError, match=r"unknown agent\(s\) \['speeker_0'\]"):
            env.step({**good, "speeker_0": np.zeros((2, 3))})
        with pytest.raises(TypeError, match="dict"):
            env.step([good["speaker_0"], good["listener_0"]])
        nan = good["listener_0"].copy()
        nan[1, 3] = np.nan
        with pytest.raises(ValueError, match=r"actions\['listener_0'\] holds NaN in sub-envs \[1\]"):
            env.step({**good, "listener_0": nan})
        # Rejected actions change nothing: the env still steps exactly as its twin.
        assert_close(twin.step(good), env.step(good))
        reshaped = {"speaker_0": np.full((2, 3, 1), 0.5), "listener_0": np.full((2, 5, 1), 0.5)}
        assert_close(twin.step(good), env.step(reshaped))  # same size per row: reshaped


def test_bad_discrete_actions_give_clear_errors():
    with SpeakerListenerVecEnv(3, continuous_actions=False) as env:
        env.reset(seed=0)
        good = {"speaker_0": np.array([0, 1, 2]), "listener_0": np.array([0, 4, 2])}
        with pytest.raises(ValueError, match=r"actions\['speaker_0'\] has \[3\] in sub-envs \[1\]; expected .* 0..2"):
            env.step({**good, "speaker_0": np.array([0, 3, 2])})
        with pytest.raises(ValueError, match=r"actions\['listener_0'\] has \[-1\] in sub-envs \[2\]; .* 0..4"):
            env.step({**good, "listener_0": np.array([0, 1, -1])})
        with pytest.raises(ValueError, match=r"actions\['listener_0'\] holds NaN in sub-envs \[0\]"):
            env.step({**good, "listener_0": np.array([np.nan, 1.0, 2.0])})
        env.step(good)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="num_envs must be a positive int"):
        SpeakerListenerVecEnv(0)
    with pytest.raises(ValueError, match="max_cycles must be a positive int"):
        SpeakerListenerVecEnv(2, max_cycles=0)
    with pytest.raises(ValueError, match="render_mode must be None or one of"):
        SpeakerListenerVecEnv(2, render_mode="rgb")


# ----- the training functions take it unchanged --------------------------------------------------------------------
NET_CONFIG = {"encoder_config": {"hidden_size": [16]}, "head_config": {"hidden_size": [16]}}


def _train(env, algo: str, tmp_path, name: str):
    torch.set_num_threads(1)
    torch.manual_seed(0)  # IPPO samples its actions from torch's global generator
    env.reset(seed=0)
    init_hp = {
        "BATCH_SIZE": 16,
        "LEARN_STEP": 4 if algo != "IPPO" else 64,
        "MEMORY_SIZE": 2000,
        "POP_SIZE": 2,
        "AGENT_IDS": env.agents,
    }
    pop = create_population(
        algo,
        [env.single_observation_space(a) for a in env.agents],
        [env.single_action_space(a) for a in env.agents],
        NET_CONFIG,
        init_hp,
        population_size=2,
        num_envs=env.num_envs,
        seed=0,
    )
    common = dict(
        INIT_HP=init_hp,
        max_steps=400,
        evo_steps=200,
        eval_loop=1,
        tournament=TournamentSelection(2, True, 2, 1, rand_seed=0),
        mutation=Mutations(0.5, 0.0, 0.0, 0.5, 0.0, 0.0, rand_seed=0),
        verbose=False,
        seed=0,
        run_dir=tmp_path / name,
    )
    if algo == "IPPO":
        pop, fitnesses = train_multi_agent_on_policy(env, "speaker_listener", algo, pop, **common)
    else:
        memory = MultiAgentReplayBuffer(2000, ["state", "action", "reward", "next_state", "done"], env.agents, seed=0)
        pop, fitnesses = train_multi_agent_off_policy(
            env, "speaker_listener", algo, pop, memory, learning_delay=50, **common
        )
    return fitnesses, pop[0].test(env, loop=1)


@pytest.mark.parametrize("algo", ["MATD3", "IPPO"])
def test_training_on_it_equals_training_on_mpe2(algo, tmp_path):
    with mpe2_vec(4) as ref:
        expected = _train(ref, algo, tmp_path, "mpe2")
    with SpeakerListenerVecEnv(4) as env:
        actual = _train(env, algo, tmp_path, "batched")
    np.testing.assert_allclose(actual[0], expected[0], rtol=0, atol=1e-3)
    assert actual[1] == pytest.approx(expected[1], abs=1e-3)
