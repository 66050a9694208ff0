"""EvolvableNetwork: observation -> encoder -> latent -> head, the body of every actor and critic.

    obs (batch, *obs_shape) --preprocess--> features --encoder--> latent (batch, latent_dim)
                                                                        |
                      [latents of the other inputs, extra features] ---concat
                                                                        |
                                                              head MLP --> (batch, num_outputs)

The encoder is chosen from the observation space: an EvolvableMLP for vectors (Box, one-hot
Discrete / MultiDiscrete, MultiBinary), an EvolvableCNN for images (3-D Box; uint8 scaled to [0, 1],
channels-last transposed). A centralised critic passes a *list* of observation spaces: each input gets
its own encoder and the latents are concatenated, followed by `extra_inputs` raw features (the actions).

A mutation picks a sub-module, "encoder" (or "encoder_0", "encoder_1", ... with several inputs),
"latent" or "head", and a method, and its record names both:
``net.mutate("head.add_node", rng)`` -> ``{"module": "head", "method": "add_node", "layer": 0,
"num_nodes": 32, "seed": ...}``. A bare method name, ``net.mutate("add_node", rng)``, picks a random
sub-module that offers it and is not at a bound. `mutation_methods` lists the bare names (so HPO can
tell layer from node mutations), `qualified_mutation_methods` the "module.method" pairs.
"latent.add_node" widens every encoder's output and feeds the new units to the head through zero
weights, so it keeps the network's function like the other growth mutations.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from marlkit.networks.cnn import EvolvableCNN
from marlkit.networks.config import NETWORK_DEFAULTS, complete_encoder_config, complete_head_config
from marlkit.networks.evolvable import EvolvableModule, new_seed, noop
from marlkit.networks.mlp import EvolvableMLP
from marlkit.networks.spaces import (
    SpaceLike,
    encoder_kind,
    flat_dim,
    image_shape,
    preprocess_observation,
    space_from_config,
    space_to_config,
)

# the order `mutation_methods` lists method names in
METHOD_ORDER = ("add_layer", "remove_layer", "add_node", "remove_node", "change_activation", "add_channel",
                "remove_channel", "change_kernel")
LATENT_STEPS = (8, 16, 32)  # how many latent units latent.add_node / latent.remove_node try to move
DERIVED = {"num_inputs", "num_outputs", "input_shape"}


def _public_config(module: EvolvableModule) -> dict:
    """A sub-module's config without the sizes the parent network derives."""
    return {k: v for k, v in module.config.items() if k not in DERIVED}


class EvolvableNetwork(EvolvableModule):
    """observation(s) -> encoder(s) -> latent -> head MLP -> (batch, num_outputs)."""

    def __init__(
        self,
        observation_space: SpaceLike | Sequence[SpaceLike],
        num_outputs: int,
        latent_dim: int = NETWORK_DEFAULTS["latent_dim"],
        encoder_config: dict | Sequence[dict] | None = None,
        head_config: dict | None = None,
        min_latent_dim: int = NETWORK_DEFAULTS["min_latent_dim"],
        max_latent_dim: int = NETWORK_DEFAULTS["max_latent_dim"],
        extra_inputs: int = 0,
    ):
        super().__init__()
        self.multi_input = isinstance(observation_space, (list, tuple))
        obs_spaces = list(observation_space) if self.multi_input else [observation_space]
        self.observation_spaces = [space_from_config(s) for s in obs_spaces]
        if not min_latent_dim <= latent_dim <= max_latent_dim:
            raise ValueError(f"latent_dim={latent_dim} is outside [min_latent_dim={min_latent_dim}, "
                             f"max_latent_dim={max_latent_dim}]")
        self.latent_dim, self.min_latent_dim, self.max_latent_dim = latent_dim, min_latent_dim, max_latent_dim
        self.num_outputs, self.extra_inputs = int(num_outputs), int(extra_inputs)

        if encoder_config is None or isinstance(encoder_config, dict):
            encoder_configs = [encoder_config] * len(self.observation_spaces)
        else:
            encoder_configs = list(encoder_config)
            if len(encoder_configs) != len(self.observation_spaces):
                raise ValueError(f"got {len(encoder_configs)} encoder configs for "
                                 f"{len(self.observation_spaces)} observation spaces")
        self.encoders = nn.ModuleList(
            self._make_encoder(space, complete_encoder_config(space, cfg)) for space, cfg in
            zip(self.observation_spaces, encoder_configs)
        )
        head_inputs = len(self.encoders) * latent_dim + self.extra_inputs
        self.head = EvolvableMLP(head_inputs, self.num_outputs, **complete_head_config(head_config))
        self.module_names = ["encoder"] if len(self.encoders) == 1 else [f"encoder_{i}" for i in
                                                                         range(len(self.encoders))]

    def _make_encoder(self, space, config: dict) -> EvolvableModule:
        if encoder_kind(space) == "cnn":
            return EvolvableCNN(image_shape(space), self.latent_dim, **config)
        return EvolvableMLP(flat_dim(space), self.latent_dim, **config)

    @property
    def observation_space(self) -> spaces.Space | list[spaces.Space]:
        """The observation space, or the list of them with several inputs."""
        return self.observation_spaces if self.multi_input else self.observation_spaces[0]

    @property
    def encoder(self) -> EvolvableModule:
        """The (first) encoder."""
        return self.encoders[0]

    @property
    def net_config(self) -> dict:
        """The current architecture in net_config form (latent_dim, encoder_config, head_config, bounds)."""
        encoder_configs = [_public_config(e) for e in self.encoders]
        return {
            "latent_dim": self.latent_dim,
            "min_latent_dim": self.min_latent_dim,
            "max_latent_dim": self.max_latent_dim,
            "encoder_config": encoder_configs if self.multi_input else encoder_configs[0],
            "head_config": _public_config(self.head),
        }

    @property
    def config(self) -> dict:
        obs = [space_to_config(s) for s in self.observation_spaces]
        return {
            "observation_space": obs if self.multi_input else obs[0],
            "num_outputs": self.num_outputs,
            **self.net_config,
            "extra_inputs": self.extra_inputs,
        }

    def forward(self, obs: torch.Tensor | Sequence[torch.Tensor], extra: torch.Tensor | None = None) -> torch.Tensor:
        """obs (batch, *obs_shape), or a list of such with several inputs; extra (batch, extra_inputs).

        Returns (batch, num_outputs).
        """
        # Sub-modules' forward() directly, as in EvolvableMLP.forward (hook dispatch outweighs small layers).
        if not self.multi_input:
            x = self.encoders[0].forward(preprocess_observation(obs, self.observation_spaces[0]))
        else:
            if len(obs) != len(self.encoders):
                raise ValueError(f"expected {len(self.encoders)} observation batches, got {len(obs)}")
            x = torch.cat([enc(preprocess_observation(o, space))
                           for enc, o, space in zip(self.encoders, obs, self.observation_spaces)], dim=-1)
        if self.extra_inputs:
            if extra is None or extra.shape[-1] != self.extra_inputs:
                got = None if extra is None else tuple(extra.shape)
                raise ValueError(f"expected extra inputs of shape (batch, {self.extra_inputs}), got {got}")
            x = torch.cat([x, extra], dim=-1)
        return self.head.forward(x)

    # ----------------------------------------------------------------------------------------------
    # mutations
    # ----------------------------------------------------------------------------------------------
    def _submodule(self, name: str) -> EvolvableModule:
        if name == "head":
            return self.head
        if name in self.module_names:
            return self.encoders[self.module_names.index(name)]
        raise ValueError(f"unknown sub-module {name!r}; expected one of {[*self.module_names, 'latent', 'head']}")

    @property
    def qualified_mutation_methods(self) -> list[str]:
        """Every (sub-module, method) pair, e.g. ["encoder.add_layer", ..., "latent.add_node", "head.add_node"]."""
        methods = [f"{name}.{m}" for name, enc in zip(self.module_names, self.encoders) for m in enc.mutation_methods]
        return [*methods, "latent.add_node", "latent.remove_node", *(f"head.{m}" for m in self.head.mutation_methods)]

    @property
    def mutation_methods(self) -> list[str]:
        """Method names any sub-module offers, e.g. ["add_layer", "remove_layer", "add_node", ...]."""
        offered = {q.partition(".")[2] for q in self.qualified_mutation_methods}
        return [m for m in METHOD_ORDER if m in offered]

    def sample_mutation(self, method: str, rng: np.random.Generator) -> dict:
        """`method` is "head.add_node" (that sub-module) or "add_node" (a random sub-module offering it)."""
        if "." in method:
            module, _, sub_method = method.partition(".")
            return self._sample_in(module, sub_method, rng)
        modules = [q.partition(".")[0] for q in self.qualified_mutation_methods if q.partition(".")[2] == method]
        if not modules:
            raise ValueError(f"unknown mutation {method!r}; expected one of {self.mutation_methods} "
                             f"or of {self.qualified_mutation_methods}")
        # visit the sub-modules in random order and mutate the first one not at a bound
        for i in rng.permutation(len(modules)):
            record = self._sample_in(modules[i], method, rng)
            if "noop" not in record:
                return record
        return record  # every sub-module is at a bound: a no-op record

    def _sample_in(self, module: str, method: str, rng: np.random.Generator) -> dict:
        if module == "latent":
            return {"module": "latent", **self._sample_latent(method, rng)}
        return {"module": module, **self._submodule(module).sample_mutation(method, rng)}

    def apply_mutation(self, record: dict) -> None:
        module = record["module"]
        sub_record = {k: v for k, v in record.items() if k != "module"}
        if module == "latent":
            self._apply_latent(sub_record)
        else:
            self._submodule(module).apply_mutation(sub_record)

    def _sample_latent(self, method: str, rng: np.random.Generator) -> dict:
        if method == "add_node":
            room = self.max_latent_dim - self.latent_dim
            bound = f"max_latent_dim={self.max_latent_dim}"
        elif method == "remove_node":
            room = self.latent_dim - self.min_latent_dim
            bound = f"min_latent_dim={self.min_latent_dim}"
        else:
            raise ValueError(f"unknown latent mutation {method!r}; expected 'add_node' or 'remove_node'")
        if room <= 0:
            return noop(method, f"latent_dim is already at {bound}")
        return {"method": method, "num_nodes": min(int(rng.choice(LATENT_STEPS)), room), "seed": new_seed(rng)}

    def _apply_latent(self, record: dict) -> None:
        if "noop" in record:
            return
        sign = {"add_node": 1, "remove_node": -1}[record["method"]]
        old, new = self.latent_dim, self.latent_dim + sign * record["num_nodes"]
        if not self.min_latent_dim <= new <= self.max_latent_dim:
            raise ValueError(f"latent {record['method']}: latent_dim {new} is outside "
                             f"[{self.min_latent_dim}, {self.max_latent_dim}]")
        # each encoder keeps its first min(old, new) outputs and appends fresh ones
        outputs = [j if j < old else -1 for j in range(new)]
        for i, encoder in enumerate(self.encoders):
            encoder.reindex_outputs(outputs, seed=record["seed"] + i)
        # head input layout: [latent_0 | latent_1 | ... | extra]; new latent units get zero weights
        source = [i * old + j if j < old else -1 for i in range(len(self.encoders)) for j in range(new)]
        source += [len(self.encoders) * old + e for e in range(self.extra_inputs)]
        self.head.reindex_inputs(source)
        self.latent_dim = new
