"""Policy probes: the reward depends on the action, so they test the actor and its link to the critic."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .base import CONTINUOUS_TARGETS, DEFAULT_AGENT_IDS, ProbeEnv, all_cue_combinations, as_scalar


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
