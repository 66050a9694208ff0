"""The communication probe: Speaker Listener reduced to its credit path.

Simple Speaker Listener is hard because the speaker's message reaches the listener one step *after* it is
sent, so the speaker learns only through its critic's bootstrapped value, and because a listener that
ignores the message still earns something (it parks at the landmarks' centre). This probe keeps exactly
those two features and nothing else, so a failure points at them:

======  ==========================================  ==================================================
step    speaker_0 sees / does                       listener_0 sees / does
======  ==========================================  ==================================================
t = 0   its cue ``c`` in {0, 1} (one-hot (2,)),     ``[0, 0]``: no message yet; its action is not
        sends a message ``m_0``                     scored
t >= 1  the same cue; sends ``m_t``                 ``[m_{t-1}, 1]``: the previous message and a
                                                    "message present" flag; its action is scored
======  ==========================================  ==================================================

An episode lasts ``episode_length`` steps (default 4). Both agents receive the same reward (cooperative):
0 at t = 0, and from t = 1 on the listener's score against the speaker's cue, as in the policy probes:
discrete ``1 if a == c else 0``; continuous ``1 - (a - t_c)^2`` with ``t_0 = -0.5``, ``t_1 = +0.5``.

Messages: ``continuous=True``: the speaker's action is ``Box(-1, 1, (1,))`` and the listener reads it as
it is (clipped); ``continuous=False``: the speaker's action is ``Discrete(2)`` and the listener reads its
index (0 or 1). Either way the speaker must *invent* the code (which message means which cue); nothing in
the env says which.

``tests/test_communication.py`` checks that MADDPG and MATD3 find a code with Box messages in 6,000 env
steps, and that a listener that cannot hear stays at the ignoring score. With Discrete messages
(Gumbel-Softmax) the same budget did not suffice: the speaker settled on one message for both cues.

Known answers, per scored step: a team that communicates earns 1. A listener that ignores the message
cannot do better than 0.5 (discrete: a coin flip) or 0.75 (continuous: always 0, halfway between the
targets); a speaker shown the wrong cue makes a communicating listener score 0 (discrete, and continuous:
``1 - 1^2``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from pettingzoo import ParallelEnv

from .base import CONTINUOUS_TARGETS, as_scalar

SPEAKER, LISTENER = "speaker_0", "listener_0"
IGNORING_LISTENER_SCORE = {False: 0.5, True: 0.75}  # per scored step: the best without the message


class CommunicationEnv(ParallelEnv):
    """Two-step speaker/listener probe (see the module docstring). ``cue_shift=1`` shows the speaker the
    other cue than the one the listener is scored on: the wrong-message ablation."""

    metadata = {"name": "communication_probe", "render_modes": []}

    def __init__(self, continuous: bool = False, cue_shift: int = 0, episode_length: int = 4):
        if episode_length < 2:
            raise ValueError(f"episode_length must be at least 2 (speak, then answer), got {episode_length}")
        self.episode_length = int(episode_length)
        self.continuous = bool(continuous)
        self.cue_shift = int(cue_shift)
        self.possible_agents = [SPEAKER, LISTENER]
        self.agents: list[str] = []
        self.render_mode = None
        self.observation_spaces = {
            SPEAKER: spaces.Box(0.0, 1.0, (2,), np.float32),
            LISTENER: spaces.Box(-1.0, 1.0, (2,), np.float32),
        }
        listener_action = spaces.Box(-1.0, 1.0, (1,), np.float32) if continuous else spaces.Discrete(2)
        speaker_action = spaces.Box(-1.0, 1.0, (1,), np.float32) if continuous else spaces.Discrete(2)
        self.action_spaces = {SPEAKER: speaker_action, LISTENER: listener_action}
        self.np_random, _ = seeding.np_random(None)
        self._t, self._cue, self._message = 0, 0, 0.0

    def observation_space(self, agent: str) -> spaces.Space:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Space:
        return self.action_spaces[agent]

    def reset(self, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.np_random, _ = seeding.np_random(seed)
        self.agents = list(self.possible_agents)
        self._t, self._cue, self._message = 0, int(self.np_random.integers(2)), 0.0
        return self._observations(has_message=False), {a: {} for a in self.agents}

    def _observations(self, has_message: bool) -> dict[str, np.ndarray]:
        speaker = np.zeros(2, np.float32)
        speaker[(self._cue + self.cue_shift) % 2] = 1.0  # what the speaker is shown
        listener = np.array([self._message, float(has_message)], np.float32)
        return {SPEAKER: speaker, LISTENER: listener}

    def step(self, actions: dict[str, Any]):
        if not self.agents:
            raise RuntimeError("step() called on a finished episode; call reset() first")
        for agent in self.possible_agents:
            if agent not in actions:
                raise KeyError(f"agent '{agent}' got no action (actions: {list(actions)})")
        # the listener answers the message it heard (sent one step earlier); then it hears the new one
        reward = 0.0 if self._t == 0 else self._score(actions[LISTENER])
        self._message = self._read_message(actions[SPEAKER])
        self._t += 1
        done = self._t >= self.episode_length
        observations = self._observations(has_message=True)
        rewards = dict.fromkeys(self.agents, reward)
        terminations = dict.fromkeys(self.agents, done)
        truncations = dict.fromkeys(self.agents, False)
        infos = {a: {} for a in self.agents}
        if done:
            self.agents = []
        return observations, rewards, terminations, truncations, infos

    def _read_message(self, action: Any) -> float:
        if self.continuous:
            return float(np.clip(as_scalar(action), -1.0, 1.0))
        index = int(np.asarray(action).reshape(()))
        if index not in (0, 1):
            raise ValueError(f"agent '{SPEAKER}': discrete message must be 0 or 1, got {index}")
        return float(index)

    def _score(self, action: Any) -> float:
        if self.continuous:
            return 1.0 - (float(np.clip(as_scalar(action), -1.0, 1.0)) - CONTINUOUS_TARGETS[self._cue]) ** 2
        index = int(np.asarray(action).reshape(()))
        if index not in (0, 1):
            raise ValueError(f"agent '{LISTENER}': discrete action must be 0 or 1, got {index}")
        return float(index == self._cue)
