"""Vector envs: batching, absent agents, same-step autoreset, sync == async, and worker lifetime."""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import types
import weakref
from pathlib import Path

import numpy as np
import pytest
from _vector_test_envs import CrashingEnv, DyingAgentEnv, SlowEnv, TurnTakingImageEnv
from gymnasium import spaces
from mpe2 import simple_speaker_listener_v4

from marlkit.envs.vector import (
    AsyncPettingZooVecEnv,
    SyncPettingZooVecEnv,
    WorkerError,
    batch_infos,
    make_multi_agent_vect_envs,
)
from marlkit.envs.worker import default_start_method, split_rows, unguarded_main_script

REPO = Path(__file__).resolve().parents[1]


def speaker_listener():
    return simple_speaker_listener_v4.parallel_env(continuous_actions=True)


def make_vec(kind: str, env_fns, **async_options):
    if kind == "sync":
        return SyncPettingZooVecEnv(env_fns)
    return AsyncPettingZooVecEnv(env_fns, **async_options)


def random_actions(env, rng, infos=None) -> dict[str, np.ndarray]:
    """One batch of actions for every agent; rows of absent agents hold NaN or -1 on purpose."""
    actions = {}
    for agent in env.agents:
        space = env.single_action_space(agent)
        if isinstance(space, spaces.Discrete):
            batch = rng.integers(0, space.n, env.num_envs)
        else:
            batch = rng.uniform(space.low, space.high, (env.num_envs, *space.shape)).astype(np.float32)
        if infos is not None:
            batch[~infos[agent]["active"]] = -1 if isinstance(space, spaces.Discrete) else np.nan
        actions[agent] = batch
    return actions


def assert_same(a, b, path="out"):
    """Deep equality of nested dicts/tuples/arrays, NaN == NaN, dtypes included."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{path}: keys {sorted(a)} != {sorted(b)}"
        for key in a:
            assert_same(a[key], b[key], f"{path}[{key!r}]")
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape, f"{path}: {a!r} vs {b!r}"
        if a.dtype == object:
            assert all(x == y for x, y in zip(a, b)), f"{path}: {a} != {b}"
        else:
            np.testing.assert_array_equal(a, b, err_msg=path)  # treats NaN == NaN
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def rollout(env, steps: int, seed: int, action_seed: int = 1) -> list:
    rng = np.random.default_rng(action_seed)
    outputs = [env.reset(seed=seed)]
    for _ in range(steps):
        outputs.append(env.step(random_actions(env, rng, infos=outputs[-1][-1])))
    return outputs


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_until_gone(pids, timeout: float = 5.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.02)
    return [pid for pid in pids if alive(pid)]


# ----- spaces and options ----------------------------------------------------------------------------------
def test_spaces_api():
    with SyncPettingZooVecEnv([speaker_listener] * 3) as env:
        assert env.num_envs == 3
        assert env.agents == env.possible_agents == ["speaker_0", "listener_0"]
        assert env.single_observation_space("listener_0") == spaces.Box(-np.inf, np.inf, (11,), np.float32)
        assert env.single_action_space("speaker_0") == spaces.Box(0.0, 1.0, (3,), np.float32)
        assert env.observation_space("listener_0").shape == (3, 11)
        assert env.action_space("listener_0").shape == (3, 5)
        with pytest.raises(ValueError, match=r"unknown agent 'nobody_0'.*speaker_0.*listener_0"):
            env.single_observation_space("nobody_0")
        with pytest.raises(ValueError, match="nobody_0"):
            env.action_space("nobody_0")
    with SyncPettingZooVecEnv([TurnTakingImageEnv] * 2) as env:
        assert env.action_space("even_0") == spaces.MultiDiscrete([3, 3])
        assert env.observation_space("odd_0").shape == (2, 4, 4, 1)
        assert env.observation_space("odd_0").dtype == np.uint8


def test_sub_envs_must_match():
    with pytest.raises(ValueError, match=r"sub-env 1 has agents \('speaker_0', 'listener_0'\), but sub-env 0"):
        SyncPettingZooVecEnv([DyingAgentEnv, speaker_listener])
    discrete = lambda: simple_speaker_listener_v4.parallel_env(continuous_actions=False)  # noqa: E731
    with pytest.raises(ValueError, match="sub-env 2 has action_spaces"):
        SyncPettingZooVecEnv([speaker_listener, speaker_listener, discrete])


def test_split_rows():
    assert split_rows(8, num_workers=2) == [range(0, 4), range(4, 8)]
    assert split_rows(5, num_workers=2) == [range(0, 2), range(2, 5)]
    assert split_rows(8, envs_per_worker=3) == [range(0, 3), range(3, 5), range(5, 8)]
    assert split_rows(2, num_workers=16) == [range(0, 1), range(1, 2)]
    assert len(split_rows(16)) == min(16, len(os.sched_getaffinity(0)))
    with pytest.raises(ValueError, match="disagree"):
        split_rows(8, num_workers=3, envs_per_worker=4)


def test_make_multi_agent_vect_envs_passes_env_kwargs():
    env = make_multi_agent_vect_envs(DyingAgentEnv, num_envs=3, death_step=1, max_steps=3)
    try:
        assert isinstance(env, AsyncPettingZooVecEnv) and env.num_envs == 3
        env.reset(seed=0)
        _, _, terminations, _, infos = env.step({"survivor_0": np.zeros((3, 2)), "doomed_0": np.zeros((3, 2))})
        np.testing.assert_array_equal(terminations["doomed_0"], [1, 1, 1])  # death_step=1 reached the env
    finally:
        env.close()


def test_make_multi_agent_vect_envs_passes_vector_env_options():
    env = make_multi_agent_vect_envs(DyingAgentEnv, num_envs=3, context="fork", num_workers=1, main_process_envs=1,
                                     timeout=30.0, spin=0.0, death_step=1, max_steps=3)
    try:
        assert (env.start_method, env.num_workers, env.main_process_envs, env.timeout, env.spin) == ("fork", 1, 1,
                                                                                                     30.0, 0.0)
        env.reset(seed=0)
        _, _, terminations, _, _ = env.step({"survivor_0": np.zeros((3, 2)), "doomed_0": np.zeros((3, 2))})
        np.testing.assert_array_equal(terminations["doomed_0"], [1, 1, 1])  # the env kwargs still reach the env
    finally:
        env.close()


def fake_main(monkeypatch, tmp_path, source=None, spec_name=None):
    """Make sys.modules["__main__"] look like a script (``source``) or a module run with ``-m``."""
    main = types.ModuleType("__main__")
    if source is not None:
        main.__file__ = str(tmp_path / "script.py")
        (tmp_path / "script.py").write_text(textwrap.dedent(source))
    main.__spec__ = None if spec_name is None else types.SimpleNamespace(name=spec_name, origin=main.__file__)
    monkeypatch.setitem(sys.modules, "__main__", main)


UNGUARDED = "from marlkit import make_multi_agent_vect_envs\nenv = make_multi_agent_vect_envs(print)\n"
GUARDED = """
    def main():
        pass

    if __name__ == "__main__":
        main()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux default")
def test_default_start_method_forks_only_for_an_unguarded_main_script(monkeypatch, tmp_path):
    assert default_start_method() == "forkserver"  # pytest's own entry point is guarded
    fake_main(monkeypatch, tmp_path, UNGUARDED)
    assert unguarded_main_script() == str(tmp_path / "script.py") and default_start_method() == "fork"
    fake_main(monkeypatch, tmp_path, UNGUARDED, spec_name="pkg.train")  # python -m pkg.train is re-imported too
    assert default_start_method() == "fork"
    fake_main(monkeypatch, tmp_path, UNGUARDED, spec_name="pkg.__main__")  # python -m pkg: never re-imported
    assert unguarded_main_script() is None and default_start_method() == "forkserver"
    fake_main(monkeypatch, tmp_path, GUARDED)
    assert unguarded_main_script() is None and default_start_method() == "forkserver"
    fake_main(monkeypatch, tmp_path)  # python -c, a REPL, a notebook kernel: no file to re-import
    assert unguarded_main_script() is None and default_start_method() == "forkserver"


def test_unguarded_script_where_fork_is_unsafe_gets_a_clear_error(monkeypatch, tmp_path):
    fake_main(monkeypatch, tmp_path, UNGUARDED)
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["spawn", "fork", "forkserver"])
    assert default_start_method() == "forkserver"
    with pytest.raises(RuntimeError) as err:
        AsyncPettingZooVecEnv([speaker_listener] * 2)
    assert str(err.value) == (
        f"{tmp_path / 'script.py'} has no `if __name__ == '__main__':` guard, and on darwin the workers of "
        "AsyncPettingZooVecEnv start with 'forkserver', which re-runs the main script in every worker (creating "
        "this env again). Put the script's code under `if __name__ == '__main__':`, or use SyncPettingZooVecEnv "
        "(no worker processes)."
    )


# ----- reset, seeding, and agreement with plain envs ---------------------------------------------------------
def test_reset_shapes_dtypes_and_per_env_seeds():
    with SyncPettingZooVecEnv([speaker_listener] * 3) as env:
        obs, infos = env.reset(seed=10)
        for i in range(3):
            expected, _ = speaker_listener().reset(seed=10 + i)
            for agent in env.agents:
                assert obs[agent].dtype == np.float32
                np.testing.assert_array_equal(obs[agent][i], expected[agent])
        assert obs["listener_0"].shape == (3, 11)
        assert infos["speaker_0"]["active"].tolist() == [True] * 3
        obs_list, _ = env.reset(seed=[12, 11, 10])
        np.testing.assert_array_equal(obs_list["listener_0"][2], obs["listener_0"][0])


def test_sync_matches_plain_envs_across_autoreset():
    """Ground truth: each row behaves exactly like its own env stepped by hand and reset when done."""
    rng = np.random.default_rng(0)
    plain = [speaker_listener() for _ in range(2)]
    plain_obs = [env.reset(seed=5 + i)[0] for i, env in enumerate(plain)]
    with SyncPettingZooVecEnv([speaker_listener] * 2) as env:
        env.reset(seed=5)
        for t in range(1, 31):
            actions = random_actions(env, rng)
            obs, rewards, terminations, truncations, infos = env.step(actions)
            for i, single in enumerate(plain):
                last_obs, r, _, trunc, _ = single.step({a: actions[a][i] for a in single.agents})
                for agent in env.agents:
                    assert rewards[agent][i] == np.float32(r[agent])
                    assert truncations[agent][i] == trunc[agent]
                if not single.agents:  # episode over: the vector env reset this row in the same step
                    plain_obs[i] = single.reset()[0]
                    assert infos["listener_0"]["_final_observation"][i]
                    np.testing.assert_array_equal(infos["listener_0"]["final_observation"][i], last_obs["listener_0"])
                else:
                    plain_obs[i] = last_obs
                for agent in env.agents:
                    np.testing.assert_array_equal(obs[agent][i], plain_obs[i][agent])
            assert ("final_observation" in infos["speaker_0"]) == (t == 25)


# ----- sync and async agree ----------------------------------------------------------------------------------
def test_sync_and_async_identical_on_speaker_listener():
    with SyncPettingZooVecEnv([speaker_listener for _ in range(3)]) as sync:
        expected = rollout(sync, steps=55, seed=3)  # two autoresets (episodes last 25 steps)
    env_fns = [lambda: simple_speaker_listener_v4.parallel_env(continuous_actions=True) for _ in range(3)]
    with AsyncPettingZooVecEnv(env_fns, num_workers=2) as env:
        assert env.num_workers == 2
        assert_same(rollout(env, steps=55, seed=3), expected)


@pytest.mark.parametrize(
    "env_fn",
    [lambda: DyingAgentEnv(death_step=2, max_steps=4), lambda: TurnTakingImageEnv(episode_length=3)],
    ids=["dying-agent", "turn-taking-uint8"],
)
def test_sync_and_async_identical_on_test_envs(env_fn):
    with SyncPettingZooVecEnv([env_fn] * 5) as sync:
        expected = rollout(sync, steps=13, seed=0)
    with AsyncPettingZooVecEnv([env_fn] * 5, envs_per_worker=2) as env:
        assert env.num_workers == 3
        assert_same(rollout(env, steps=13, seed=0), expected)


@pytest.mark.parametrize(
    "env_fn",
    [speaker_listener, lambda: DyingAgentEnv(death_step=2, max_steps=4), lambda: TurnTakingImageEnv(episode_length=3)],
    ids=["speaker-listener", "dying-agent", "turn-taking-uint8"],
)
def test_sync_and_async_identical_with_sub_envs_in_the_main_process(env_fn):
    with SyncPettingZooVecEnv([env_fn] * 5) as sync:
        expected = rollout(sync, steps=30, seed=0)
    with AsyncPettingZooVecEnv([env_fn] * 5, main_process_envs=2, num_workers=2) as env:
        assert (env.main_process_envs, env.num_workers) == (2, 2)
        assert [list(rows) for rows in env.worker_rows] == [[2, 3], [4]]
        assert_same(rollout(env, steps=30, seed=0), expected)


def test_default_split_counts_the_main_process_as_a_cpu(monkeypatch):
    import marlkit.envs.vector as vector

    monkeypatch.setattr(vector, "available_cpus", lambda: 2)
    with AsyncPettingZooVecEnv([speaker_listener] * 8) as env:
        assert (env.main_process_envs, env.num_workers) == (4, 1)
        assert "main_process_envs=4" in repr(env)
    with AsyncPettingZooVecEnv([speaker_listener] * 8, num_workers=2) as env:  # workers chosen: all in them
        assert (env.main_process_envs, env.num_workers) == (0, 2)
    with AsyncPettingZooVecEnv([speaker_listener]) as env:  # one sub-env: it runs in a worker
        assert (env.main_process_envs, env.num_workers) == (0, 1)
    monkeypatch.setattr(vector, "available_cpus", lambda: 1)
    with AsyncPettingZooVecEnv([speaker_listener] * 4) as env:
        assert (env.main_process_envs, env.num_workers) == (0, 1)


def test_main_process_envs_out_of_range():
    for bad in (-1, 3):
        with pytest.raises(ValueError, match=rf"main_process_envs={bad} must be between 0 and num_envs - 1 = 2"):
            AsyncPettingZooVecEnv([speaker_listener] * 3, main_process_envs=bad)


def test_exception_in_a_main_process_sub_env_keeps_the_workers_in_step():
    with AsyncPettingZooVecEnv([lambda: CrashingEnv(crash_step=2)] * 3, main_process_envs=1) as env:
        env.reset(seed=0)
        actions = {agent: np.zeros((3, 2)) for agent in env.agents}
        env.step(actions)
        with pytest.raises(ValueError, match="boom at step 2"):  # the sub-env's own exception, as in sync
            env.step(actions)
        assert not env._pending  # the workers' answers to that step were read, not left in the pipes
        env.reset(seed=0)
        env.step(actions)


def test_lambdas_with_closures_reach_the_workers():
    env_fns = [lambda i=i: DyingAgentEnv(death_step=1 + i, max_steps=9) for i in range(3)]
    with AsyncPettingZooVecEnv(env_fns, num_workers=2) as env:
        env.reset(seed=0)
        actions = {agent: np.zeros((3, 2)) for agent in env.agents}
        _, _, terminations, _, _ = env.step(actions)
        np.testing.assert_array_equal(terminations["doomed_0"], [1, 0, 0])
        _, _, terminations, _, _ = env.step(actions)
        np.testing.assert_array_equal(terminations["doomed_0"], [np.nan, 1, 0])


# ----- autoreset and absent agents ---------------------------------------------------------------------------
def test_autoreset_keeps_final_observation_and_info():
    with SyncPettingZooVecEnv([lambda: DyingAgentEnv(death_step=2, max_steps=3)] * 2) as env:
        obs, _ = env.reset(seed=0)
        offsets = obs["survivor_0"][:, 1].copy()
        actions = {agent: np.zeros((2, 2)) for agent in env.agents}
        for _ in range(2):
            obs, _, _, _, infos = env.step(actions)
            assert "final_observation" not in infos["survivor_0"]
        obs, rewards, terminations, truncations, infos = env.step(actions)

        info = infos["survivor_0"]
        # The step's outcome describes the finished episode ...
        np.testing.assert_array_equal(truncations["survivor_0"], [1, 1])
        np.testing.assert_allclose(rewards["survivor_0"], offsets)
        np.testing.assert_array_equal(info["final_observation"], np.c_[[3, 3], offsets, [0, 0]])
        np.testing.assert_array_equal(info["_final_observation"], [True, True])
        np.testing.assert_array_equal(info["final_info"]["t"], [3, 3])
        np.testing.assert_array_equal(info["_final_info"], [True, True])
        # ... while the observation row (and infos) already belong to the next episode.
        np.testing.assert_array_equal(obs["survivor_0"][:, 0], [0, 0])
        assert not np.array_equal(obs["survivor_0"][:, 1], offsets)
        np.testing.assert_array_equal(info["t"], [0, 0])
        # doomed_0 died at step 2, so it has no final observation: placeholder row, mask False.
        assert infos["doomed_0"]["_final_observation"].tolist() == [False, False]
        assert np.isnan(infos["doomed_0"]["final_observation"]).all()
        assert infos["doomed_0"]["_final_info"].tolist() == [True, True]  # the sub-env did end
        assert infos["doomed_0"]["active"].tolist() == [True, True]  # alive again in the new episode


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_absent_agent_with_float_observations(kind):
    with make_vec(kind, [lambda: DyingAgentEnv(death_step=2, max_steps=5)] * 2) as env:
        env.reset(seed=0)
        actions = {agent: np.zeros((2, 2), np.float32) for agent in env.agents}
        env.step(actions)
        obs, rewards, terminations, _, infos = env.step(actions)  # doomed_0 dies: last real observation
        assert infos["doomed_0"]["active"].all() and not np.isnan(obs["doomed_0"]).any()
        np.testing.assert_array_equal(terminations["doomed_0"], [1, 1])

        actions["doomed_0"][:] = np.nan  # ignored: the env asserts it gets no action for a dead agent
        obs, rewards, terminations, truncations, infos = env.step(actions)
        assert obs["doomed_0"].dtype == np.float32 and np.isnan(obs["doomed_0"]).all()
        assert not infos["doomed_0"]["active"].any()
        for out in (rewards, terminations, truncations):
            assert out["doomed_0"].dtype == np.float32 and np.isnan(out["doomed_0"]).all()
            assert not np.isnan(out["survivor_0"]).any()
        # An agent absent from every sub-env may be left out of the actions entirely.
        env.step({"survivor_0": np.zeros((2, 2))})


def test_absent_agent_with_uint8_observations_and_action_masks():
    with SyncPettingZooVecEnv([lambda: TurnTakingImageEnv(episode_length=4)] * 3) as env:
        obs, infos = env.reset(seed=0)
        assert obs["even_0"].dtype == np.uint8 and obs["even_0"].shape == (3, 4, 4, 1)
        offsets = obs["even_0"][:, 0, 0, 0].astype(int)
        assert infos["even_0"]["active"].all() and not infos["odd_0"]["active"].any()
        assert (obs["odd_0"] == 0).all()  # integer placeholder
        np.testing.assert_array_equal(infos["even_0"]["action_mask"], np.tile([1, 0, 1], (3, 1)))
        assert infos["even_0"]["action_mask"].dtype == np.int8
        assert "action_mask" not in infos["odd_0"]

        obs, rewards, terminations, _, infos = env.step({"even_0": np.array([2, 1, 0]), "odd_0": np.full(3, -7)})
        np.testing.assert_array_equal(obs["odd_0"][:, 0, 0, 0], 10 + offsets)
        assert (obs["even_0"] == 0).all() and infos["odd_0"]["active"].all()
        np.testing.assert_array_equal(rewards["even_0"], [2, 1, 0])
        assert np.isnan(rewards["odd_0"]).all()  # did not act, got no reward
        np.testing.assert_array_equal(terminations["odd_0"], [0, 0, 0])  # but the env did report it
        np.testing.assert_array_equal(infos["odd_0"]["action_mask"], np.tile([1, 1, 1], (3, 1)))
        np.testing.assert_array_equal(infos["odd_0"]["_action_mask"], [True] * 3)


def test_guide_custom_loop_dones_and_scores():
    """The dones/score bookkeeping of the guide's custom training loop, verbatim, on the async env."""
    num_envs = 4
    env = AsyncPettingZooVecEnv([lambda: DyingAgentEnv(death_step=2, max_steps=4) for _ in range(num_envs)])
    try:
        obs, info = env.reset(seed=0)
        scores = np.zeros(num_envs)
        completed_episode_scores = []
        for idx_step in range(4):
            action = {agent: np.full((num_envs, 2), 0.25, np.float32) for agent in env.agents}
            next_obs, reward, termination, truncation, info = env.step(action)
            agent_rewards = np.array(list(reward.values())).transpose()
            agent_rewards = np.where(np.isnan(agent_rewards), 0, agent_rewards)
            scores += np.sum(agent_rewards, axis=-1)
            dones = {}
            for agent_id in env.agents:
                terminated = termination.get(agent_id, True)
                truncated = truncation.get(agent_id, False)
                terminated = np.where(np.isnan(terminated), True, terminated).astype(bool)
                truncated = np.where(np.isnan(truncated), False, truncated).astype(bool)
                dones[agent_id] = terminated | truncated
            for idx, agent_dones in enumerate(zip(*dones.values())):
                if all(agent_dones):
                    completed_episode_scores.append(float(scores[idx]))
                    scores[idx] = 0
            if idx_step < 3:
                assert not completed_episode_scores
        # Each sub-env: 2 steps with both agents, then 2 with the survivor; reward = offset + 0.5.
        assert len(completed_episode_scores) == num_envs
        offsets = obs["survivor_0"][:, 1]
        np.testing.assert_allclose(completed_episode_scores, 6 * (offsets + 0.5), rtol=1e-5)
    finally:
        env.close()


def test_batch_infos():
    entries = [
        (0, {"n": 1, "x": 0.5, "mask": np.array([1, 0], np.int8), "name": "a", "nested": {"k": 2}}),
        (2, {"n": 3, "x": 1, "mask": np.array([0, 1], np.int8), "name": "b", "ragged": [1]}),
        (3, {"ragged": np.zeros(3)}),
    ]
    out = batch_infos(entries, num_envs=4)
    np.testing.assert_array_equal(out["n"], [1, 0, 3, 0])
    np.testing.assert_array_equal(out["_n"], [True, False, True, False])
    assert out["x"].dtype == np.float64 and out["x"].tolist() == [0.5, 0, 1, 0]  # int promoted, not truncated
    assert out["mask"].shape == (4, 2) and out["mask"].dtype == np.int8
    assert out["name"].dtype == object and out["name"].tolist() == ["a", None, "b", None]
    np.testing.assert_array_equal(out["nested"]["k"], [2, 0, 0, 0])
    np.testing.assert_array_equal(out["_nested"], [True, False, False, False])
    assert out["ragged"].dtype == object and out["ragged"][2] == [1]


# ----- errors ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_bad_actions_give_clear_errors(kind):
    with make_vec(kind, [speaker_listener] * 2) as env:
        good = {"speaker_0": np.zeros((2, 3)), "listener_0": np.zeros((2, 5))}
        with pytest.raises(RuntimeError, match=r"reset\(\) before step\(\)"):
            env.step(good)
        env.reset(seed=0)
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
        env.step(good)  # still usable after rejected actions
        env.step({"speaker_0": np.zeros((2, 3, 1)), "listener_0": np.zeros((2, 5, 1))})  # same size per row: reshaped


def test_worker_exception_surfaces_with_its_traceback():
    with AsyncPettingZooVecEnv([lambda: CrashingEnv(crash_step=2)] * 2, num_workers=2) as env:
        env.reset(seed=0)
        actions = {agent: np.zeros((2, 2)) for agent in env.agents}
        env.step(actions)
        with pytest.raises(WorkerError, match=r"(?s)raised during 'step'.*ValueError: boom at step 2") as error:
            env.step(actions)
        assert "_vector_test_envs.py" in str(error.value)  # the worker's traceback, not just the message
        with pytest.raises(RuntimeError, match=r"reset\(\)"):
            env.step(actions)
        env.reset(seed=0)  # the env recovers after a reset
        env.step(actions)


class _FailsInWorkers:
    """Builds an env in the parent (where the spaces are read) but raises inside worker processes."""

    def __init__(self):
        self.parent_pid = os.getpid()

    def __call__(self):
        if os.getpid() != self.parent_pid:
            raise RuntimeError("this factory cannot build an env here")
        return DyingAgentEnv()


def test_worker_failing_to_build_its_envs_raises_and_cleans_up():
    before = set(multiprocessing.active_children())
    with pytest.raises(WorkerError, match="(?s)raised during 'start'.*cannot build an env here"):
        AsyncPettingZooVecEnv([_FailsInWorkers()] * 2, num_workers=2)
    assert set(multiprocessing.active_children()) <= before


def test_killed_worker_raises_within_timeout():
    env = AsyncPettingZooVecEnv([speaker_listener] * 2, num_workers=2, timeout=10.0)
    env.reset(seed=0)
    os.kill(env.worker_pids[1], signal.SIGKILL)
    actions = {"speaker_0": np.zeros((2, 3)), "listener_0": np.zeros((2, 5))}
    start = time.monotonic()
    with pytest.raises(WorkerError, match="worker 1 .* was killed by signal SIGKILL"):
        env.step(actions)
    assert time.monotonic() - start < 5.0  # detected from the closed pipe, not by waiting for the timeout
    with pytest.raises(WorkerError, match="unusable"):
        env.reset()
    pids = env.worker_pids
    env.close()
    assert wait_until_gone(pids) == []


def test_hung_worker_times_out():
    env = AsyncPettingZooVecEnv([lambda: SlowEnv(delay=1.0)], timeout=0.2)
    assert env.timeout == 0.2  # (start-up got longer: on a loaded machine it can take more than 0.2 s)
    env.timeout = 10.0
    env.reset(seed=0)
    env.timeout = 0.2
    start = time.monotonic()
    with pytest.raises(WorkerError, match=r"did not answer 'step' within 0.2 s"):
        env.step({agent: np.zeros((1, 2)) for agent in env.agents})
    assert time.monotonic() - start < 0.9
    pids = env.worker_pids
    env.close()
    assert wait_until_gone(pids) == []


def test_interrupted_step_is_recovered_by_reset():
    with AsyncPettingZooVecEnv([lambda: SlowEnv(delay=0.8)] * 2, num_workers=2) as env:
        env.reset(seed=0)
        actions = {agent: np.zeros((2, 2)) for agent in env.agents}
        for pid in env.worker_pids:  # workers ignore Ctrl+C: interrupting is the parent's business
            os.kill(pid, signal.SIGINT)
        timer = threading.Timer(0.25, os.kill, (os.getpid(), signal.SIGINT))
        with pytest.raises(KeyboardInterrupt):
            timer.start()  # Ctrl+C while the workers are still stepping (each step sleeps 0.8 s)
            env.step(actions)
        timer.join()
        with pytest.raises(RuntimeError, match=r"reset\(\)"):
            env.step(actions)
        obs, _ = env.reset(seed=0)  # drops the interrupted step's answers, then resets
        np.testing.assert_array_equal(obs["survivor_0"][:, 0], [0, 0])
        obs, *_ = env.step(actions)
        np.testing.assert_array_equal(obs["survivor_0"][:, 0], [1, 1])


# ----- lifetime ------------------------------------------------------------------------------------------------
def test_close_is_idempotent_and_leaves_no_child_process():
    env = AsyncPettingZooVecEnv([speaker_listener] * 3, num_workers=2)
    pids = env.worker_pids
    shared_memory = weakref.ref(env._memory)
    assert len(pids) == 2 and all(alive(pid) for pid in pids)
    env.close()
    env.close()
    assert wait_until_gone(pids) == []
    gc.collect()
    assert shared_memory() is None, "close() must release the shared memory block"
    assert not {p.pid for p in multiprocessing.active_children()} & set(pids)
    with pytest.raises(RuntimeError, match="closed"):
        env.reset()

    with AsyncPettingZooVecEnv([speaker_listener] * 2) as env:
        pids = env.worker_pids
    assert wait_until_gone(pids) == []


def test_garbage_collection_closes_workers():
    env = AsyncPettingZooVecEnv([speaker_listener] * 2, num_workers=2)
    pids = env.worker_pids
    del env
    gc.collect()
    assert wait_until_gone(pids) == []


def test_workers_exit_when_the_parent_dies(tmp_path):
    # Two workers per start method. With "fork", the second worker inherits the parent's end of the first
    # worker's pipe, so the first one never sees EOF and must notice its parent died by itself.
    script = textwrap.dedent(
        """
        import os, signal, sys
        sys.path.insert(0, sys.argv[1])
        from mpe2 import simple_speaker_listener_v4
        from marlkit.envs.vector import AsyncPettingZooVecEnv

        pids = []
        for context in ("forkserver", "fork"):
            env = AsyncPettingZooVecEnv(
                [lambda: simple_speaker_listener_v4.parallel_env(continuous_actions=True)] * 2,
                num_workers=2,
                context=context,
            )
            env.reset(seed=0)
            pids += env.worker_pids
        with open(sys.argv[2], "w") as f:
            f.write(" ".join(map(str, pids)))
        os.kill(os.getpid(), signal.SIGKILL)  # no close(), no atexit: like a crashed or restarted kernel
        """
    )
    pid_file, log_file = tmp_path / "pids.txt", tmp_path / "log.txt"
    with open(log_file, "w") as log:  # a file, not a pipe: orphans holding a pipe would stall run()
        result = subprocess.run(
            [sys.executable, "-c", script, str(REPO), str(pid_file)], stdout=log, stderr=log, timeout=60
        )
    assert result.returncode == -signal.SIGKILL, log_file.read_text()
    pids = [int(pid) for pid in pid_file.read_text().split()]
    assert len(pids) == 4
    assert wait_until_gone(pids, timeout=5.0) == []


@pytest.mark.parametrize("options", [{}, {"main_process_envs": 1}, {"main_process_envs": 0}])
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_render_returns_sub_env_0_frame(kind, options):
    with make_vec(kind, [lambda: DyingAgentEnv(render_mode="rgb_array")] * 2, **options) as env:
        env.reset(seed=0)
        env.step({agent: np.zeros((2, 2)) for agent in env.agents})
        frame = env.render()
        assert frame.shape == (4, 4, 3) and (frame == 1).all()
        assert env.render_mode == "rgb_array"
