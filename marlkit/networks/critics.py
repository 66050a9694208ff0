"""Critics: an EvolvableNetwork with one scalar output per sample.

* `ValueCritic` (IPPO): V(obs) -> (B,).
* `QCritic` (MADDPG, MATD3): a centralised Q(obs_1..obs_N, a_1..a_N) -> (B,). Each agent's
  observation gets its own encoder (agents may have different observation sizes, or images); the
  latents are concatenated with every agent's action features (one-hot for discrete actions) and
  fed to the head.

Both return shape (B,), not (B, 1): compare them with rewards of shape (B,).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from marlkit.networks.config import check_net_config, encoder_config_fits
from marlkit.networks.evolvable import EvolvableModule
from marlkit.networks.network import EvolvableNetwork
from marlkit.networks.spaces import SpaceLike, action_features, flat_dim, space_from_config, space_to_config


class _CriticBase(EvolvableModule):
    """Mutations are delegated to `self.net`."""

    net: EvolvableNetwork

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


class ValueCritic(_CriticBase):
    """obs (B, *obs_shape) -> V (B,)."""

    def __init__(self, observation_space: SpaceLike, net_config: dict | None = None):
        super().__init__()
        self.observation_space = space_from_config(observation_space)
        config = check_net_config(net_config, "ValueCritic net_config")
        self.net = EvolvableNetwork(self.observation_space, 1, **config)

    @property
    def config(self) -> dict:
        return {"observation_space": space_to_config(self.observation_space), "net_config": self.net.net_config}

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)


class QCritic(_CriticBase):
    """([obs_i (B, *obs_shape_i)], [a_i (B, action_dim_i)]) -> Q (B,), all agents in the same order.

    Discrete actions may be indices (B,) or one-hot/probabilities (B, n) (a DeterministicActor's
    differentiable output). `net_config["encoder_config"]` is used for every observation it fits (MLP
    keys for vectors, CNN keys for images); the others get their space's default encoder. A list of
    encoder configs (one per agent, as `.config` writes it) is used as given.
    """

    def __init__(self, observation_spaces: Sequence[SpaceLike], action_spaces: Sequence[SpaceLike],
                 net_config: dict | None = None):
        super().__init__()
        self.observation_spaces = [space_from_config(s) for s in observation_spaces]
        self.action_spaces = [space_from_config(s) for s in action_spaces]
        if len(self.observation_spaces) != len(self.action_spaces):
            raise ValueError(f"got {len(self.observation_spaces)} observation spaces but "
                             f"{len(self.action_spaces)} action spaces; give one of each per agent")
        config = dict(check_net_config(net_config, "QCritic net_config"))
        encoder_config = config.pop("encoder_config", None)
        if not isinstance(encoder_config, (list, tuple)):
            encoder_config = [encoder_config if encoder_config_fits(s, encoder_config) else None
                              for s in self.observation_spaces]
        action_dim = sum(flat_dim(s) for s in self.action_spaces)
        self.net = EvolvableNetwork(self.observation_spaces, 1, encoder_config=encoder_config,
                                    extra_inputs=action_dim, **config)

    @property
    def config(self) -> dict:
        return {
            "observation_spaces": [space_to_config(s) for s in self.observation_spaces],
            "action_spaces": [space_to_config(s) for s in self.action_spaces],
            "net_config": self.net.net_config,
        }

    def forward(self, obs: Sequence[torch.Tensor], actions: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(actions) != len(self.action_spaces):
            raise ValueError(f"expected {len(self.action_spaces)} action batches, got {len(actions)}")
        features = torch.cat([action_features(a, s) for a, s in zip(actions, self.action_spaces)], dim=-1)
        return self.net(obs, features).squeeze(-1)
