"""Asynchronous agents: not every agent acts (or observes) at every step."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import numpy as np

from .base import DEFAULT_AGENT_IDS, ProbeAnswer, ProbeEnv, discounted_count


class AsyncAgentsEnv(ProbeEnv):
    """Agents act at different rates; the env returns observations only for the agents that act next.

    Episode: 4 env steps. "Fast" agents act at every step (4 decisions), "slow" agents (default: every
    agent but the first) at steps 0 and 2 (2 decisions). At each decision an agent sees a fresh random cue
    plus how many decisions it has left; reward scores its action against the cue. A fast agent is paid
    at once; a slow agent is paid one step later, while it is waiting and has no observation.

    Answers are on each agent's own clock (one discount per decision; rewards that arrive while an agent
    waits belong to its last decision): with n decisions left, V = 1 + gamma + ... + gamma^(n-1) and
    Q(a) = score(a) + gamma * V(n - 1). ``joint_obs`` is None: agents do not observe together.
    Fails: rewards paid to waiting agents are dropped (slow agents learn V = 0 and a random policy), a
    transition is cut at env steps instead of at the agent's next decision, or discounting is per env step.
    """

    episode_length = 4
    num_states = 8  # state = 2 * (decisions_left - 1) + cue, decisions_left in 1..4
    optimal_is_action_dependent = True

    def __init__(
        self,
        agent_ids: Sequence[str] = DEFAULT_AGENT_IDS,
        slow_agents: Collection[str] | None = None,
        **kwargs: Any,
    ):
        slow = set(agent_ids[1:]) if slow_agents is None else set(slow_agents)
        if not slow <= set(agent_ids) or slow == set(agent_ids):
            raise ValueError(
                f"slow_agents must be a subset of agent_ids that leaves one fast agent, got {slow_agents!r}"
            )
        self.slow_agents = slow
        super().__init__(agent_ids, **kwargs)

    def _period(self, agent: str) -> int:
        return 2 if agent in self.slow_agents else 1

    def _decisions(self, agent: str) -> int:
        return self.episode_length // self._period(agent)

    def _acting_agents(self, t: int) -> list[str]:
        return [a for a in self.possible_agents if t % self._period(a) == 0]

    def _draw_state(self, agent: str, t: int) -> int:
        decisions_left = self._decisions(agent) - t // self._period(agent)
        return 2 * (decisions_left - 1) + int(self.np_random.integers(2))

    def _reward(self, agent: str, t: int) -> float:
        # a decision made at step t is paid at step t + period - 1: at once if fast, a step later if slow
        if (t + 1) % self._period(agent) != 0:
            return 0.0
        return self._score(self._actions[agent], self._states[agent] % 2)

    def _v(self, agent, state, gamma):
        return discounted_count(state // 2 + 1, gamma)  # state // 2 + 1 decisions left, each worth 1

    def _q_decision(self, state: int, action: Any, gamma: float) -> float:
        """Score now, then act optimally in the decisions left after this one."""
        return self._score(action, state % 2) + gamma * discounted_count(state // 2, gamma)

    def _optimal(self, agent, state):
        return self._target_action(state % 2)

    def expected(self, gamma: float = 0.99) -> dict[str, ProbeAnswer]:
        """Per-agent rows: each of the agent's decision states x each query action (no joint fields)."""
        answers = {}
        for agent in self.possible_agents:
            rows = [(state, action) for state in range(2 * self._decisions(agent)) for action in self._query_actions()]
            answers[agent] = ProbeAnswer(
                obs=np.stack([self.encode(agent, s) for s, _ in rows]),
                actions=self._stack([a for _, a in rows]),
                q_values=np.array([self._q_decision(s, a, gamma) for s, a in rows], np.float32),
                values=np.array([self._v(agent, s, gamma) for s, _ in rows], np.float32),
                optimal_actions=self._stack([self._optimal(agent, s) for s, _ in rows]),
                joint_obs=None,
                joint_actions=None,
            )
        return answers
