"""Tiny PettingZoo parallel envs with known, checkable behaviour, for tests/test_vector.py.

Observations encode the step counter and a seeded offset, so a test can tell which episode and step an
observation row came from. Every env asserts that it receives actions exactly for the agents that should
act, so passing an action for an absent agent fails loudly.
"""

from __future__ import annotations

import time

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv


class DyingAgentEnv(ParallelEnv):
    """'survivor_0' lives for the whole episode; 'doomed_0' terminates at step ``death_step``.

    obs (float32, (3,)): ``[t, offset, agent index]`` where ``offset`` is drawn at reset from the seeded
    generator. reward: ``offset + sum(action)``. The episode is truncated at ``max_steps``.
    infos: ``{"t": t, "phase": "early" | "late"}`` for every reported agent.
    """

    metadata = {"name": "dying_agent_v0", "render_modes": ["rgb_array"]}

    def __init__(self, death_step: int = 3, max_steps: int = 6, render_mode: str | None = None):
        self.possible_agents = ["survivor_0", "doomed_0"]
        self.death_step = death_step
        self.max_steps = max_steps
        self.render_mode = render_mode
        self.agents: list[str] = []
        self.t = 0
        self.offset = 0.0

    def observation_space(self, agent):
        return spaces.Box(-np.inf, np.inf, (3,), np.float32)

    def action_space(self, agent):
        return spaces.Box(-1.0, 1.0, (2,), np.float32)

    def _obs(self, agent):
        return np.array([self.t, self.offset, self.possible_agents.index(agent)], dtype=np.float32)

    def _info(self):
        return {"t": self.t, "phase": "early" if self.t < self.death_step else "late"}

    def reset(self, seed=None, options=None):
        if seed is not None or not hasattr(self, "rng"):
            self.rng = np.random.default_rng(seed)
        self.agents = list(self.possible_agents)
        self.t = 0
        self.offset = float(self.rng.uniform(-1.0, 1.0))
        return {a: self._obs(a) for a in self.agents}, {a: self._info() for a in self.agents}

    def step(self, actions):
        assert set(actions) == set(self.agents), f"actions for {sorted(actions)}, acting: {self.agents}"
        self.t += 1
        rewards = {a: self.offset + float(np.sum(actions[a])) for a in self.agents}
        terminations = {a: a == "doomed_0" and self.t >= self.death_step for a in self.agents}
        truncations = {a: self.t >= self.max_steps for a in self.agents}
        obs = {a: self._obs(a) for a in self.agents}
        infos = {a: self._info() for a in self.agents}
        self.agents = [a for a in self.agents if not (terminations[a] or truncations[a])]
        return obs, rewards, terminations, truncations, infos

    def render(self):
        return np.full((4, 4, 3), self.t, dtype=np.uint8)


class TurnTakingImageEnv(ParallelEnv):
    """Two agents that act in turns: 'even_0' at even steps, 'odd_0' at odd steps; uint8 image obs.

    Only the agent whose turn it is gets an observation (a (4, 4, 1) uint8 image filled with
    ``10 * t + offset``), and only it may act (Discrete(3)); infos carry its ``action_mask`` (int8, (3,)).
    Both agents terminate at step ``episode_length``.
    """

    metadata = {"name": "turn_taking_image_v0"}

    def __init__(self, episode_length: int = 5):
        self.possible_agents = ["even_0", "odd_0"]
        self.episode_length = episode_length
        self.agents: list[str] = []
        self.t = 0

    def observation_space(self, agent):
        return spaces.Box(0, 255, (4, 4, 1), np.uint8)

    def action_space(self, agent):
        return spaces.Discrete(3)

    def _turn(self):
        return self.possible_agents[self.t % 2]

    def _observe(self):
        agent = self._turn()
        image = np.full((4, 4, 1), (10 * self.t + self.offset) % 256, dtype=np.uint8)
        return {agent: image}, {agent: {"action_mask": np.array([1, self.t % 2, 1], dtype=np.int8)}}

    def reset(self, seed=None, options=None):
        if seed is not None or not hasattr(self, "rng"):
            self.rng = np.random.default_rng(seed)
        self.agents = list(self.possible_agents)
        self.t = 0
        self.offset = int(self.rng.integers(0, 10))
        return self._observe()

    def step(self, actions):
        acting = self._turn()
        assert set(actions) == {acting}, f"actions for {sorted(actions)}, acting: {acting}"
        assert isinstance(actions[acting], (int, np.integer)), type(actions[acting])
        self.t += 1
        rewards = {acting: float(actions[acting])}
        done = self.t >= self.episode_length
        terminations = {a: done for a in self.agents}
        truncations = {a: False for a in self.agents}
        if done:
            self.agents = []
            obs = {acting: np.full((4, 4, 1), 255, dtype=np.uint8)}
            return obs, rewards, terminations, truncations, {acting: {"final": True}}
        obs, infos = self._observe()
        return obs, rewards, terminations, truncations, infos


class CrashingEnv(DyingAgentEnv):
    """A ``DyingAgentEnv`` whose step raises ``ValueError`` at step ``crash_step``."""

    def __init__(self, crash_step: int = 2):
        super().__init__(death_step=10, max_steps=20)
        self.crash_step = crash_step

    def step(self, actions):
        if self.t + 1 >= self.crash_step:
            raise ValueError(f"boom at step {self.t + 1}")
        return super().step(actions)


class SlowEnv(DyingAgentEnv):
    """A ``DyingAgentEnv`` whose step sleeps ``delay`` seconds (for timeout and interrupt tests)."""

    def __init__(self, delay: float = 0.3):
        super().__init__(death_step=100, max_steps=200)
        self.delay = delay

    def step(self, actions):
        time.sleep(self.delay)
        return super().step(actions)


def broken_factory():
    raise RuntimeError("this factory cannot build an env")
