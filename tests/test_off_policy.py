"""MADDPG and MATD3 learn the probe environments' known values and policies."""

import numpy as np
import pytest
import torch

from marlkit import MADDPG, MATD3, MultiAgentReplayBuffer, SyncPettingZooVecEnv
from marlkit.envs.probes import PROBE_ENVS
from marlkit.training.off_policy import next_obs_for_buffer

FIELDS = ["state", "action", "reward", "next_state", "done"]
NET = {"latent_dim": 32, "encoder_config": {"hidden_size": [32]}, "head_config": {"hidden_size": [32]}}


pytestmark = pytest.mark.usefixtures("single_thread")  # tests/conftest.py


def random_actions(env, rng):
    """Uniform random (action, raw_action) for every agent: a warm-up that covers the whole action range,
    so the critic sees the far-from-optimal actions the probe asks about."""
    action = {}
    for a in env.agents:
        space = env.single_action_space(a)
        if hasattr(space, "n"):
            action[a] = rng.integers(0, space.n, env.num_envs)
        else:
            action[a] = rng.uniform(space.low, space.high, (env.num_envs, *space.shape)).astype(np.float32)
    return action, action


def train_on_probe(
    algo_cls,
    probe,
    steps=2400,
    num_envs=8,
    batch_size=64,
    seed=0,
    probe_kwargs=None,
    warmup=0.25,
    learns=1,
    learn_from=0.25,
    **algo_kwargs,
):
    """Run ``steps`` env steps on a probe, the first ``warmup`` fraction with random actions, learning
    ``learns`` times per vector step after the first ``learn_from`` fraction; returns (agent, probe env)."""
    torch.manual_seed(seed)
    probe_kwargs = probe_kwargs or {}
    proto = PROBE_ENVS[probe](**probe_kwargs)
    env = SyncPettingZooVecEnv([lambda: PROBE_ENVS[probe](**probe_kwargs) for _ in range(num_envs)])
    obs, info = env.reset(seed=seed)
    agent = algo_cls(
        [env.single_observation_space(a) for a in env.agents],
        [env.single_action_space(a) for a in env.agents],
        env.agents,
        vect_noise_dim=num_envs,
        batch_size=batch_size,
        seed=seed,
        **{
            "net_config": NET,
            "gamma": 0.9,
            "lr_actor": 1e-3,
            "lr_critic": 3e-3,
            "expl_noise": 0.3,
            "tau": 0.05,
            **algo_kwargs,
        },
    )
    memory = MultiAgentReplayBuffer(10_000, FIELDS, env.agents, seed=seed)
    rng = np.random.default_rng(seed)
    for step in range(steps // num_envs):
        if step < warmup * steps // num_envs:
            action, raw = random_actions(env, rng)
        else:
            action, raw = agent.get_action(obs, infos=info)
        next_obs, reward, term, trunc, info = env.step(action)
        memory.save_to_memory(obs, raw, reward, next_obs_for_buffer(next_obs, info), term, is_vectorised=True)
        if step >= learn_from * steps // num_envs:  # like learning_delay: the critic first sees random data
            for _ in range(learns):
                agent.learn(memory.sample(batch_size))
        obs = next_obs
    env.close()
    return agent, proto


def critic_values(agent, agent_id, ans):
    order = agent.critic_order[agent_id]
    critic = agent.critics[agent.policy_key[agent_id]]
    with torch.no_grad():
        return critic(
            [torch.as_tensor(ans.joint_obs[b]) for b in order], [torch.as_tensor(ans.joint_actions[b]) for b in order]
        ).numpy()


def greedy_actions(agent, agent_id, obs):
    agent.set_training_mode(False)
    action, _ = agent.get_action({agent_id: obs})
    return action[agent_id]


def assert_learned(agent, proto, q_tol, action_tol=0.2):
    """Q within ``q_tol`` times the range of the true Q values (at least 1); greedy actions optimal.

    Continuous actions: within ``action_tol`` of the optimum. The probes' reward is 1 - (a - t)^2, so
    0.2 means at least 96% of the optimal reward; near the top of that parabola a Q error of 0.03 moves
    the critic's argmax by ~0.15, so a tighter bound would test the critic's noise, not the policy.
    """
    for agent_id, ans in proto.expected(agent.gamma).items():
        q = critic_values(agent, agent_id, ans)
        scale = max(1.0, float(np.ptp(ans.q_values)))
        np.testing.assert_allclose(q, ans.q_values, atol=q_tol * scale, err_msg=f"Q of {agent_id}")
        if ans.optimal_actions is not None:
            act = greedy_actions(agent, agent_id, ans.obs)
            if np.issubdtype(np.asarray(ans.optimal_actions).dtype, np.integer):
                np.testing.assert_array_equal(act, ans.optimal_actions, err_msg=f"greedy actions of {agent_id}")
            else:
                np.testing.assert_allclose(act, ans.optimal_actions, atol=action_tol, err_msg=f"actions of {agent_id}")


@pytest.mark.parametrize("algo_cls", [MADDPG, MATD3])
@pytest.mark.parametrize("probe", ["constant_reward", "obs_dependent_reward", "discounted_reward"])
def test_critic_learns_known_values(algo_cls, probe):
    agent, proto = train_on_probe(algo_cls, probe, steps=2400)
    assert_learned(agent, proto, q_tol=0.1)


@pytest.mark.parametrize("algo_cls", [MADDPG, MATD3])
@pytest.mark.parametrize("continuous", [False, True])
@pytest.mark.parametrize("probe", ["fixed_obs_policy", "obs_dependent_policy"])
def test_policy_learns_optimal_actions(algo_cls, probe, continuous):
    agent, proto = train_on_probe(
        algo_cls, probe, steps=3200, learns=3, warmup=0.5, lr_critic=1e-2, probe_kwargs={"continuous": continuous}
    )
    assert_learned(agent, proto, q_tol=0.1)


@pytest.mark.parametrize("algo_cls", [MADDPG, MATD3])
@pytest.mark.parametrize("continuous", [False, True])
def test_centralised_critic_solves_coordination(algo_cls, continuous):
    agent, proto = train_on_probe(
        algo_cls,
        "coordination",
        steps=3200,
        learns=3,
        warmup=0.5,
        lr_critic=1e-2,
        probe_kwargs={"continuous": continuous},
    )
    assert proto.requires_centralised_critic
    assert_learned(agent, proto, q_tol=0.1)


def test_image_observations_learn():
    net = {"latent_dim": 32, "encoder_config": {"channel_size": [8], "kernel_size": [3], "stride_size": [1]}}
    agent, proto = train_on_probe(
        MADDPG, "obs_dependent_reward", steps=2400, probe_kwargs={"image": True}, net_config=net
    )
    assert_learned(agent, proto, q_tol=0.1)
