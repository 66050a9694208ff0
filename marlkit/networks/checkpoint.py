"""Rebuild any marlkit network from its checkpoint dict.

    torch.save(net.checkpoint(), path)          # {"class", "config", "state_dict"}
    net = network_from_checkpoint(torch.load(path, weights_only=True))

A dict with only "config" and "state_dict" works too when the class is passed explicitly.
"""

from __future__ import annotations

from marlkit.networks.actors import DeterministicActor, StochasticActor
from marlkit.networks.cnn import EvolvableCNN
from marlkit.networks.critics import QCritic, ValueCritic
from marlkit.networks.evolvable import EvolvableModule
from marlkit.networks.mlp import EvolvableMLP
from marlkit.networks.network import EvolvableNetwork

NETWORK_CLASSES = {
    cls.__name__: cls
    for cls in (EvolvableMLP, EvolvableCNN, EvolvableNetwork, DeterministicActor, StochasticActor, QCritic,
                ValueCritic)
}


def network_from_checkpoint(checkpoint: dict, cls: type[EvolvableModule] | None = None) -> EvolvableModule:
    """`cls(**checkpoint["config"])` with `checkpoint["state_dict"]` loaded; cls defaults to checkpoint["class"]."""
    if cls is None:
        name = checkpoint.get("class")
        if name not in NETWORK_CLASSES:
            raise ValueError(f"checkpoint class {name!r} is unknown; expected one of {list(NETWORK_CLASSES)} "
                             f"(or pass cls=...)")
        cls = NETWORK_CLASSES[name]
    return cls.from_checkpoint(checkpoint)
