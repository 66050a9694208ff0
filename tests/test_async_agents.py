"""AsyncAgentsWrapper: IPPO on envs whose agents act at different times (async probe, tic-tac-toe)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces
from pettingzoo import ParallelEnv
from pettingzoo.classic.tictactoe.tictactoe import raw_env as tictactoe_raw_env

from marlkit.algorithms.ippo import IPPO
from marlkit.algorithms.wrappers import AsyncAgentsWrapper
from marlkit.envs.probes import AsyncAgentsEnv
from marlkit.envs.vector import SyncPettingZooVecEnv
from marlkit.hpo.mutation import Mutations
from marlkit.hpo.tournament import TournamentSelection
from marlkit.training.on_policy import train_multi_agent_on_policy

GAMMA = 0.9
NET = {"latent_dim": 32, "encoder_config": {"hidden_size": [32]}, "head_config": {"hidden_size": [32]}}
FAST = {"lr": 5e-3, "batch_size": 64, "ent_coef": 0.0, "gamma": GAMMA, "learn_step": 256, "net_config": NET}


pytestmark = pytest.mark.usefixtures("single_thread")  # tests/conftest.py


def wrapped_agent(env, seed=0, **kwargs):
    torch.manual_seed(seed)  # network initialisation and action sampling
    return AsyncAgentsWrapper(IPPO(
        [env.single_observation_space(a) for a in env.agents],
        [env.single_action_space(a) for a in env.agents],
        env.agents,
        seed=seed,
        **{**FAST, **kwargs},
    ))


def collect(agent, env, obs, info, vector_steps):
    for _ in range(vector_steps):
        action, log_prob, _, value = agent.get_action(obs, infos=info)
        next_obs, reward, termination, truncation, info = env.step(action)
        agent.store_transition(obs, action, log_prob, reward, termination, truncation, value, next_obs, info)
        obs = next_obs
    return obs, info


def async_env(ids=("agent_0", "agent_1"), continuous=False, num_envs=8):
    return SyncPettingZooVecEnv([lambda: AsyncAgentsEnv(agent_ids=ids, continuous=continuous)] * num_envs)


# ----------------------------------------------------------------------------- transition assembly
def test_transitions_run_from_decision_to_decision():
    """One sub-env, one episode (4 steps): fast_0 decides at every step, slow_0 at steps 0 and 2 and is paid
    a step later, while it waits. Each of slow_0's transitions must carry that delayed reward and end at its
    own next observation."""
    env = async_env(("fast_0", "slow_0"), continuous=True, num_envs=1)  # Box: rewards are (almost) never 0
    agent = wrapped_agent(env)
    obs, info = env.reset(seed=3)
    seen, rewards = [], []
    for _ in range(4):
        seen.append({a: (x.copy(), info[a]["active"].copy()) for a, x in obs.items()})
        action, log_prob, _, value = agent.get_action(obs, infos=info)
        assert np.isnan(log_prob["slow_0"][0]) == (not info["slow_0"]["active"][0])  # placeholder while waiting
        next_obs, reward, termination, truncation, info = env.step(action)
        rewards.append(reward)
        agent.store_transition(obs, action, log_prob, reward, termination, truncation, value, next_obs, info)
        obs = next_obs
    slow = agent.rollouts["slow"].stack()
    rows = slow.active[:, 0]
    assert rows.sum() == 2  # two decisions, stored when they closed
    np.testing.assert_allclose(slow.reward[rows, 0].numpy(), [rewards[1]["slow_0"][0], rewards[3]["slow_0"][0]])
    assert rewards[1]["slow_0"][0] != 0 and rewards[3]["slow_0"][0] != 0
    assert rewards[0]["slow_0"][0] == 0 and rewards[2]["slow_0"][0] == 0  # paid a step after deciding
    np.testing.assert_array_equal(slow.obs[rows, 0].numpy(), [seen[0]["slow_0"][0][0], seen[2]["slow_0"][0][0]])
    np.testing.assert_array_equal(slow.next_obs[rows, 0][0].numpy(), seen[2]["slow_0"][0][0])  # its next decision
    assert slow.terminated[rows, 0].tolist() == [False, True]
    fast = agent.rollouts["fast"].stack()
    assert int(fast.active.sum()) == 4 and fast.terminated[:, 0].tolist() == [False, False, False, True]
    np.testing.assert_allclose(fast.reward[:, 0].numpy(), [r["fast_0"][0] for r in rewards])


def test_open_transitions_are_dropped_when_the_env_is_reset():
    env = async_env(("fast_0", "slow_0"), num_envs=2)
    agent = wrapped_agent(env)
    obs, info = env.reset(seed=0)
    collect(agent, env, obs, info, 1)  # slow_0 decided at step 0 and now waits
    assert agent._pending["slow_0"].open.all()
    obs, info = env.reset(seed=1)  # e.g. a new generation: that decision's episode is abandoned
    collect(agent, env, obs, info, 4)
    slow = agent.rollouts["slow"].stack()
    assert int(slow.active.sum()) == 2 * 2  # only the new episode's two decisions per sub-env
    assert slow.terminated[slow.active].tolist() == [False, False, True, True]  # (step, sub-env) order


# ----------------------------------------------------------------------------- learning the async probe
@pytest.mark.parametrize(
    "ids, continuous", [(("agent_0", "agent_1"), False), (("fast_0", "slow_0"), True)], ids=["grouped-discrete", "box"]
)
def test_wrapper_learns_the_async_probe(ids, continuous):
    """V on each agent's own clock and the optimal actions of AsyncAgentsEnv.expected(). Dropping the rewards
    paid while an agent waits would give the slow agent V = 0; discounting per env step would give other V.

    Box actions: every decision scores 1 - E[(a - target)^2] = 1 - bias^2 - sigma^2 under the Gaussian policy,
    so the critic is compared with the value of the *current* policy, V* (1 - sigma^2), sigma from its log-std.
    """
    env = async_env(ids, continuous)
    agent = wrapped_agent(env, lr=2e-3, gae_lambda=0.5, action_std_init=-1.0)
    obs, info = env.reset(seed=0)
    for _ in range(15):
        obs, info = collect(agent, env, obs, info, agent.learn_step // env.num_envs)
        agent.learn()
    agent.set_training_mode(False)
    for name, ans in AsyncAgentsEnv(agent_ids=ids, continuous=continuous).expected(GAMMA).items():
        group = name.rsplit("_", 1)[0]
        x = torch.as_tensor(ans.obs)
        with torch.no_grad():
            values = agent.critics[group](x).numpy()
            greedy = agent.actors[group](x).mode().numpy().reshape(ans.optimal_actions.shape)
            variance = float(torch.exp(2 * agent.actors[group].log_std)) if continuous else 0.0
        assert np.allclose(values, ans.values * (1 - variance), atol=0.1), (name, values, ans.values, variance)
        assert np.allclose(greedy, ans.optimal_actions, atol=0.15), (name, greedy, ans.optimal_actions)
    best = sum(AsyncAgentsEnv(agent_ids=ids)._decisions(a) for a in ids)  # 1 point per decision
    assert agent.test(env) > best - (0.5 if continuous else 1e-6)


def test_train_multi_agent_on_policy_runs_the_wrapper(tmp_path):
    env = async_env(num_envs=4)
    pop = [wrapped_agent(env, seed=i, learn_step=64) for i in range(2)]
    pop, fitnesses = train_multi_agent_on_policy(
        env, "async_agents", "IPPO", pop, max_steps=512, evo_steps=256, tournament=None, mutation=None,
        verbose=False, run_dir=tmp_path, seed=0,
    )
    assert len(fitnesses) == 2 and all(isinstance(a, AsyncAgentsWrapper) for a in pop)
    # max_steps is each member's budget: 2 generations x 256 steps each, learning every 64 steps
    assert [a.steps[-1] for a in pop] == [512, 512] and all(a.learn_counter == 8 for a in pop)
    assert all(len(a.scores) > 0 for a in pop)  # completed training episodes were scored


# ----------------------------------------------------------------------------- the rest of the contract
def test_wrapper_forwards_the_agent_contract(tmp_path):
    env = async_env(num_envs=2)
    wrapper = wrapped_agent(env)
    inner = wrapper.agent
    assert wrapper.hp_names == inner.hp_names and wrapper.learn_step == inner.learn_step
    wrapper.lineage = [(1, 0)]  # what tournament selection does to a child
    wrapper.set_hyperparameter("lr", 0.01)
    assert inner.lineage == [(1, 0)] and inner.optimizers["actors/agent"].param_groups[0]["lr"] == 0.01
    assert "lineage" not in vars(wrapper)

    twin = wrapper.clone(index=3)
    assert isinstance(twin, AsyncAgentsWrapper) and twin.index == 3 and wrapper.index == 0
    assert twin.agent is not inner and twin.actors["agent"] is not inner.actors["agent"]

    fitness = wrapper.test(env)
    assert inner.fitness == [fitness]

    wrapper.save_checkpoint(tmp_path / "w.pt")
    loaded = IPPO.load(tmp_path / "w.pt")
    obs, info = env.reset(seed=0)
    wrapper.set_training_mode(False)
    rewrapped = AsyncAgentsWrapper(loaded)
    rewrapped.set_training_mode(False)
    for a, x in wrapper.get_action(obs, info)[0].items():
        np.testing.assert_array_equal(x, rewrapped.get_action(obs, info)[0][a])
    with pytest.raises(TypeError, match="wraps IPPO"):
        AsyncAgentsWrapper(object())


# ----------------------------------------------------------------------------- a real turn-based game
class TurnBasedParallelEnv(ParallelEnv):
    """A PettingZoo AEC board game (tic-tac-toe) as a parallel env in the guide's convention: only the player
    to move gets an observation (its board planes, flattened to float32) and an ``action_mask`` in its infos.
    When the game ends both players get their final observation and reward (+1 / -1 / 0). An illegal move
    raises, so an agent that ignores the mask fails the test. (``aec_to_parallel`` refuses turn-based games.)"""

    metadata = {"name": "turn_based_tictactoe"}

    def __init__(self):
        self.aec = tictactoe_raw_env()
        self.possible_agents = list(self.aec.possible_agents)
        self.agents = []

    def observation_space(self, agent):
        return spaces.Box(0.0, 1.0, (18,), np.float32)

    def action_space(self, agent):
        return spaces.Discrete(9)

    def _observe(self, agent):
        observation = self.aec.observe(agent)
        return observation["observation"].astype(np.float32).reshape(-1), observation["action_mask"]

    def _to_move(self):
        agent = self.aec.agent_selection
        obs, mask = self._observe(agent)
        return {agent: obs}, {a: ({"action_mask": mask} if a == agent else {}) for a in self.agents}

    def reset(self, seed=None, options=None):
        self.aec.reset(seed=seed)
        self.agents = list(self.possible_agents)
        return self._to_move()

    def step(self, actions):
        mover = self.aec.agent_selection
        move = int(actions[mover])
        if not self._observe(mover)[1][move]:
            raise ValueError(f"{mover} played the illegal move {move}")
        self.aec.step(move)
        rewards = {a: float(self.aec.rewards[a]) for a in self.agents}
        terminations = {a: bool(self.aec.terminations[a]) for a in self.agents}
        truncations = {a: bool(self.aec.truncations[a]) for a in self.agents}
        if any(terminations.values()) or any(truncations.values()):
            obs = {a: self._observe(a)[0] for a in self.agents}
            infos = {a: {} for a in self.agents}
            self.agents = []
            return obs, rewards, terminations, truncations, infos
        obs, infos = self._to_move()
        return obs, rewards, terminations, truncations, infos


def test_tictactoe_the_loser_is_paid_while_waiting():
    """The winner's move ends the game; the loser's -1 arrives while it waits and must reach its last move."""
    env = SyncPettingZooVecEnv([TurnBasedParallelEnv] * 8)
    agent = wrapped_agent(env)
    obs, info = env.reset(seed=0)
    collect(agent, env, obs, info, 64)
    batch = agent.rollouts["player"].stack()  # player_1 and player_2 share one actor and critic
    rewards = batch.reward[batch.active]
    wins, losses = int((rewards == 1).sum()), int((rewards == -1).sum())
    assert wins > 0 and wins == losses and float(rewards.sum()) == 0.0
    ended = batch.terminated & batch.active
    assert int(ended[:, :8].sum()) == int(ended[:, 8:].sum())  # each finished game closes both players' moves


def test_tictactoe_trains_with_tournament_and_mutation(tmp_path):
    env = SyncPettingZooVecEnv([TurnBasedParallelEnv] * 4)
    pop = [wrapped_agent(env, seed=i, learn_step=64) for i in range(3)]
    tournament = TournamentSelection(2, elitism=True, population_size=3, eval_loop=1, rand_seed=0)
    mutation = Mutations(no_mutation=0.2, architecture=0.2, new_layer_prob=0.2, parameters=0.2, activation=0.2,
                         rl_hp=0.0, rand_seed=0)
    pop, fitnesses = train_multi_agent_on_policy(
        env, "tictactoe", "IPPO", pop, max_steps=3 * 128, evo_steps=128, tournament=tournament,
        mutation=mutation, verbose=False, run_dir=tmp_path, seed=0, eval_steps=9,
    )
    assert len(fitnesses) == 3
    assert all(isinstance(a, AsyncAgentsWrapper) for a in pop)  # clones of wrappers are wrappers
    assert len({id(a.agent) for a in pop}) == 3 and all(a.lineage for a in pop)
