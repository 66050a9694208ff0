"""Experience replay for multi-agent off-policy learning.

``MultiAgentReplayBuffer`` stores transitions as preallocated circular numpy arrays, one array per
(field, agent) pair. There are no per-transition Python objects, so saving a batch from 8 sub-envs is
a handful of slice assignments, and sampling is one fancy-index per array.

Dtypes are preserved: uint8 images stay uint8 in memory (4x smaller than float32) and stay uint8 in the
sampled tensors; the networks scale images by 1/255 themselves. float64 inputs are stored as float32.

Absent agents (see ``marlkit.envs.vector``) arrive as NaN placeholders. The buffer stores them as they
are: it does not know which field is a reward and which a done flag, so the algorithm that reads a
sample decides what NaN means (``marlkit.algorithms.base.sanitise_transition``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch


class MultiAgentReplayBuffer:
    """A circular buffer of multi-agent transitions.

    Args:
        memory_size: maximum number of transitions kept; the oldest are overwritten first.
        field_names: names of the stored fields, e.g. ``["state", "action", "reward", "next_state", "done"]``.
            ``save_to_memory`` takes the fields in this order and ``sample`` returns them in this order.
        agent_ids: the agents whose data every field holds.
        device: where sampled tensors are placed (``"cpu"``, ``"cuda"``, a ``torch.device``).
        seed: seeds the sampling generator (the same seed gives the same batches).

    Shapes: a field of agent ``a`` with per-transition shape ``S`` is stored as ``(memory_size, *S)``;
    a sample of ``batch_size`` returns ``{a: tensor (batch_size, *S)}`` for each field. Scalar fields
    (rewards, dones) have ``S == ()``.
    """

    def __init__(
        self,
        memory_size: int,
        field_names: Sequence[str],
        agent_ids: Sequence[str],
        device: str | torch.device | None = None,
        seed: int | None = None,
    ) -> None:
        if int(memory_size) <= 0:
            raise ValueError(f"memory_size must be a positive integer, got {memory_size!r}")
        if len(field_names) == 0:
            raise ValueError("field_names must name at least one field")
        if len(set(field_names)) != len(field_names):
            raise ValueError(f"field_names contains duplicates: {list(field_names)}")
        self.memory_size = int(memory_size)
        self.field_names = list(field_names)
        self.agent_ids = list(agent_ids)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.rng = np.random.default_rng(seed)
        self.counter = 0  # transitions ever saved (the guide's ``memory.counter``)
        self._size = 0  # transitions currently held
        self._pos = 0  # next slot to write
        # storage[field][agent] -> np.ndarray (memory_size, *shape); allocated on the first save so
        # shapes and dtypes come from the data itself.
        self._storage: dict[str, dict[str, np.ndarray]] | None = None

    def __len__(self) -> int:
        return self._size

    @property
    def nbytes(self) -> int:
        """Bytes reserved by the storage arrays (0 before the first save)."""
        if self._storage is None:
            return 0
        return sum(arr.nbytes for per_agent in self._storage.values() for arr in per_agent.values())

    # ------------------------------------------------------------------ saving
    def _as_batch(self, name: str, field: Mapping, is_vectorised: bool) -> dict[str, np.ndarray]:
        """Check one field and return ``{agent: array (n, *S)}``."""
        if not isinstance(field, Mapping):
            raise TypeError(f"field '{name}' must be a dict keyed by agent id, got {type(field).__name__}")
        missing = [a for a in self.agent_ids if a not in field]
        if missing:
            raise ValueError(f"field '{name}' has no entry for agent(s) {missing}; expected keys {self.agent_ids}")
        out = {}
        for agent in self.agent_ids:
            value = field[agent]
            if isinstance(value, torch.Tensor):
                value = value.detach().cpu().numpy()
            arr = np.asarray(value)
            if not is_vectorised:
                arr = arr[None]  # a single transition is a batch of one
            elif arr.ndim == 0:
                raise ValueError(
                    f"field '{name}' of agent '{agent}' is a scalar but is_vectorised=True "
                    "expects a leading num_envs axis"
                )
            out[agent] = arr
        return out

    def _allocate(self, batches: list[dict[str, np.ndarray]]) -> None:
        self._storage = {}
        for name, batch in zip(self.field_names, batches):
            self._storage[name] = {}
            for agent, arr in batch.items():
                dtype = np.float32 if arr.dtype == np.float64 else arr.dtype
                # np.empty only reserves virtual memory: pages are committed as they are written,
                # so a large, never-filled buffer costs little.
                self._storage[name][agent] = np.empty((self.memory_size, *arr.shape[1:]), dtype=dtype)

    def save_to_memory(self, *fields: Mapping, is_vectorised: bool = False) -> None:
        """Append transitions.

        Args:
            *fields: one ``{agent_id: value}`` dict per name in ``field_names``, in that order.
            is_vectorised: ``True`` when every value has a leading ``num_envs`` axis (output of a vector
                env); ``False`` for a single transition.
        """
        if len(fields) != len(self.field_names):
            raise ValueError(
                f"save_to_memory got {len(fields)} fields but the buffer was built with "
                f"{len(self.field_names)}: {self.field_names}"
            )
        batches = [self._as_batch(n, f, is_vectorised) for n, f in zip(self.field_names, fields)]
        sizes = {arr.shape[0] for batch in batches for arr in batch.values()}
        if len(sizes) != 1:
            raise ValueError(f"all fields must hold the same number of transitions, got sizes {sorted(sizes)}")
        n = sizes.pop()
        if self._storage is None:
            self._allocate(batches)
        assert self._storage is not None
        # Write positions wrap around the circular buffer.
        idx = (self._pos + np.arange(n)) % self.memory_size
        for name, batch in zip(self.field_names, batches):
            for agent, arr in batch.items():
                store = self._storage[name][agent]
                if arr.shape[1:] != store.shape[1:]:
                    raise ValueError(
                        f"field '{name}' of agent '{agent}' has per-transition shape {arr.shape[1:]}, "
                        f"but earlier transitions had {store.shape[1:]}"
                    )
                if n == 1 or idx[0] + n <= self.memory_size:
                    store[idx[0] : idx[0] + n] = arr  # contiguous fast path
                else:
                    store[idx] = arr
        self._pos = int((self._pos + n) % self.memory_size)
        self._size = min(self._size + n, self.memory_size)
        self.counter += n

    # ---------------------------------------------------------------- sampling
    def sample_indices(self, batch_size: int) -> np.ndarray:
        """Uniformly random slots ``(batch_size,)``, with replacement."""
        if self._size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        return self.rng.integers(0, self._size, size=int(batch_size))

    def sample(self, batch_size: int, return_idx: bool = False) -> list[dict[str, torch.Tensor]]:
        """Sample ``batch_size`` transitions uniformly at random (with replacement).

        Returns:
            one ``{agent_id: tensor (batch_size, *S)}`` dict per field, in ``field_names`` order
            (with the sampled indices appended when ``return_idx``).
        """
        idx = self.sample_indices(batch_size)
        out = self.sample_from_indices(idx)
        if return_idx:
            out.append(idx)
        return out

    def sample_from_indices(self, idx: np.ndarray) -> list[dict[str, torch.Tensor]]:
        """Gather the transitions at slots ``idx`` as tensors on ``device``."""
        assert self._storage is not None
        return [
            {
                agent: torch.from_numpy(arr[idx]).to(self.device, non_blocking=True)
                for agent, arr in self._storage[name].items()
            }
            for name in self.field_names
        ]

    def clear(self) -> None:
        """Forget every transition (storage stays allocated)."""
        self._size = 0
        self._pos = 0
        self.counter = 0
