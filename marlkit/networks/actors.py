"""Actors: an EvolvableNetwork whose outputs become actions.

* `DeterministicActor` (MADDPG, MATD3): one action per observation, differentiable so the critic's
  gradient reaches the actor. Box -> tanh scaled to the action bounds; Discrete -> a one-hot from the
  logits (Gumbel-Softmax with a straight-through gradient in training mode, argmax in eval mode).
* `StochasticActor` (IPPO): a distribution per observation (see distributions.py). Box -> Gaussian
  with a state-independent log-std; Discrete / MultiDiscrete -> Categorical(s); MultiBinary ->
  Bernoulli.

Both take `action_mask` (B, n) for discrete spaces (1 = allowed), delegate mutations to their
network (records as in network.py) and set the head's output activation themselves (any
`output_activation` in `head_config` is replaced).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import nn

from marlkit.networks.config import check_net_config
from marlkit.networks.distributions import (
    ActionDistribution,
    BernoulliActions,
    CategoricalActions,
    GaussianActions,
    MultiCategoricalActions,
    mask_logits,
)
from marlkit.networks.evolvable import EvolvableModule
from marlkit.networks.network import EvolvableNetwork
from marlkit.networks.spaces import SpaceLike, space_from_config, space_to_config

GUMBEL_TEMPERATURE = 1.0


def _network(observation_space: spaces.Space, num_outputs: int, net_config: dict | None,
             output_activation: str | None, where: str) -> EvolvableNetwork:
    """The actor's body, with the head's output activation fixed by the actor."""
    config = copy.deepcopy(check_net_config(net_config, where))
    config["head_config"] = {**(config.get("head_config") or {}), "output_activation": output_activation}
    return EvolvableNetwork(observation_space, num_outputs, **config)


class _ActorBase(EvolvableModule):
    """Shared plumbing: spaces, config and mutations delegated to `self.net`."""

    net: EvolvableNetwork

    @property
    def config(self) -> dict:
        return {
            "observation_space": space_to_config(self.observation_space),
            "action_space": space_to_config(self.action_space),
            "net_config": self.net.net_config,
        }

    @property
    def mutation_methods(self) -> list[str]:
        return self.net.mutation_methods

    @property
    def qualified_mutation_methods(self) -> list[str]:
        return self.net.qualified_mutation_methods

    def sample_mutation(self, method: str, rng: np.random.Generator) -> dict:
        return self.net.sample_mutation(method, rng)

    def apply_mutation(self, record: dict) -> None:
        self.net.apply_mutation(record)


class DeterministicActor(_ActorBase):
    """obs (B, *obs_shape) -> action: Box (B, d) within the bounds, Discrete (B, n) one-hot."""

    def __init__(self, observation_space: SpaceLike, action_space: SpaceLike, net_config: dict | None = None):
        super().__init__()
        self.observation_space = space_from_config(observation_space)
        self.action_space = space_from_config(action_space)
        where = "DeterministicActor net_config"
        if isinstance(self.action_space, spaces.Box):
            if len(self.action_space.shape) != 1:
                raise ValueError(f"DeterministicActor needs a 1-D Box action space, got {self.action_space}")
            low, high = self.action_space.low.astype(np.float32), self.action_space.high.astype(np.float32)
            if not (np.isfinite(low).all() and np.isfinite(high).all()):
                raise ValueError(f"DeterministicActor scales tanh to the action bounds, which must be finite; "
                                 f"got {self.action_space}")
            # action = bias + scale * tanh(out) maps (-1, 1) onto (low, high); buffers follow .to(device)
            self.register_buffer("action_scale", torch.as_tensor((high - low) / 2), persistent=False)
            self.register_buffer("action_bias", torch.as_tensor((high + low) / 2), persistent=False)
            self.discrete = False
            # tanh is applied in forward(), not in the head, so the pre-activation stays reachable
            # (MADDPG penalises it to keep tanh out of saturation, where its gradient vanishes)
            self.net = _network(self.observation_space, low.size, net_config, None, where)
        elif isinstance(self.action_space, spaces.Discrete):
            self.discrete = True
            self.net = _network(self.observation_space, int(self.action_space.n), net_config, None, where)
        else:
            raise ValueError(f"DeterministicActor supports Box and Discrete action spaces, got {self.action_space}")

    def logits(self, obs: torch.Tensor, action_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Discrete only: masked logits (B, n)."""
        if not self.discrete:
            raise ValueError(f"logits() is for Discrete action spaces; this actor acts in {self.action_space}")
        return mask_logits(self.net(obs), action_mask)

    def forward(self, obs: torch.Tensor, action_mask: torch.Tensor | None = None) -> torch.Tensor:
        """obs (B, *obs_shape) -> Box: (B, d) in [low, high]; Discrete: (B, n) one-hot.

        Discrete in training mode: a hard Gumbel-Softmax sample whose gradient is that of the soft
        sample (straight-through), so a critic's gradient reaches the logits. In eval mode: the
        argmax one-hot (greedy).
        """
        return self.forward_with_preactivation(obs, action_mask)[0]

    def forward_with_preactivation(
        self, obs: torch.Tensor, action_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(action as in forward(), pre-activation (B, d) or (B, n)): pre-tanh outputs or unmasked logits."""
        out = self.net.forward(obs)  # (not self.net(obs): see EvolvableMLP.forward)
        if not self.discrete:
            if action_mask is not None:
                raise ValueError(f"action masks are for Discrete action spaces; this actor acts in {self.action_space}")
            return self.action_bias + self.action_scale * torch.tanh(out), out
        logits = mask_logits(out, action_mask)
        if self.training:
            return F.gumbel_softmax(logits, tau=GUMBEL_TEMPERATURE, hard=True), out
        return F.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype), out

    def to_env_action(self, action: torch.Tensor) -> torch.Tensor:
        """The forward() output in the env's format: Box unchanged (B, d); Discrete indices (B,) long."""
        if self.discrete:
            return action.argmax(-1) + int(self.action_space.start)
        return action


class StochasticActor(_ActorBase):
    """obs (B, *obs_shape) -> action distribution with sample(), log_prob(a), entropy(), mode().

    `action_std_init` is the initial log standard deviation of Box actions (AgileRL's convention:
    0.0 means std 1.0); the log-std is a learnt parameter shared by all states.
    """

    def __init__(self, observation_space: SpaceLike, action_space: SpaceLike, net_config: dict | None = None,
                 action_std_init: float = 0.0):
        super().__init__()
        self.observation_space = space_from_config(observation_space)
        self.action_space = space_from_config(action_space)
        self.action_std_init = float(action_std_init)
        space, where = self.action_space, "StochasticActor net_config"
        if isinstance(space, spaces.Box):
            if len(space.shape) != 1:
                raise ValueError(f"StochasticActor needs a 1-D Box action space, got {space}")
            num_outputs = space.shape[0]
            self.log_std = nn.Parameter(torch.full((num_outputs,), self.action_std_init))
            self.register_buffer("action_low", torch.as_tensor(space.low, dtype=torch.float32), persistent=False)
            self.register_buffer("action_high", torch.as_tensor(space.high, dtype=torch.float32), persistent=False)
        elif isinstance(space, spaces.Discrete):
            num_outputs = int(space.n)
        elif isinstance(space, spaces.MultiDiscrete):
            if space.nvec.ndim != 1:
                raise ValueError(f"StochasticActor needs a 1-D MultiDiscrete action space, got {space}")
            self.nvec = [int(n) for n in space.nvec]
            num_outputs = sum(self.nvec)
        elif isinstance(space, spaces.MultiBinary):
            if len(space.shape) != 1:
                raise ValueError(f"StochasticActor needs a 1-D MultiBinary action space, got {space}")
            num_outputs = space.shape[0]
        else:
            raise ValueError(f"StochasticActor supports Box, Discrete, MultiDiscrete and MultiBinary action "
                             f"spaces, got {space}")
        self.net = _network(self.observation_space, num_outputs, net_config, None, where)

    @property
    def config(self) -> dict:
        return {**super().config, "action_std_init": self.action_std_init}

    def forward(self, obs: torch.Tensor, action_mask: torch.Tensor | None = None) -> ActionDistribution:
        """obs (B, *obs_shape), action_mask (B, n) or (B, sum(nvec)) -> distribution over (B,) actions."""
        out = self.net(obs)
        space = self.action_space
        if isinstance(space, spaces.Discrete):
            return CategoricalActions(mask_logits(out, action_mask))
        if isinstance(space, spaces.MultiDiscrete):
            return MultiCategoricalActions(mask_logits(out, action_mask), self.nvec)
        if action_mask is not None:
            raise ValueError(f"action masks are for Discrete and MultiDiscrete action spaces, not {space}")
        if isinstance(space, spaces.Box):
            return GaussianActions(out, self.log_std)
        return BernoulliActions(out)

    def to_env_action(self, action: torch.Tensor) -> torch.Tensor:
        """A sampled action in the env's format: Box clipped to the bounds, discrete indices offset by `start`."""
        space = self.action_space
        if isinstance(space, spaces.Box):
            return torch.clamp(action, self.action_low, self.action_high)
        if isinstance(space, (spaces.Discrete, spaces.MultiDiscrete)):
            return action + torch.as_tensor(space.start, device=action.device)
        return action
