"""Gymnasium spaces as network inputs and outputs.

Three jobs, all small:

* a space <-> plain-dict round trip, so a network's `config` holds only ints/floats/strs/lists
  (checkpoints then load with `torch.load(weights_only=True)`);
* which encoder a space needs (`"mlp"` for vectors, `"cnn"` for images) and with how many inputs;
* turning a batch of raw observations / actions into float features, with a cheap shape check that
  fails with a readable `ValueError` instead of a matmul error deep inside torch.

Shape conventions (every tensor has exactly one leading batch dimension):

=====================  ======================  ==========================================
space                  raw batch               features
=====================  ======================  ==========================================
Box (n,) / (a, b)      (B, n) / (B, a, b)      (B, n) / (B, a*b)   float
Box image (C, H, W)    (B, C, H, W) uint8      (B, C, H, W) float in [0, 1]
Box image (H, W, C)    (B, H, W, C) uint8      (B, C, H, W) float in [0, 1] (transposed)
Discrete(n)            (B,) or (B, 1) int      (B, n) one-hot
MultiDiscrete([n, m])  (B, 2) int              (B, n + m) concatenated one-hots
MultiBinary(n)         (B, n) 0/1              (B, n) float
=====================  ======================  ==========================================
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces

SpaceLike = spaces.Space | dict


# --------------------------------------------------------------------------------------------------
# space <-> plain dict
# --------------------------------------------------------------------------------------------------
def _bound_to_plain(bound: np.ndarray) -> Any:
    """A Box bound as a scalar when it is uniform (images: 0 and 255), else as a nested list."""
    flat = bound.reshape(-1)
    if flat.size > 0 and np.all(flat == flat[0]):
        return flat[0].item()
    return bound.tolist()


def space_to_config(space: SpaceLike) -> dict:
    """A plain dict that `space_from_config` turns back into an equal space."""
    if isinstance(space, dict):
        return dict(space)
    if isinstance(space, spaces.Box):
        return {
            "type": "Box",
            "low": _bound_to_plain(space.low),
            "high": _bound_to_plain(space.high),
            "shape": list(space.shape),
            "dtype": np.dtype(space.dtype).name,
        }
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": space.nvec.tolist(), "start": space.start.tolist()}
    if isinstance(space, spaces.MultiBinary):
        return {"type": "MultiBinary", "n": int(space.n) if np.ndim(space.n) == 0 else list(space.n)}
    raise ValueError(f"unsupported space {space!r}; expected Box, Discrete, MultiDiscrete or MultiBinary")


def space_from_config(space: SpaceLike) -> spaces.Space:
    """Inverse of `space_to_config`; a gymnasium space passes through unchanged."""
    if isinstance(space, spaces.Space):
        return space
    kind = space.get("type")
    if kind == "Box":
        dtype = np.dtype(space["dtype"])
        # a scalar bound stays a scalar (gymnasium broadcasts it to `shape`); a list becomes an array
        low, high = (np.asarray(b, dtype=dtype) if isinstance(b, list) else b for b in (space["low"], space["high"]))
        return spaces.Box(low=low, high=high, shape=tuple(space["shape"]), dtype=dtype)
    if kind == "Discrete":
        return spaces.Discrete(space["n"], start=space.get("start", 0))
    if kind == "MultiDiscrete":
        return spaces.MultiDiscrete(space["nvec"], start=space.get("start"))
    if kind == "MultiBinary":
        return spaces.MultiBinary(space["n"])
    raise ValueError(f"unsupported space config {space!r}; 'type' must be Box, Discrete, MultiDiscrete or MultiBinary")


# --------------------------------------------------------------------------------------------------
# which encoder, how many features
# --------------------------------------------------------------------------------------------------
def is_image_space(space: spaces.Space) -> bool:
    """3-D Boxes are images; everything else is flattened into a vector."""
    return isinstance(space, spaces.Box) and len(space.shape) == 3


def is_channels_last(space: spaces.Space) -> bool:
    """(H, W, C) with C in 1, 3, 4 and a larger first dim, e.g. (84, 84, 4) or (210, 160, 3)."""
    return is_image_space(space) and space.shape[-1] in (1, 3, 4) and space.shape[0] > 4


def encoder_kind(space: spaces.Space) -> str:
    """"cnn" for images, "mlp" for everything else."""
    return "cnn" if is_image_space(space) else "mlp"


def image_shape(space: spaces.Space) -> tuple[int, int, int]:
    """(C, H, W) as the CNN sees it, whichever layout the space uses."""
    h_w_c = space.shape
    return (h_w_c[2], h_w_c[0], h_w_c[1]) if is_channels_last(space) else tuple(space.shape)


def flat_dim(space: spaces.Space) -> int:
    """Number of features a vector space becomes (one-hots for discrete spaces)."""
    if isinstance(space, spaces.Box):
        return int(np.prod(space.shape))
    if isinstance(space, spaces.Discrete):
        return int(space.n)
    if isinstance(space, spaces.MultiDiscrete):
        return int(space.nvec.sum())
    if isinstance(space, spaces.MultiBinary):
        return int(np.prod(space.shape))
    raise ValueError(f"unsupported space {space!r}; expected Box, Discrete, MultiDiscrete or MultiBinary")


# --------------------------------------------------------------------------------------------------
# raw batch -> features
# --------------------------------------------------------------------------------------------------
def _shape_error(what: str, space: spaces.Space, expected: str, x: torch.Tensor) -> ValueError:
    return ValueError(f"expected {what} of shape {expected} for {space}, got {tuple(x.shape)}")


def _batch_shape(shape: tuple) -> str:
    return "(" + ", ".join(["batch", *map(str, shape)]) + ")"


def _one_hots(x: torch.Tensor, nvec: np.ndarray) -> torch.Tensor:
    """(B, k) integer -> (B, sum(nvec)) concatenated one-hots."""
    x = x.long()
    return torch.cat([F.one_hot(x[:, i], int(n)) for i, n in enumerate(nvec)], dim=-1).float()


def preprocess_observation(obs: torch.Tensor, space: spaces.Space) -> torch.Tensor:
    """Raw batch -> float features (see the module table). Raises ValueError on a shape mismatch."""
    if isinstance(space, spaces.Box):
        if obs.dim() != len(space.shape) + 1 or obs.shape[1:] != space.shape:
            raise _shape_error("observation", space, _batch_shape(space.shape), obs)
        if is_image_space(space):
            x = obs.float()
            if space.dtype == np.uint8:
                x = x / 255.0  # pixels -> [0, 1]; decided by the space, so uint8 can be stored as uint8
            return x.permute(0, 3, 1, 2) if is_channels_last(space) else x
        return obs.float().reshape(obs.shape[0], -1)
    if isinstance(space, spaces.Discrete):
        if obs.dim() == 2 and obs.shape[1] == 1:
            obs = obs[:, 0]
        if obs.dim() != 1:
            raise _shape_error("observation", space, "(batch,) or (batch, 1)", obs)
        return F.one_hot(obs.long() - int(space.start), int(space.n)).float()
    if isinstance(space, spaces.MultiDiscrete):
        if obs.dim() != 2 or obs.shape[1:] != space.shape:
            raise _shape_error("observation", space, _batch_shape(space.shape), obs)
        return _one_hots(obs - torch.as_tensor(space.start, device=obs.device), space.nvec)
    if isinstance(space, spaces.MultiBinary):
        if obs.dim() != len(space.shape) + 1 or obs.shape[1:] != space.shape:
            raise _shape_error("observation", space, _batch_shape(space.shape), obs)
        return obs.float().reshape(obs.shape[0], -1)
    raise ValueError(f"unsupported observation space {space!r}")


def action_features(action: torch.Tensor, space: spaces.Space) -> torch.Tensor:
    """An action batch as critic input features: (B, flat_dim(space)) float.

    Discrete actions may be indices (B,) / (B, 1) or already one-hot / probabilities (B, n) float
    (the differentiable output of `DeterministicActor`); MultiDiscrete likewise (B, k) int or
    (B, sum(nvec)) float.
    """
    if isinstance(space, spaces.Discrete):
        n = int(space.n)
        if action.is_floating_point() and action.dim() == 2 and action.shape[1] == n:
            return action
        if not action.is_floating_point():
            return preprocess_observation(action, space)
        raise _shape_error("action", space, f"(batch, {n}) float one-hot or (batch,) int", action)
    if isinstance(space, spaces.MultiDiscrete):
        total = int(space.nvec.sum())
        if action.is_floating_point() and action.dim() == 2 and action.shape[1] == total:
            return action
        if not action.is_floating_point():
            return preprocess_observation(action, space)
        raise _shape_error("action", space, f"(batch, {total}) float one-hots or (batch, {len(space.nvec)}) int",
                           action)
    if isinstance(space, (spaces.Box, spaces.MultiBinary)):
        if action.dim() != len(space.shape) + 1 or action.shape[1:] != space.shape:
            raise _shape_error("action", space, _batch_shape(space.shape), action)
        return action.float().reshape(action.shape[0], -1)
    raise ValueError(f"unsupported action space {space!r}")
