"""What every evolvable network promises, plus the weight surgery helpers mutations share.

The contract (see ARCHITECTURE.md, "Networks"):

* `net.config` is a plain dict and `type(net)(**net.config)` rebuilds the same architecture;
* `record = net.mutate(method, rng)` changes the architecture and returns a plain-dict record;
  `twin.apply_mutation(record)` replays exactly the same change (target networks, clones);
* `net.clone()` is an independent identical copy; `net.checkpoint()` is
  `{"class", "config", "state_dict"}`, loadable with `torch.load(weights_only=True)`.

`mutate` = `sample_mutation` (all the randomness: which layer, how many nodes, a seed for the new
weights) + `apply_mutation` (deterministic). Because the seed is in the record, a twin that had the
same weights before the mutation has the same weights after it.

At a bound (e.g. `add_layer` at `max_hidden_layers`) a mutation does nothing and says so: the record
is `{"method": ..., "noop": "<reason>"}`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

ACTIVATIONS = {
    "ReLU": nn.ReLU,
    "ReLU6": nn.ReLU6,
    "LeakyReLU": nn.LeakyReLU,
    "ELU": nn.ELU,
    "GELU": nn.GELU,
    "SiLU": nn.SiLU,
    "Tanh": nn.Tanh,
    "Sigmoid": nn.Sigmoid,
    "Softplus": nn.Softplus,
    "Hardtanh": nn.Hardtanh,
    "Identity": nn.Identity,
    "Softmax": lambda: nn.Softmax(dim=-1),
}
# Activations `change_activation` picks from (hidden layers only).
MUTATION_ACTIVATIONS = ("ReLU", "ELU", "GELU", "Tanh", "LeakyReLU")
# f(f(x)) == f(x): after such a layer, an identity-initialised new layer changes nothing.
IDEMPOTENT_ACTIVATIONS = ("ReLU", "ReLU6", "Hardtanh", "Identity")


def make_activation(name: str | None) -> nn.Module:
    """"ReLU" -> nn.ReLU(); None -> nn.Identity()."""
    if name is None:
        return nn.Identity()
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)} or None")
    return ACTIVATIONS[name]()


def new_seed(rng: np.random.Generator) -> int:
    """A seed for the weights a mutation creates, drawn from the caller's generator."""
    return int(rng.integers(0, 2**31 - 1))


def init_uniform_(weight: torch.Tensor, bias: torch.Tensor | None, generator: torch.Generator) -> None:
    """PyTorch's default Linear/Conv init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), from a seeded generator."""
    fan_in = weight[0].numel()
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    with torch.no_grad():
        # draw on the CPU so the same seed gives the same weights on any device
        weight.copy_(torch.empty(weight.shape).uniform_(-bound, bound, generator=generator))
        if bias is not None:
            bias.copy_(torch.empty(bias.shape).uniform_(-bound, bound, generator=generator))


def copy_overlap_(dst: torch.Tensor, src: torch.Tensor) -> None:
    """dst[:a, :b, ...] = src[:a, :b, ...] over the slice both tensors have (weights survive resizing)."""
    index = tuple(slice(0, min(d, s)) for d, s in zip(dst.shape, src.shape))
    with torch.no_grad():
        dst[index] = src[index]


def new_layer(cls: type[nn.Module], *args, like: nn.Module, **kwargs) -> nn.Module:
    """`cls(*args, **kwargs)` on `like`'s device and dtype, without advancing torch's global RNG.

    The caller overwrites the weights (seeded init, copied slices), so the layer's own random init
    runs inside `fork_rng`, which restores the global generator afterwards.
    """
    param = next(like.parameters())
    with torch.random.fork_rng(devices=[]):
        layer = cls(*args, **kwargs)
    return layer.to(device=param.device, dtype=param.dtype)


def seeded_linear(in_features: int, out_features: int, like: nn.Module, generator: torch.Generator) -> nn.Linear:
    """A fresh Linear on `like`'s device and dtype, initialised from `generator` (never the global RNG)."""
    layer = new_layer(nn.Linear, in_features, out_features, like=like)
    init_uniform_(layer.weight, layer.bias, generator)
    return layer


def reindexed_output(old: nn.Linear, source: list[int], seed: int) -> nn.Linear:
    """A copy of `old` whose output j is old output source[j]; source[j] == -1 marks a new, seeded output."""
    layer = seeded_linear(old.in_features, len(source), old, torch.Generator().manual_seed(seed))
    index = torch.as_tensor(source, device=old.weight.device)
    kept = (index >= 0).nonzero().squeeze(1)
    with torch.no_grad():
        layer.weight[kept] = old.weight[index[kept]]
        layer.bias[kept] = old.bias[index[kept]]
    return layer


def noop(method: str, reason: str) -> dict:
    """The record of a mutation that hit a bound and changed nothing."""
    return {"method": method, "noop": reason}


class EvolvableModule(nn.Module):
    """Base class: subclasses define `config`, `mutation_methods`, `sample_mutation`, `apply_mutation`."""

    @property
    def config(self) -> dict:
        raise NotImplementedError(f"{type(self).__name__} must define `config`")

    @property
    def mutation_methods(self) -> list[str]:
        raise NotImplementedError(f"{type(self).__name__} must define `mutation_methods`")

    def sample_mutation(self, method: str, rng: np.random.Generator) -> dict:
        """Draw every random choice of `method` into a record; changes nothing. Unknown method: ValueError."""
        raise NotImplementedError(f"{type(self).__name__} must define `sample_mutation`")

    def apply_mutation(self, record: dict) -> None:
        """Apply a record from `mutate`/`sample_mutation` (deterministic)."""
        raise NotImplementedError(f"{type(self).__name__} must define `apply_mutation`")

    def mutate(self, method: str, rng: np.random.Generator) -> dict:
        """Apply one architecture mutation chosen with `rng`; returns the record to replay on twins."""
        record = self.sample_mutation(method, rng)
        self.apply_mutation(record)
        return record

    def clone(self) -> EvolvableModule:
        """An independent copy: same config, same weights, same device and train/eval mode."""
        twin = type(self)(**self.config)
        param = next(self.parameters(), None)
        if param is not None:
            twin.to(device=param.device, dtype=param.dtype)
        twin.load_state_dict(self.state_dict())
        twin.train(self.training)
        return twin

    def checkpoint(self) -> dict:
        """{"class", "config", "state_dict"}: tensors and plain Python data only."""
        return {"class": type(self).__name__, "config": self.config, "state_dict": self.state_dict()}

    @classmethod
    def from_checkpoint(cls, checkpoint: dict) -> EvolvableModule:
        """Rebuild from `checkpoint()` (or any dict with "config" and "state_dict")."""
        net = cls(**checkpoint["config"])
        net.load_state_dict(checkpoint["state_dict"])
        return net
