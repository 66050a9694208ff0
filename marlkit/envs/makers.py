"""Environment makers used by the notebooks, the CLI and the tests.

Both makers are plain module-level functions, so ``lambda: make_speaker_listener()`` (or
``functools.partial(make_space_invaders, max_cycles=200)``) is a valid env factory for the vector envs.

* ``make_speaker_listener``: MPE Simple Speaker Listener (from ``mpe2``; PettingZoo 1.27 no longer ships MPE).
* ``make_space_invaders``: two-player Atari Space Invaders with the standard DQN preprocessing, returning
  channels-first ``uint8 (frame_stack, 84, 84)`` observations ready for a CNN.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import supersuit as ss
from mpe2 import simple_speaker_listener_v4
from pettingzoo import ParallelEnv
from pettingzoo.utils import BaseParallelWrapper

SPACE_INVADERS_ROM = "space_invaders.bin"


def make_speaker_listener(
    continuous_actions: bool = True,
    max_cycles: int = 25,
    render_mode: str | None = None,
    **kwargs: Any,
) -> ParallelEnv:
    """Simple Speaker Listener as a PettingZoo ``ParallelEnv``.

    Agents ``speaker_0`` and ``listener_0``:

    =============  ===================  ==========================  =================
    agent          observation          continuous action           discrete action
    =============  ===================  ==========================  =================
    speaker_0      float32 (3,)         Box(0, 1, (3,))             Discrete(3)
    listener_0     float32 (11,)        Box(0, 1, (5,))             Discrete(5)
    =============  ===================  ==========================  =================

    ``max_cycles`` is the episode length in steps; extra ``kwargs`` go to ``mpe2`` unchanged.
    """
    return simple_speaker_listener_v4.parallel_env(
        continuous_actions=continuous_actions, max_cycles=max_cycles, render_mode=render_mode, **kwargs
    )


# --------------------------------------------------------------------------------------------------
# Space Invaders
# --------------------------------------------------------------------------------------------------


def default_rom_dir() -> Path:
    """The folder of Atari ROMs that ships inside the ``ale-py`` wheel (``ale_py/roms``)."""
    return Path(str(importlib.resources.files("ale_py.roms")))


def find_space_invaders_rom(rom_dir: str | Path | None = None) -> Path:
    """Return the folder holding ``space_invaders.bin``; raise ``FileNotFoundError`` naming where we looked."""
    folder = Path(rom_dir) if rom_dir is not None else default_rom_dir()
    if not (folder / SPACE_INVADERS_ROM).is_file():
        raise FileNotFoundError(
            f"Space Invaders ROM not found: expected '{SPACE_INVADERS_ROM}' in folder '{folder}'. "
            "The ROMs ship with the ale-py package (ale_py/roms); reinstall ale-py>=0.9 or pass "
            "rom_dir=<folder containing space_invaders.bin>."
        )
    return folder


class ChannelsFirst(BaseParallelWrapper):
    """Transpose every image observation from ``(H, W, C)`` to ``(C, H, W)``.

    This is a real transposition (``np.transpose(obs, (2, 0, 1))``), not a reshape: channel ``k`` of the
    output is channel ``k`` of the input. ``supersuit.reshape_v0`` would keep the memory order and scramble
    the pixels. The result is a fresh contiguous array each step, which also means a replay buffer that
    stores it without copying cannot be corrupted later (supersuit's frame stack updates its buffer in place).
    """

    def __init__(self, env: ParallelEnv):
        super().__init__(env)
        self._spaces = {}
        for agent in env.possible_agents:
            space = env.observation_space(agent)
            if not (isinstance(space, gymnasium.spaces.Box) and len(space.shape) == 3):
                raise ValueError(f"ChannelsFirst expects (H, W, C) Box observations, got {space} for agent '{agent}'")
            self._spaces[agent] = gymnasium.spaces.Box(
                low=np.transpose(space.low, (2, 0, 1)),
                high=np.transpose(space.high, (2, 0, 1)),
                dtype=space.dtype,
            )

    def observation_space(self, agent: str) -> gymnasium.spaces.Box:
        return self._spaces[agent]

    @staticmethod
    def _transpose(observations: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # .copy() always allocates (ascontiguousarray would return a view when C == 1)
        return {agent: np.transpose(obs, (2, 0, 1)).copy() for agent, obs in observations.items()}

    def reset(self, seed: int | None = None, options: dict | None = None):
        observations, infos = self.env.reset(seed=seed, options=options)
        return self._transpose(observations), infos

    def step(self, actions: dict[str, Any]):
        observations, rewards, terminations, truncations, infos = self.env.step(actions)
        return self._transpose(observations), rewards, terminations, truncations, infos


def make_space_invaders(
    max_cycles: int = 25_000,
    render_mode: str | None = None,
    frame_stack: int = 4,
    frame_skip: int = 4,
    clip_rewards: bool = True,
    rom_dir: str | Path | None = None,
    **kwargs: Any,
) -> ParallelEnv:
    """Two-player Space Invaders (``first_0``, ``second_0``) with standard Atari preprocessing.

    Observation: ``uint8 (frame_stack, 84, 84)``, channel ``k`` is the ``k``-th stacked frame, oldest first
    (channel ``-1`` is the newest). Action: ``Discrete(6)`` per agent. Reward: summed over the skipped
    frames, then clipped to ``[-1, 1]`` when ``clip_rewards``.

    ``max_cycles`` counts agent steps (decisions); the emulator runs ``max_cycles * frame_skip`` frames
    (the default is PettingZoo's 100,000 frames).
    ``rom_dir`` defaults to the ROM folder inside ``ale-py``. Extra ``kwargs`` go to ``space_invaders_v2``.

    The wrapper order matters (innermost first):

    1. ``max_observation_v0(env, 2)``: pixel-wise max of the last two raw frames, because Atari sprites
       flicker (drawn only every other frame). It must sit *inside* the frame skip so the max is over the
       last two frames of each skipped block, as in DQN's ``MaxAndSkip``; outside it would max frames 4 apart.
    2. ``frame_skip_v0(env, frame_skip)``: repeat each action and sum the rewards.
    3. ``clip_reward_v0``: clips the *summed* reward of one agent step, so it goes after the skip.
    4. ``color_reduction_v0(env, "full")`` then ``resize_v1(84, 84)``: grayscale first so we resize one
       channel instead of three.
    5. ``frame_stack_v1``: stacks the processed 84x84 frames on the last axis (stacking raw frames, or
       before the skip, would stack the wrong things).
    6. ``ChannelsFirst``: transposes ``(84, 84, k)`` to ``(k, 84, 84)`` for PyTorch convolutions.
       (supersuit's ``stack_dim=0`` would avoid this, but for 2-D frames ``frame_stack_v1`` writes the
       newest frame into the wrong slots with it, so we stack on the last axis and transpose.)
    """
    rom_folder = find_space_invaders_rom(rom_dir)
    try:
        # the module behind `pettingzoo.atari.space_invaders_v2` (importing it by that name now warns
        # that the old creation API is deprecated; pettingzoo's own registry points here too)
        from pettingzoo.atari.space_invaders import space_invaders as space_invaders_v2
    except ModuleNotFoundError as error:  # PettingZoo's multi-player Atari needs a separate emulator build
        raise ImportError(
            f"PettingZoo's Atari environments need the 'multi-agent-ale-py' package ({error}); "
            "install it with `pip install multi-agent-ale-py`."
        ) from error

    env = space_invaders_v2.parallel_env(
        max_cycles=max_cycles * frame_skip,
        render_mode=render_mode,
        auto_rom_install_path=str(rom_folder),
        **kwargs,
    )
    env = ss.max_observation_v0(env, 2)
    env = ss.frame_skip_v0(env, frame_skip)
    if clip_rewards:  # supersuit has no parallel version of this one: it converts to AEC and back inside
        env = ss.clip_reward_v0(env, lower_bound=-1, upper_bound=1)
    env = ss.color_reduction_v0(env, mode="full")
    env = ss.resize_v1(env, x_size=84, y_size=84)
    env = ss.frame_stack_v1(env, stack_size=frame_stack)
    return ChannelsFirst(env)
