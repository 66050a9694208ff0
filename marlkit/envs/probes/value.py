"""Value probes: the action does not matter, so they test the critic (V or Q) and the data pipeline."""

from __future__ import annotations

from .base import ProbeEnv, all_cue_combinations


class ConstantRewardEnv(ProbeEnv):
    """Constant observation, reward 1 for every agent, one-step episodes: V = Q = 1.

    Fails: the value loss, the optimiser or the reward plumbing is broken. Converging to 1 / (1 - gamma)
    instead means ``terminated`` does not stop the bootstrap (the terminal observation equals the start one).
    """

    def _draw_state(self, agent: str, t: int) -> int:
        return 0

    def _reward(self, agent: str, t: int) -> float:
        return 1.0

    def _query_joint_states(self) -> list[dict[str, int]]:
        return [dict.fromkeys(self.possible_agents, 0)]

    def _q(self, agent, states, actions, gamma):
        return 1.0

    def _v(self, agent, state, gamma):
        return 1.0


class ObsDependentRewardEnv(ProbeEnv):
    """Each agent sees its own random cue in {0, 1}; reward +1 for cue 1, -1 for cue 0; one step.

    Fails (while ConstantRewardEnv passes): the critic does not see the observation, observations are
    mangled on the way (dtype, uint8 scaling, channel order), or observations and rewards get paired
    with the wrong agent: cues are independent per agent, so an agent-ordering bug gives V ~ 0.
    """

    num_states = 2

    def _draw_state(self, agent: str, t: int) -> int:
        return int(self.np_random.integers(2))

    def _reward(self, agent: str, t: int) -> float:
        return 1.0 if self._states[agent] == 1 else -1.0

    def _query_joint_states(self) -> list[dict[str, int]]:
        return all_cue_combinations(self.possible_agents)

    def _q(self, agent, states, actions, gamma):
        return self._v(agent, states[agent], gamma)

    def _v(self, agent, state, gamma):
        return 1.0 if state == 1 else -1.0


class DiscountedRewardEnv(ProbeEnv):
    """Two steps; observation = step index (0 then 1); reward 1 only at the end: V(0) = gamma, V(1) = 1.

    Fails (while the two above pass): discounting is wrong, or next observations are misaligned with
    their transitions in the buffer (e.g. an off-by-one in the autoreset/final-observation handling).
    """

    num_states = 2
    episode_length = 2

    def _draw_state(self, agent: str, t: int) -> int:
        return t

    def _reward(self, agent: str, t: int) -> float:
        return 1.0 if t == 1 else 0.0

    def _query_joint_states(self) -> list[dict[str, int]]:
        return [dict.fromkeys(self.possible_agents, t) for t in (0, 1)]

    def _q(self, agent, states, actions, gamma):
        return self._v(agent, states[agent], gamma)

    def _v(self, agent, state, gamma):
        return gamma if state == 0 else 1.0
