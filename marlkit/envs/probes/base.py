"""The probe base class ``ProbeEnv`` and the ``ProbeAnswer`` record returned by ``expected()``.

A probe's observations are one of ``K = num_states`` symbols ("states"), encoded as a one-hot
``float32 (K,)`` vector or a uint8 ``(C, H, W)`` image with the state's vertical stripe lit (255).
Subclasses describe the dynamics and the answers through the ``_`` hooks below.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from pettingzoo import ParallelEnv

DEFAULT_AGENT_IDS = ("agent_0", "agent_1")
CONTINUOUS_TARGETS = (-0.5, 0.5)  # continuous target for cue 0 and cue 1
CONTINUOUS_QUERY_ACTIONS = (-1.0, -0.5, 0.0, 0.5, 1.0)  # where expected() evaluates Q for Box actions


@dataclass
class ProbeAnswer:
    """Known answers for one agent over ``n`` query rows (one row = one joint situation).

    ============================  ===================================================================
    obs                           ``(n, *obs_shape)`` this agent's observation (env dtype)
    actions                       ``(n,)`` int64 (Discrete) or ``(n, 1)`` float32 (Box): its action
    q_values                      ``(n,)`` float32: true Q of this agent for the row's joint obs/actions
    values                        ``(n,)`` float32: true V(obs) under the optimal policy
    optimal_actions               like ``actions``: the optimal action at ``obs``; None if all are equal
    joint_obs / joint_actions     ``{agent: array (n, ...)}`` every agent's obs/action in the row, for
                                  centralised critics; None where not defined (asynchronous agents)
    ============================  ===================================================================

    Q and V use discount ``gamma`` per decision of this agent (its own clock when agents act
    asynchronously); discrete actions are indices (one-hot them if your critic wants that).
    """

    obs: np.ndarray
    actions: np.ndarray
    q_values: np.ndarray
    values: np.ndarray
    optimal_actions: np.ndarray | None
    joint_obs: dict[str, np.ndarray] | None
    joint_actions: dict[str, np.ndarray] | None


def discounted_count(n: int, gamma: float) -> float:
    """Return of n rewards of 1: 1 + gamma + ... + gamma^(n-1)."""
    return float(sum(gamma**m for m in range(n)))


def all_cue_combinations(agents: Sequence[str]) -> list[dict[str, int]]:
    """Every assignment of a cue in {0, 1} to each agent (2 ** len(agents) joint states)."""
    return [dict(zip(agents, cues)) for cues in itertools.product((0, 1), repeat=len(agents))]


def as_scalar(action: Any) -> float:
    """A Box action of shape (1,) (or a number) as a float."""
    return float(np.asarray(action, dtype=np.float64).reshape(-1)[0])


class ProbeEnv(ParallelEnv):
    """Shared machinery. Subclasses set the class attributes and implement the ``_`` hooks."""

    num_states: int = 1  # K: how many distinct observations
    episode_length: int = 1  # env steps per episode
    requires_centralised_critic: bool = False  # True if an agent's Q depends on other agents
    optimal_is_action_dependent: bool = False  # False for the value probes (every action is optimal)

    def __init__(
        self,
        agent_ids: Sequence[str] = DEFAULT_AGENT_IDS,
        continuous: bool = False,
        image: bool | Collection[str] = False,
        image_shape: tuple[int, int, int] = (1, 8, 8),
    ):
        if len(agent_ids) == 0 or len(set(agent_ids)) != len(agent_ids):
            raise ValueError(f"agent_ids must be non-empty and unique, got {agent_ids!r}")
        if image and image_shape[2] < self.num_states:  # only image observations need the stripes
            raise ValueError(f"image width {image_shape[2]} is below the {self.num_states} stripes needed")
        self.possible_agents = list(agent_ids)
        self.agents: list[str] = []
        self.continuous = continuous
        self.render_mode = None
        self.metadata = {"name": type(self).__name__, "render_modes": []}
        # `image` is a bool or the agent ids / group ids (the part before the last "_") that see images
        if isinstance(image, str):
            image = (image,)
        self._image_agents = {
            a for a in agent_ids if image is True or (image and (a in image or a.rsplit("_", 1)[0] in image))
        }
        self._stripes = np.array_split(np.arange(image_shape[2]), self.num_states)  # columns of each state
        self.observation_spaces = {
            a: spaces.Box(0, 255, image_shape, np.uint8)
            if a in self._image_agents
            else spaces.Box(0.0, 1.0, (self.num_states,), np.float32)
            for a in agent_ids
        }
        self.action_spaces = {
            a: spaces.Box(-1.0, 1.0, (1,), np.float32) if continuous else spaces.Discrete(2) for a in agent_ids
        }
        self.np_random, _ = seeding.np_random(None)
        self._t = 0
        self._states: dict[str, int] = {}  # each agent's state at its latest decision
        self._actions: dict[str, Any] = {}  # each agent's latest action

    def observation_space(self, agent: str) -> spaces.Box:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Space:
        return self.action_spaces[agent]

    # ---------------------------------------------------------------- dynamics

    def reset(self, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.np_random, _ = seeding.np_random(seed)
        self.agents = list(self.possible_agents)
        self._t = 0
        self._actions = {}
        self._states = {a: self._draw_state(a, 0) for a in self.agents}
        observations = {a: self.encode(a, self._states[a]) for a in self._acting_agents(0)}
        return observations, {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]):
        if not self.agents:
            raise RuntimeError("step() called on a finished episode; call reset() first")
        t = self._t
        for agent in self._acting_agents(t):
            if agent not in actions:
                raise KeyError(f"agent '{agent}' acts at step {t} but got no action (actions: {list(actions)})")
            self._actions[agent] = self._check_action(agent, actions[agent])
        # every live agent gets a reward entry; in async probes a waiting agent can still be paid
        rewards = {a: float(self._reward(a, t)) for a in self.agents}
        self._t = t + 1
        done = self._t >= self.episode_length
        if done:  # terminal observations look like start states, for every agent
            next_states = {a: self._draw_state(a, 0) for a in self.agents}
            observations = {a: self.encode(a, s) for a, s in next_states.items()}
        else:  # observations only for the agents that act next
            acting = self._acting_agents(self._t)
            self._states.update({a: self._draw_state(a, self._t) for a in acting})
            observations = {a: self.encode(a, self._states[a]) for a in acting}
        terminations = dict.fromkeys(self.agents, done)
        truncations = dict.fromkeys(self.agents, False)
        infos = {a: {} for a in self.agents}
        if done:
            self.agents = []
        return observations, rewards, terminations, truncations, infos

    def _check_action(self, agent: str, action: Any) -> Any:
        if self.continuous:
            return float(np.clip(as_scalar(action), -1.0, 1.0))
        action = int(np.asarray(action).reshape(()))
        if action not in (0, 1):
            raise ValueError(f"agent '{agent}': discrete action must be 0 or 1, got {action}")
        return action

    def _score(self, action: Any, cue: int) -> float:
        """How well one agent's action matches target cue (0 or 1); 1.0 is the best."""
        if self.continuous:
            return 1.0 - (as_scalar(action) - CONTINUOUS_TARGETS[cue]) ** 2
        return float(action == cue)

    def _target_action(self, cue: int) -> Any:
        return np.array([CONTINUOUS_TARGETS[cue]], np.float32) if self.continuous else cue

    # hooks ------------------------------------------------------------------

    def _acting_agents(self, t: int) -> list[str]:
        """Agents that act (and observe) at env step t. Synchronous by default."""
        return list(self.possible_agents)

    def _draw_state(self, agent: str, t: int) -> int:
        raise NotImplementedError

    def _reward(self, agent: str, t: int) -> float:
        """Reward of ``agent`` at step t, from ``self._states`` and ``self._actions``."""
        raise NotImplementedError

    def _query_joint_states(self) -> list[dict[str, int]]:
        """Every reachable joint state at a decision point."""
        raise NotImplementedError

    def _q(self, agent: str, states: dict[str, int], actions: dict[str, Any], gamma: float) -> float:
        raise NotImplementedError

    def _v(self, agent: str, state: int, gamma: float) -> float:
        raise NotImplementedError

    def _optimal(self, agent: str, state: int) -> Any:
        """Optimal action in ``state``; only called when ``optimal_is_action_dependent``."""
        raise NotImplementedError

    # ---------------------------------------------------------------- observations

    def encode(self, agent: str, state: int) -> np.ndarray:
        """The observation of ``agent`` for state index ``state``: a one-hot vector or a lit stripe."""
        space = self.observation_spaces[agent]
        obs = np.zeros(space.shape, space.dtype)
        if agent in self._image_agents:
            obs[:, :, self._stripes[state]] = 255
        else:
            obs[state] = 1.0
        return obs

    def decode(self, agent: str, obs: np.ndarray) -> int:
        """Inverse of ``encode``: the state index behind an observation."""
        obs = np.asarray(obs)
        if agent in self._image_agents:
            lit_column = int(np.argmax(obs.max(axis=(0, 1))))
            return next(s for s, cols in enumerate(self._stripes) if lit_column in cols)
        return int(np.argmax(obs))

    def optimal_action(self, agent: str, obs: np.ndarray) -> Any:
        """An optimal action for ``agent`` seeing ``obs`` (any action is optimal in the value probes)."""
        if not self.optimal_is_action_dependent:
            return self._target_action(0)
        return self._optimal(agent, self.decode(agent, obs))

    # ---------------------------------------------------------------- known answers

    def _query_actions(self) -> list[Any]:
        if self.continuous:
            return [np.array([a], np.float32) for a in CONTINUOUS_QUERY_ACTIONS]
        return [0, 1]

    def _stack(self, items: list[Any]) -> np.ndarray:
        """Stack actions into (n,) int64 or (n, 1) float32."""
        return np.stack(items).astype(np.float32) if self.continuous else np.asarray(items, np.int64)

    def expected(self, gamma: float = 0.99) -> dict[str, ProbeAnswer]:
        """Known answers per agent; rows = every reachable joint state x every joint query action."""
        agents = self.possible_agents
        rows = [
            (states, dict(zip(agents, joint_action)))
            for states in self._query_joint_states()
            for joint_action in itertools.product(*(self._query_actions() for _ in agents))
        ]
        joint_obs = {a: np.stack([self.encode(a, s[a]) for s, _ in rows]) for a in agents}
        joint_actions = {a: self._stack([acts[a] for _, acts in rows]) for a in agents}
        answers = {}
        for agent in agents:
            optimal = None
            if self.optimal_is_action_dependent:
                optimal = self._stack([self._optimal(agent, s[agent]) for s, _ in rows])
            answers[agent] = ProbeAnswer(
                obs=joint_obs[agent],
                actions=joint_actions[agent],
                q_values=np.array([self._q(agent, s, acts, gamma) for s, acts in rows], np.float32),
                values=np.array([self._v(agent, s[agent], gamma) for s, _ in rows], np.float32),
                optimal_actions=optimal,
                joint_obs=joint_obs,
                joint_actions=joint_actions,
            )
        return answers
