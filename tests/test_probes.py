"""Probe environments: PettingZoo API, determinism, and known answers that agree with the dynamics.

The central checks roll the envs out and compare with ``expected()``:
* Bellman: for every decision an agent makes, Q(decision) == reward until its next decision
  + gamma * V(its next observation) (0 at the end), where every reachable situation must be in the table;
* the optimal policy's discounted return from every decision equals V there; a random policy gets less.
"""

import itertools
import warnings

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test
from pettingzoo.utils import BaseParallelWrapper

from marlkit.envs.probes import (
    PROBE_ENVS,
    AsyncAgentsEnv,
    ContextualCueEnv,
    CoordinationEnv,
    DiscountedRewardEnv,
    ProbeAnswer,
    ProbeEnv,
)

GAMMA = 0.9
VARIANTS = [  # every probe x {Discrete, Box} actions x {vector, image} observations
    pytest.param(
        name, continuous, image, id=f"{name}-{'box' if continuous else 'discrete'}-{'img' if image else 'vec'}"
    )
    for name, continuous, image in itertools.product(PROBE_ENVS, (False, True), (False, True))
]
POLICY_PROBES = [name for name, cls in PROBE_ENVS.items() if cls.optimal_is_action_dependent]
MIXED_IDS = ("agent_0", "agent_1", "other_agent_0")


class FillWaitingObservations(BaseParallelWrapper):
    """Test-only adapter: a zero observation for agents that wait this step.

    PettingZoo's ``parallel_api_test`` indexes ``obs[agent]`` for every live agent, which the asynchronous
    convention (observations only for agents that act next) deliberately breaks. Everything else the API
    test checks (agent bookkeeping, space identity, reset/step signatures, termination) still runs.
    """

    def _fill(self, observations):
        return {
            a: observations.get(a, np.zeros_like(self.observation_space(a).low)) for a in self.agents or observations
        }

    def reset(self, seed=None, options=None):
        observations, infos = self.env.reset(seed=seed, options=options)
        return self._fill(observations), infos

    def step(self, actions):
        observations, *rest = self.env.step(actions)
        return (self._fill(observations), *rest)


def action_key(action) -> float:
    return round(float(np.asarray(action).reshape(-1)[0]), 6)


def situation_key(agent, obs, actions, answer: ProbeAnswer):
    """Key of a decision: the joint situation if the answers are joint, else the agent's own."""
    if answer.joint_obs is None:
        return (obs[agent].tobytes(), action_key(actions[agent]))
    return tuple((a, obs[a].tobytes(), action_key(actions[a])) for a in sorted(answer.joint_obs))


def acts_optimally(ans: ProbeAnswer) -> np.ndarray:
    """(n,) bool: is the agent's action in each row its optimal action?"""
    return np.isclose(ans.actions, ans.optimal_actions).reshape(len(ans.actions), -1).all(axis=1)


def answer_tables(answers: dict[str, ProbeAnswer]):
    """Per agent: {situation key: Q} and {observation bytes: V}; V must be a function of the observation."""
    q_tables, v_tables = {}, {}
    for agent, ans in answers.items():
        q_tables[agent], v_tables[agent] = {}, {}
        for i in range(len(ans.q_values)):
            if ans.joint_obs is None:
                obs, acts = {agent: ans.obs[i]}, {agent: ans.actions[i]}
            else:
                obs = {a: o[i] for a, o in ans.joint_obs.items()}
                acts = {a: x[i] for a, x in ans.joint_actions.items()}
            q_tables[agent][situation_key(agent, obs, acts, ans)] = float(ans.q_values[i])
            v = v_tables[agent].setdefault(ans.obs[i].tobytes(), float(ans.values[i]))
            assert v == pytest.approx(float(ans.values[i])), "V must depend on the observation only"
    return q_tables, v_tables


def decisions(env: ProbeEnv, policy, seed: int, episodes: int):
    """Roll out; yield (agent, obs at decision, joint obs, joint actions, reward until next decision, next obs).

    Agents act when they have an observation. Rewards that arrive while an agent waits are added to its
    last decision; ``next obs`` is its observation at its next decision, or None when the episode ended.
    """
    obs, _ = env.reset(seed=seed)
    for _ in range(episodes):
        pending = {}
        while env.agents:
            actions = {a: policy(a, obs[a]) for a in obs}
            for a in obs:
                pending[a] = [a, obs[a], dict(obs), actions, 0.0]
            next_obs, rewards, terminations, _, _ = env.step(actions)
            for a, r in rewards.items():
                pending[a][4] += r
            episode_over = all(terminations.values())
            for a in list(pending):
                if episode_over or a in next_obs:
                    yield (*pending.pop(a), None if episode_over else next_obs[a])
            obs = next_obs
        obs, _ = env.reset()


def query_action_policy(env: ProbeEnv, answers, seed: int):
    """Random actions drawn from the query actions of ``expected()``, so every decision has a table row."""
    rng = np.random.default_rng(seed)
    options = {a: np.unique(ans.actions, axis=0) for a, ans in answers.items()}
    return lambda agent, obs: options[agent][rng.integers(len(options[agent]))]


def bellman_mismatches(env: ProbeEnv, answers, gamma: float, episodes: int = 150) -> list[str]:
    q_tables, v_tables = answer_tables(answers)
    policy = query_action_policy(env, answers, seed=1)
    problems, checked = [], 0
    for agent, _, joint_obs, joint_actions, reward, next_obs in decisions(env, policy, seed=0, episodes=episodes):
        checked += 1
        key = situation_key(agent, joint_obs, joint_actions, answers[agent])
        if key not in q_tables[agent]:
            problems.append(f"{agent}: reachable situation missing from expected(): {key}")
            continue
        target = reward + (0.0 if next_obs is None else gamma * v_tables[agent][next_obs.tobytes()])
        if abs(q_tables[agent][key] - target) > 1e-5:
            problems.append(f"{agent}: Q {q_tables[agent][key]:.4f} != reward + gamma V' = {target:.4f}")
    assert checked >= episodes * env.num_agents  # at least one decision per agent and episode
    return problems


def own_clock_returns(env: ProbeEnv, policy, gamma: float, episodes: int, seed: int = 0):
    """(agent, obs at decision, discounted return from that decision on the agent's own clock)."""
    per_episode = {}
    results = []
    for record in decisions(env, policy, seed=seed, episodes=episodes):
        agent, obs, reward, next_obs = record[0], record[1], record[4], record[5]
        per_episode.setdefault(agent, []).append((obs, reward))
        if next_obs is None:  # this agent's episode is over: discount backwards
            ret = 0.0
            for obs_k, reward_k in reversed(per_episode.pop(agent)):
                ret = reward_k + gamma * ret
                results.append((agent, obs_k, ret))
    return results


# --------------------------------------------------------------------------------------------------
# PettingZoo API and the interface
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, continuous, image", VARIANTS)
def test_parallel_api(name, continuous, image):
    env = PROBE_ENVS[name](continuous=continuous, image=image)
    if isinstance(env, AsyncAgentsEnv):
        env = FillWaitingObservations(env)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the API test reports soft failures as warnings
        parallel_api_test(env, num_cycles=30)


@pytest.mark.parametrize("name, continuous, image", VARIANTS)
def test_expected_shapes_dtypes_and_spaces(name, continuous, image):
    env = PROBE_ENVS[name](continuous=continuous, image=image)
    answers = env.expected(GAMMA)
    assert set(answers) == set(env.possible_agents)
    for agent, ans in answers.items():
        obs_space, act_space = env.observation_space(agent), env.action_space(agent)
        n = len(ans.q_values)
        assert n > 0 and ans.obs.shape == (n, *obs_space.shape) and ans.obs.dtype == obs_space.dtype
        assert ans.q_values.shape == ans.values.shape == (n,) and ans.q_values.dtype == np.float32
        assert ans.actions.shape == ((n, 1) if continuous else (n,))
        assert all(obs_space.contains(o) for o in ans.obs)
        assert all(act_space.contains(np.asarray(a, act_space.dtype)) for a in ans.actions)
        if env.optimal_is_action_dependent:
            assert ans.optimal_actions.shape == ans.actions.shape
        else:
            assert ans.optimal_actions is None
        if ans.joint_obs is not None:
            assert ans.joint_obs[agent] is ans.obs and ans.joint_actions[agent] is ans.actions
            assert all(len(x) == n for x in (*ans.joint_obs.values(), *ans.joint_actions.values()))


@pytest.mark.parametrize("name, continuous, image", VARIANTS)
def test_optimal_q_equals_v_and_no_action_beats_it(name, continuous, image):
    env = PROBE_ENVS[name](continuous=continuous, image=image)
    answers = env.expected(GAMMA)
    for ans in answers.values():
        assert np.all(ans.q_values <= ans.values + 1e-6), "V is the best value available in the state"
        if ans.optimal_actions is None:
            np.testing.assert_allclose(ans.q_values, ans.values)  # value probe: actions do not matter
            continue
        if env.requires_centralised_critic:  # the whole team must act optimally for Q to reach V
            optimal_rows = np.all([acts_optimally(answers[a]) for a in env.possible_agents], axis=0)
        else:
            optimal_rows = acts_optimally(ans)
        assert optimal_rows.any()
        np.testing.assert_allclose(ans.q_values[optimal_rows], ans.values[optimal_rows], atol=1e-6)
        assert np.all(ans.q_values[~optimal_rows] < ans.values[~optimal_rows] - 0.1)


@pytest.mark.parametrize("name", list(PROBE_ENVS))
def test_only_the_coordination_probe_needs_a_centralised_critic(name):
    """Q varies at a fixed (own obs, own action) exactly when the env says a centralised critic is required."""
    env = PROBE_ENVS[name](continuous=True)
    for ans in env.expected(GAMMA).values():
        groups = {}
        for o, a, q in zip(ans.obs, ans.actions, ans.q_values):
            groups.setdefault((o.tobytes(), action_key(a)), []).append(q)
        spread = max(np.ptp(qs) for qs in groups.values())
        assert (spread > 0.5) == env.requires_centralised_critic


# --------------------------------------------------------------------------------------------------
# The answers agree with the dynamics
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, continuous, image", VARIANTS)
def test_bellman_consistency(name, continuous, image):
    env = PROBE_ENVS[name](continuous=continuous, image=image)
    assert bellman_mismatches(env, env.expected(GAMMA), GAMMA) == []


def test_bellman_check_catches_wrong_answers():
    """The consistency check is not vacuous: answers for another gamma, or a wrong Q, are caught."""
    env = DiscountedRewardEnv()
    assert bellman_mismatches(env, env.expected(0.5), GAMMA)
    answers = CoordinationEnv().expected(GAMMA)
    answers["agent_0"].q_values[:] = answers["agent_0"].values  # a critic that ignores agent_1's action
    assert bellman_mismatches(CoordinationEnv(), answers, GAMMA)


@pytest.mark.parametrize("name, continuous, image", VARIANTS)
def test_optimal_policy_return_equals_value(name, continuous, image):
    env = PROBE_ENVS[name](continuous=continuous, image=image)
    _, v_tables = answer_tables(env.expected(GAMMA))
    results = own_clock_returns(env, env.optimal_action, GAMMA, episodes=40)
    assert len(results) >= 40 * env.num_agents
    for agent, obs, ret in results:
        assert ret == pytest.approx(v_tables[agent][obs.tobytes()], abs=1e-6)


@pytest.mark.parametrize("name", POLICY_PROBES)
@pytest.mark.parametrize("continuous", [False, True])
def test_random_policy_gets_less_than_optimal(name, continuous):
    env = PROBE_ENVS[name](continuous=continuous)
    for agent in env.possible_agents:
        env.action_space(agent).seed(0)
    _, v_tables = answer_tables(env.expected(GAMMA))
    results = own_clock_returns(env, lambda agent, obs: env.action_space(agent).sample(), GAMMA, episodes=200)
    random_return = np.mean([ret for _, _, ret in results])
    optimal_return = np.mean([v_tables[agent][obs.tobytes()] for agent, obs, _ in results])
    assert random_return < optimal_return - 0.2


@pytest.mark.parametrize("name", [n for n in PROBE_ENVS if n not in POLICY_PROBES])
def test_value_probes_do_not_depend_on_the_policy(name):
    env = PROBE_ENVS[name]()
    _, v_tables = answer_tables(env.expected(GAMMA))
    for agent, obs, ret in own_clock_returns(env, lambda a, o: env.action_space(a).sample(), GAMMA, episodes=30):
        assert ret == pytest.approx(v_tables[agent][obs.tobytes()])


# --------------------------------------------------------------------------------------------------
# Determinism, encodings, configurable agents
# --------------------------------------------------------------------------------------------------


def _trajectory(env: ProbeEnv, seed: int, steps: int = 12):
    obs, _ = env.reset(seed=seed)
    seen = []
    for t in range(steps):
        if not env.agents:
            obs, _ = env.reset()
        actions = {a: t % 2 for a in obs}
        seen.append({a: o.tobytes() for a, o in obs.items()})
        obs, rewards, *_ = env.step(actions)
        seen.append(dict(rewards))
    return seen


@pytest.mark.parametrize("name", list(PROBE_ENVS))
def test_seeded_and_deterministic(name):
    cls = PROBE_ENVS[name]
    assert _trajectory(cls(), seed=3) == _trajectory(cls(), seed=3)
    if cls.num_states > 1 and name != "discounted_reward":  # the probes with random cues
        assert _trajectory(cls(), seed=3, steps=40) != _trajectory(cls(), seed=4, steps=40)


@pytest.mark.parametrize("name", list(PROBE_ENVS))
@pytest.mark.parametrize("image_shape", [(1, 8, 8), (4, 12, 16)])
def test_encode_decode_round_trip(name, image_shape):
    env = PROBE_ENVS[name](image=("other_agent",), agent_ids=MIXED_IDS, image_shape=image_shape)
    assert env.observation_space("agent_0").shape == (env.num_states,)
    assert env.observation_space("other_agent_0").shape == image_shape
    for agent in MIXED_IDS:
        encoded = [env.encode(agent, s) for s in range(env.num_states)]
        assert [env.decode(agent, o) for o in encoded] == list(range(env.num_states))
        assert len({o.tobytes() for o in encoded}) == env.num_states


@pytest.mark.parametrize("name", list(PROBE_ENVS))
def test_mixed_groups_of_agents(name):
    """Three agents in two groups, the second group seeing images: API, Bellman and optimal returns hold."""
    env = PROBE_ENVS[name](agent_ids=MIXED_IDS, image=("other_agent",))
    assert env.possible_agents == list(MIXED_IDS)
    api_env = FillWaitingObservations(env) if isinstance(env, AsyncAgentsEnv) else env
    parallel_api_test(api_env, num_cycles=20)
    answers = env.expected(GAMMA)
    assert answers["other_agent_0"].obs.dtype == np.uint8 and answers["agent_0"].obs.dtype == np.float32
    assert PROBE_ENVS[name](agent_ids=MIXED_IDS, image="other_agent").observation_space("agent_1").shape == (
        env.num_states,
    )
    assert bellman_mismatches(env, answers, GAMMA, episodes=60) == []
    _, v_tables = answer_tables(answers)
    for agent, obs, ret in own_clock_returns(env, env.optimal_action, GAMMA, episodes=10):
        assert ret == pytest.approx(v_tables[agent][obs.tobytes()])


@pytest.mark.parametrize("continuous", [False, True])
def test_contextual_cue_opposite_agents(continuous):
    """Issue 21's task: a group answers its cue, a lone agent the opposite; 10-step episodes."""
    env = ContextualCueEnv(MIXED_IDS, opposite="other_agent", episode_length=10, continuous=continuous)
    answers = env.expected(GAMMA)
    assert bellman_mismatches(env, answers, GAMMA, episodes=20) == []
    _, v_tables = answer_tables(answers)
    for agent, obs, ret in own_clock_returns(env, env.optimal_action, GAMMA, episodes=5):
        assert ret == pytest.approx(v_tables[agent][obs.tobytes()])
    cue_one = env.encode("agent_0", 1)  # 1 step left, cue 1
    group_answer, lone_answer = (np.asarray(env.optimal_action(a, cue_one)) for a in ("agent_0", "other_agent_0"))
    assert not np.array_equal(group_answer, lone_answer)
    assert answers["agent_0"].values.max() == pytest.approx(sum(GAMMA**k for k in range(10)))
    with pytest.raises(ValueError, match="bob"):
        ContextualCueEnv(opposite="bob")


def test_discounted_probe_values():
    answers = DiscountedRewardEnv().expected(0.8)["agent_1"]
    first = answers.obs[:, 0] == 1.0
    np.testing.assert_allclose(answers.values[first], 0.8)
    np.testing.assert_allclose(answers.values[~first], 1.0)


# --------------------------------------------------------------------------------------------------
# Asynchronous agents
# --------------------------------------------------------------------------------------------------


def test_async_observations_only_for_agents_acting_next_and_delayed_rewards():
    env = AsyncAgentsEnv()  # agent_0 acts every step, agent_1 every other step
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"agent_0", "agent_1"}
    observed, slow_rewards = [], []
    while env.agents:
        obs, rewards, terminations, _, _ = env.step({a: env.optimal_action(a, o) for a, o in obs.items()})
        observed.append(set(obs))
        slow_rewards.append(rewards["agent_1"])
        assert set(rewards) == set(terminations) == {"agent_0", "agent_1"}
    # after steps 0..3: agent_1 waits at steps 1 and 3; the last step returns everyone's final observation
    assert observed == [{"agent_0"}, {"agent_0", "agent_1"}, {"agent_0"}, {"agent_0", "agent_1"}]
    # agent_1 is paid one step after acting (steps 1 and 3), i.e. while it has no observation (step 1)
    assert slow_rewards == [0.0, 1.0, 0.0, 1.0]


def test_async_answers_are_on_each_agents_own_clock():
    answers = AsyncAgentsEnv().expected(GAMMA)
    assert answers["agent_0"].joint_obs is None
    # agent_0 decides 4 times, agent_1 twice: the first decision is worth 4 or 2 discounted rewards
    assert answers["agent_0"].values.max() == pytest.approx(1 + GAMMA + GAMMA**2 + GAMMA**3)
    assert answers["agent_1"].values.max() == pytest.approx(1 + GAMMA)


def test_async_slow_agents_are_configurable():
    env = AsyncAgentsEnv(agent_ids=MIXED_IDS, slow_agents=("agent_0",))
    obs, _ = env.reset(seed=0)
    obs, *_ = env.step({a: 0 for a in obs})
    assert set(obs) == {"agent_1", "other_agent_0"}
    with pytest.raises(ValueError, match="slow_agents"):
        AsyncAgentsEnv(slow_agents=("agent_0", "agent_1"))
    with pytest.raises(ValueError, match="slow_agents"):
        AsyncAgentsEnv(slow_agents=("bob_0",))


# --------------------------------------------------------------------------------------------------
# Errors and the registry
# --------------------------------------------------------------------------------------------------


def test_errors_say_what_went_wrong():
    env = PROBE_ENVS["obs_dependent_policy"]()
    env.reset(seed=0)
    with pytest.raises(KeyError, match="agent_1"):
        env.step({"agent_0": 0})
    with pytest.raises(ValueError, match="0 or 1"):
        env.step({"agent_0": 0, "agent_1": 2})
    env.step({"agent_0": 0, "agent_1": 1})
    with pytest.raises(RuntimeError, match="reset"):
        env.step({"agent_0": 0, "agent_1": 1})
    with pytest.raises(ValueError, match="at least two"):
        CoordinationEnv(agent_ids=("solo_0",))
    with pytest.raises(ValueError, match="unique"):
        PROBE_ENVS["constant_reward"](agent_ids=("a_0", "a_0"))


def test_continuous_actions_are_clipped_to_the_box():
    env = PROBE_ENVS["fixed_obs_policy"](continuous=True)
    env.reset(seed=0)
    _, rewards, *_ = env.step({"agent_0": np.array([5.0]), "agent_1": np.array([1.0])})
    assert rewards["agent_0"] == rewards["agent_1"] == pytest.approx(1 - 0.5**2)


def test_registry_lists_every_probe_with_a_failure_diagnosis():
    assert list(PROBE_ENVS) == [
        "constant_reward",
        "obs_dependent_reward",
        "discounted_reward",
        "fixed_obs_policy",
        "obs_dependent_policy",
        "contextual_cue",
        "coordination",
        "async_agents",
    ]
    for cls in PROBE_ENVS.values():
        assert issubclass(cls, ProbeEnv)
        assert "Fails" in cls.__doc__
