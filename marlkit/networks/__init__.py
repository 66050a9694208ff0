"""Evolvable networks: MLP/CNN building blocks, the encoder -> latent -> head network, actors, critics,
and the multi-agent `net_config` resolution of the guide."""

from marlkit.networks.actors import DeterministicActor, StochasticActor
from marlkit.networks.checkpoint import network_from_checkpoint
from marlkit.networks.cnn import EvolvableCNN
from marlkit.networks.config import group_agents, group_id, resolve_net_config
from marlkit.networks.critics import QCritic, ValueCritic
from marlkit.networks.evolvable import EvolvableModule
from marlkit.networks.mlp import EvolvableMLP
from marlkit.networks.network import EvolvableNetwork

__all__ = [
    "DeterministicActor",
    "EvolvableCNN",
    "EvolvableMLP",
    "EvolvableModule",
    "EvolvableNetwork",
    "QCritic",
    "StochasticActor",
    "ValueCritic",
    "group_agents",
    "group_id",
    "network_from_checkpoint",
    "resolve_net_config",
]
