"""The batch buffers a vector env and its workers write each step, in one flat block of memory.

Every per-step array of a vector env (observations, actions, rewards, done flags, ...) lives at a fixed
offset inside one byte block. ``SyncPettingZooVecEnv`` allocates that block as an ordinary numpy array;
``AsyncPettingZooVecEnv`` allocates it as a ``multiprocessing`` shared ``RawArray`` that is handed to every
worker process once, at start-up. From then on a worker writes its sub-envs' rows in place and the parent
reads them: no observation is ever pickled. Row ``i`` of every array belongs to sub-env ``i``.
"""

from __future__ import annotations

import ctypes
import multiprocessing.sharedctypes
from dataclasses import dataclass

import numpy as np
from gymnasium import spaces

# Spaces with a fixed shape and dtype, so that a batch of them is one numpy array.
SUPPORTED_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)

# Arrays start on cache-line boundaries so that numpy views are aligned.
_ALIGNMENT = 64


def space_shape_dtype(space: spaces.Space, kind: str, agent: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of one element of ``space`` (``kind`` is "observation" or "action", for errors)."""
    if not isinstance(space, SUPPORTED_SPACES):
        raise TypeError(
            f"the {kind} space of agent {agent!r} is {space}; marlkit vector envs support "
            "Box, Discrete, MultiDiscrete and MultiBinary spaces (flatten Dict/Tuple spaces with a wrapper)"
        )
    return tuple(space.shape), np.dtype(space.dtype)


def placeholder(dtype: np.dtype) -> float | int:
    """Value stored in rows of absent agents: NaN where the dtype can hold it, else 0."""
    return np.nan if np.issubdtype(dtype, np.floating) else 0


@dataclass
class Buffers:
    """Numpy views of the batch arrays. Shapes use N = num_envs and A = len(agents).

    obs[agent]        (N, *obs_shape) obs dtype   current observation (placeholder where absent)
    final_obs[agent]  (N, *obs_shape) obs dtype   last observation of an episode that just ended
    actions[agent]    (N, *act_shape) act dtype   actions to apply in the next step
    rewards           (A, N) float32              NaN where the env reported no reward
    terminations      (A, N) float32              1/0, NaN where the env reported nothing
    truncations       (A, N) float32              1/0, NaN where the env reported nothing
    active            (A, N) bool                 obs row holds a real observation
    final_mask        (A, N) bool                 final_obs row holds a real observation
    autoreset         (N,) bool                   the sub-env finished an episode and was reset in this step
    """

    obs: dict[str, np.ndarray]
    final_obs: dict[str, np.ndarray]
    actions: dict[str, np.ndarray]
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    active: np.ndarray
    final_mask: np.ndarray
    autoreset: np.ndarray


@dataclass(frozen=True)
class BufferLayout:
    """Where each batch array lives in the flat block: ``fields[name] = (shape, dtype, byte offset)``.

    The layout is a small picklable description; every process builds its own views from it.
    """

    agents: tuple[str, ...]
    fields: dict[str, tuple[tuple[int, ...], np.dtype, int]]
    nbytes: int

    @classmethod
    def create(
        cls,
        agents: tuple[str, ...],
        observation_spaces: dict[str, spaces.Space],
        action_spaces: dict[str, spaces.Space],
        num_envs: int,
    ) -> BufferLayout:
        shapes: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        for agent in agents:
            obs_shape, obs_dtype = space_shape_dtype(observation_spaces[agent], "observation", agent)
            act_shape, act_dtype = space_shape_dtype(action_spaces[agent], "action", agent)
            shapes[f"obs/{agent}"] = ((num_envs, *obs_shape), obs_dtype)
            shapes[f"final_obs/{agent}"] = ((num_envs, *obs_shape), obs_dtype)
            shapes[f"actions/{agent}"] = ((num_envs, *act_shape), act_dtype)
        per_agent = (len(agents), num_envs)
        for name in ("rewards", "terminations", "truncations"):
            shapes[name] = (per_agent, np.dtype(np.float32))
        shapes["active"] = (per_agent, np.dtype(bool))
        shapes["final_mask"] = (per_agent, np.dtype(bool))
        shapes["autoreset"] = ((num_envs,), np.dtype(bool))

        fields, offset = {}, 0
        for name, (shape, dtype) in shapes.items():
            fields[name] = (shape, dtype, offset)
            size = int(np.prod(shape)) * dtype.itemsize
            offset += -(-size // _ALIGNMENT) * _ALIGNMENT  # round up to the next aligned offset
        return cls(tuple(agents), fields, max(offset, _ALIGNMENT))

    def allocate(self, shared: bool) -> np.ndarray | ctypes.Array:
        """A zeroed block: a shared-memory ``RawArray`` (passed to worker processes) or a numpy array."""
        if shared:
            return multiprocessing.sharedctypes.RawArray(ctypes.c_uint8, self.nbytes)
        return np.zeros(self.nbytes, dtype=np.uint8)

    def views(self, memory: np.ndarray | ctypes.Array) -> Buffers:
        """Numpy views into ``memory`` (no copy): writes through them are seen by every process."""
        block = np.frombuffer(memory, dtype=np.uint8)
        arrays = {}
        for name, (shape, dtype, offset) in self.fields.items():
            size = int(np.prod(shape)) * dtype.itemsize
            arrays[name] = block[offset : offset + size].view(dtype).reshape(shape)
        by_agent = {
            kind: {agent: arrays[f"{kind}/{agent}"] for agent in self.agents}
            for kind in ("obs", "final_obs", "actions")
        }
        return Buffers(
            **by_agent,
            **{name: arrays[name] for name in Buffers.__dataclass_fields__ if name in arrays},
        )
