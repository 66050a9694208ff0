"""Exploration noise for deterministic continuous-action policies (MADDPG, MATD3).

One noise state per sub-env: episodes in a vector env end at different times, and an
Ornstein-Uhlenbeck process must restart from its mean when *its* episode restarts, not when some other
sub-env's does. ``reset(indices)`` restarts only the given rows.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch


class ActionNoise:
    """Gaussian or Ornstein-Uhlenbeck noise of shape ``(num_envs, action_dim)``.

    Ornstein-Uhlenbeck (``ou=True``), per step::

        x <- x + theta * (mean - x) * dt + scale * sqrt(dt) * N(0, 1)

    Gaussian (``ou=False``): ``mean + scale * N(0, 1)``, independent across steps.

    Args:
        num_envs: number of sub-envs (rows).
        action_dim: size of one action vector.
        scale: noise standard deviation (the guide's ``expl_noise``); may be changed at any time.
        mean: mean of the process (``mean_noise``).
        theta: rate of mean reversion (``theta``).
        dt: time step of the process (``dt``).
        ou: use Ornstein-Uhlenbeck (``O_U_noise``) rather than Gaussian noise.
        rng: the random generator; pass a seeded one for reproducible runs.
    """

    def __init__(
        self,
        num_envs: int,
        action_dim: int,
        scale: float = 0.1,
        mean: float = 0.0,
        theta: float = 0.15,
        dt: float = 0.01,
        ou: bool = True,
        rng: np.random.Generator | None = None,
    ) -> None:
        self.num_envs, self.action_dim = int(num_envs), int(action_dim)
        self.scale, self.mean, self.theta, self.dt, self.ou = float(scale), float(mean), theta, dt, ou
        self.rng = rng if rng is not None else np.random.default_rng()
        self.state = np.full((self.num_envs, self.action_dim), self.mean, dtype=np.float32)

    def sample(self) -> np.ndarray:
        """Advance the process one step and return the noise ``(num_envs, action_dim)``."""
        gauss = self.rng.standard_normal(self.state.shape).astype(np.float32)
        if not self.ou:
            return self.mean + self.scale * gauss
        self.state += self.theta * (self.mean - self.state) * self.dt + self.scale * np.sqrt(self.dt) * gauss
        return self.state.copy()

    def reset(self, indices: Iterable[int] | None = None) -> None:
        """Restart the process of the given sub-envs (all when ``indices`` is None)."""
        if indices is None:
            self.state[:] = self.mean
            return
        idx = list(indices)
        if idx:
            self.state[idx] = self.mean

    def state_dict(self) -> dict:
        """Plain data for a checkpoint (no pickled objects)."""
        return {
            "state": torch.from_numpy(self.state.copy()),  # a tensor: loads with weights_only=True
            "scale": self.scale,
            "mean": self.mean,
            "theta": self.theta,
            "dt": self.dt,
            "ou": self.ou,
        }

    def load_state_dict(self, d: dict) -> None:
        self.state = np.asarray(d["state"], dtype=np.float32).copy()  # accepts a tensor or an array
        self.num_envs, self.action_dim = self.state.shape
        self.scale, self.mean, self.theta, self.dt, self.ou = d["scale"], d["mean"], d["theta"], d["dt"], d["ou"]
