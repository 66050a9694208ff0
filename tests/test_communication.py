"""MADDPG and MATD3 learn to communicate on the two-step communication probe; a deaf listener cannot.

The probe (``marlkit.envs.probes.CommunicationEnv``) keeps the two features that make Simple Speaker
Listener hard: the message arrives one step after it is sent (the speaker learns only through its critic's
bootstrapped value), and a listener that ignores it still earns something (0.5 discrete, 0.75 continuous).
"""

import numpy as np
import pytest
import torch

from marlkit import MADDPG, MATD3, MultiAgentReplayBuffer, SyncPettingZooVecEnv
from marlkit.envs.probes import CommunicationEnv
from marlkit.envs.probes.communication import IGNORING_LISTENER_SCORE, LISTENER, SPEAKER
from marlkit.training.off_policy import next_obs_for_buffer

FIELDS = ["state", "action", "reward", "next_state", "done"]
NET = {"latent_dim": 32, "encoder_config": {"hidden_size": [32]}, "head_config": {"hidden_size": [32]}}


@pytest.fixture(autouse=True)
def _single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def vec_env(continuous: bool, num_envs: int, cue_shift: int = 0) -> SyncPettingZooVecEnv:
    return SyncPettingZooVecEnv([lambda: CommunicationEnv(continuous, cue_shift) for _ in range(num_envs)])


def train(algo_cls, continuous: bool, seed: int = 0, steps: int = 4_000, num_envs: int = 8, deaf: bool = False,
          learns: int = 2, batch_size: int = 64, memory_size: int = 10_000, **algo_kwargs):
    """Train a team; ``deaf`` zeroes the message in the listener's observations (a listener that cannot
    hear). Returns the agent."""
    torch.manual_seed(seed)
    env = vec_env(continuous, num_envs)
    agent = algo_cls(
        [env.single_observation_space(a) for a in env.agents],
        [env.single_action_space(a) for a in env.agents],
        env.agents,
        vect_noise_dim=num_envs,
        batch_size=batch_size,
        seed=seed,
        # As in the speaker-listener preset: the speaker explores its message narrowly (what it sends while
        # training is what it sends greedily), the listener widely; the critics learn fast.
        **{"net_config": NET, "lr_actor": 1e-3, "lr_critic": 1e-2, "gamma": 0.9, "tau": 0.05, "O_U_noise": False,
           "expl_noise": {SPEAKER: 0.1, LISTENER: 0.3}, **algo_kwargs},
    )
    memory = MultiAgentReplayBuffer(memory_size, FIELDS, env.agents, seed=seed)
    rng = np.random.default_rng(seed)

    def hear(obs):
        if deaf:
            obs = dict(obs)
            obs[LISTENER] = obs[LISTENER] * np.array([0.0, 1.0], np.float32)
        return obs

    obs, info = env.reset(seed=seed)
    obs = hear(obs)
    for step in range(steps // num_envs):
        if step < steps // num_envs // 5:  # random warm-up: the critic sees every message and answer
            action = {a: np.stack([env.single_action_space(a).sample() for _ in range(num_envs)]) for a in env.agents}
            if not continuous:
                action = {a: rng.integers(0, 2, num_envs) for a in env.agents}
            raw = action
        else:
            action, raw = agent.get_action(obs, infos=info)
        next_obs, reward, term, trunc, info = env.step(action)
        next_obs = hear(next_obs)
        info = {a: {**i, "final_observation": hear({a: i["final_observation"]})[a]} if "final_observation" in i
                else i for a, i in info.items()}
        memory.save_to_memory(obs, raw, reward, next_obs_for_buffer(next_obs, info), term, is_vectorised=True)
        if step >= steps // num_envs // 5:
            for _ in range(learns):
                agent.learn(memory.sample(batch_size))
        obs = next_obs
    env.close()
    return agent


def team_score(agent, continuous: bool, cue_shift: int = 0, deaf: bool = False, episodes: int = 64) -> float:
    """Mean episode reward of the greedy team on fresh episodes (per agent: both get the same reward)."""
    env = vec_env(continuous, episodes, cue_shift)
    agent.set_training_mode(False)
    obs, _ = env.reset(seed=10_000)
    total = np.zeros(episodes)
    for _ in range(CommunicationEnv.episode_length):
        if deaf:
            obs = dict(obs)
            obs[LISTENER] = obs[LISTENER] * np.array([0.0, 1.0], np.float32)
        action, _ = agent.get_action(obs)
        obs, reward, *_ = env.step(action)
        total += reward[LISTENER]
    env.close()
    return float(total.mean())


def test_probe_answers():
    for continuous in (False, True):
        env = CommunicationEnv(continuous)
        obs, _ = env.reset(seed=3)
        cue = int(np.argmax(obs[SPEAKER]))
        np.testing.assert_array_equal(obs[LISTENER], [0.0, 0.0])
        message = (np.array([0.7], np.float32) if cue else np.array([-0.7], np.float32)) if continuous else cue
        obs, reward, term, *_ = env.step({SPEAKER: message, LISTENER: env.action_space(LISTENER).sample()})
        assert reward[LISTENER] == reward[SPEAKER] == 0.0 and not term[LISTENER]
        assert obs[LISTENER][1] == 1.0
        answer = (np.array([0.5 if obs[LISTENER][0] > 0 else -0.5], np.float32)) if continuous else int(obs[LISTENER][0])
        obs, reward, term, *_ = env.step({SPEAKER: message, LISTENER: answer})
        assert reward[LISTENER] == pytest.approx(1.0) and term[LISTENER]
    # the ablation shows the speaker the other cue
    env = CommunicationEnv(cue_shift=1)
    obs, _ = env.reset(seed=3)
    assert int(np.argmax(obs[SPEAKER])) != env._cue


@pytest.mark.parametrize("continuous", [False, True])
@pytest.mark.parametrize("algo_cls", [MADDPG, MATD3])
def test_team_learns_to_communicate(algo_cls, continuous):
    agent = train(algo_cls, continuous)
    ignoring = IGNORING_LISTENER_SCORE[continuous]
    score = team_score(agent, continuous)
    # near the optimum of 1, and clearly above what any listener ignoring the message can get
    assert score >= 0.95, f"{algo_cls.algo}: team scores {score:.3f}; a listener ignoring the message gets {ignoring}"
    # the listener follows the message: show the speaker the wrong cue and the team fails
    wrong = team_score(agent, continuous, cue_shift=1)
    assert wrong <= 0.3, f"{algo_cls.algo}: with the wrong cue the team still scores {wrong:.3f}"


@pytest.mark.parametrize("continuous", [False, True])
def test_a_listener_that_cannot_hear_fails(continuous):
    agent = train(MATD3, continuous, deaf=True)
    score = team_score(agent, continuous, deaf=True)
    ignoring = IGNORING_LISTENER_SCORE[continuous]
    assert score <= ignoring + 0.05, f"a deaf listener scored {score:.3f} > {ignoring}: the probe leaks the cue"
