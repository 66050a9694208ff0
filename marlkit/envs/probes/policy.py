"""Policy probes: the reward depends on the action, so they test the actor and its link to the critic."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from .base import (
    CONTINUOUS_TARGETS,
    DEFAULT_AGENT_IDS,
    ProbeEnv,
    all_cue_combinations,
    as_scalar,
    discounted_count,
)


class FixedObsPolicyEnv(ProbeEnv):
    """Constant observation; one step; reward scores the action against cue 1 (optimal: 1, or +0.5).

    Fails (while the value probes pass): the actor does not follow the critic (policy-loss sign, detached
    graph, advantage), or actions are mapped wrongly (argmax/Gumbel-softmax for discrete, tanh/scaling to
    the Box bounds for continuous).
    """

    optimal_is_action_dependent = True

    def _draw_state(self, agent: str, t: int) -> int:
        return 0

    def _reward(self, agent: str, t: int) -> float:
        return self._score(self._actions[agent], 1)

    def _query_joint_states(self) -> list[dict[str, int]]:
        return [dict.fromkeys(self.possible_agents, 0)]

    def _q(self, agent, states, actions, gamma):
        return self._score(actions[agent], 1)

    def _v(self, agent, state, gamma):
        return 1.0

    def _optimal(self, agent, state):
        return self._target_action(1)


class ObsDependentPolicyEnv(FixedObsPolicyEnv):
    """Each agent sees its own random cue in {0, 1}; one step; reward scores the action against the cue.

    Optimal action = the cue (discrete) or -0.5 / +0.5 (continuous); V = 1. Fails (while FixedObsPolicyEnv
    passes): the actor ignores its observation, or observations and actions of different agents (or rows)
    are mixed up in the batch.
    """

    num_states = 2

    def _draw_state(self, agent: str, t: int) -> int:
        return int(self.np_random.integers(2))

    def _reward(self, agent: str, t: int) -> float:
        return self._score(self._actions[agent], self._states[agent])

    def _query_joint_states(self) -> list[dict[str, int]]:
        return all_cue_combinations(self.possible_agents)

    def _q(self, agent, states, actions, gamma):
        return self._score(actions[agent], states[agent])

    def _optimal(self, agent, state):
        return self._target_action(state)


class CoordinationEnv(ObsDependentPolicyEnv):
    """Team reward on the *joint* action: every agent sees only its own cue, all get the same reward.

    Discrete: reward 1 iff every agent's action equals its cue. Continuous: ``1 - sum_i (a_i - t_i)^2``.
    So agent_0's Q depends on agent_1's action and observation: only a centralised critic
    Q(all obs, all actions) can match ``expected()`` at off-policy joint actions (a decentralised one can
    at best learn the average under its partners' current policy). Fails: the centralised critic does not
    receive the other agents' observations/actions, or receives them in the wrong order or from the wrong
    step (e.g. target actions computed from another agent's next observation). Optimal: act on your cue; V = 1.
    """

    requires_centralised_critic = True

    def __init__(self, agent_ids: Sequence[str] = DEFAULT_AGENT_IDS, **kwargs: Any):
        if len(agent_ids) < 2:
            raise ValueError(f"CoordinationEnv needs at least two agents, got {agent_ids!r}")
        super().__init__(agent_ids, **kwargs)

    def _team_reward(self, states: dict[str, int], actions: dict[str, Any]) -> float:
        if self.continuous:
            return 1.0 - sum((as_scalar(actions[a]) - CONTINUOUS_TARGETS[states[a]]) ** 2 for a in self.possible_agents)
        return float(all(int(actions[a]) == states[a] for a in self.possible_agents))

    def _reward(self, agent: str, t: int) -> float:
        return self._team_reward(self._states, self._actions)

    def _q(self, agent, states, actions, gamma):
        return self._team_reward(states, actions)


class ContextualCueEnv(ObsDependentPolicyEnv):
    """Episodes of ``episode_length`` steps; at every step each agent sees a fresh cue plus how many steps
    are left, and is paid for answering the cue, or its *opposite* if it is one of ``opposite`` (agent or
    group ids). So two groups of one env need opposite policies for the same observation.

    The task of issue 21 is ``ContextualCueEnv(("agent_0", "agent_1", "other_agent_0"), opposite="other_agent",
    episode_length=10)``: a group that shares an actor answers the cue, a lone agent answers its opposite.
    State = ``2 * (steps_left - 1) + cue``; V = 1 + gamma + ... + gamma^(steps_left - 1) (one point per step
    left), Q(a) = score(a) + gamma * V(steps_left - 1). Fails (while ObsDependentPolicyEnv passes): the
    rollouts or advantages of different groups are mixed up (one group learns the other's mapping), or the
    advantage signal of one step is drowned by the returns of the steps after it (one policy stays at chance).
    """

    def __init__(
        self,
        agent_ids: Sequence[str] = DEFAULT_AGENT_IDS,
        opposite: str | Collection[str] = (),
        episode_length: int = 4,
        **kwargs: Any,
    ):
        if int(episode_length) < 1:
            raise ValueError(f"episode_length must be a positive int, got {episode_length!r}")
        self.episode_length = int(episode_length)
        self.num_states = 2 * self.episode_length
        opposite = (opposite,) if isinstance(opposite, str) else tuple(opposite)
        names = {a: (a, a.rsplit("_", 1)[0]) for a in agent_ids}  # each agent's own id and its group id
        unknown = [o for o in opposite if not any(o in ids for ids in names.values())]
        if unknown:
            raise ValueError(f"opposite names no agent or group of agent_ids {list(agent_ids)}: {unknown}")
        self.opposite_agents = {a for a, ids in names.items() if set(ids) & set(opposite)}
        super().__init__(agent_ids, **kwargs)

    def _target(self, agent: str, state: int) -> int:
        """The cue this agent must answer in ``state``: its own, or the opposite one."""
        return 1 - state % 2 if agent in self.opposite_agents else state % 2

    def _draw_state(self, agent: str, t: int) -> int:
        steps_left = self.episode_length - t
        return 2 * (steps_left - 1) + int(self.np_random.integers(2))

    def _reward(self, agent: str, t: int) -> float:
        return self._score(self._actions[agent], self._target(agent, self._states[agent]))

    def _query_joint_states(self) -> list[dict[str, int]]:
        return [
            {a: 2 * (steps_left - 1) + cue for a, cue in cues.items()}
            for steps_left in range(1, self.episode_length + 1)
            for cues in all_cue_combinations(self.possible_agents)
        ]

    def _q(self, agent, states, actions, gamma):
        state = states[agent]
        return self._score(actions[agent], self._target(agent, state)) + gamma * discounted_count(state // 2, gamma)

    def _v(self, agent, state, gamma):
        return discounted_count(state // 2 + 1, gamma)

    def _optimal(self, agent, state):
        return self._target_action(self._target(agent, state))
