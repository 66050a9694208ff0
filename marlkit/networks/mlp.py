"""EvolvableMLP: a multi-layer perceptron whose width and depth can mutate without losing what it learned.

Layer i (hidden) computes  h_i = act(norm_i(W_i h_{i-1} + b_i))   (norm_i only with layer_norm=True)
and the output layer       y   = output_act(W_out h_L + b_out).

Mutations (each returns a plain-dict record that `apply_mutation` replays on a twin):

=================  ====================================================  =======================
method             what changes                                          keeps the function?
=================  ====================================================  =======================
add_node           hidden layer grows by 16/32/64 units                  yes, exactly
remove_node        hidden layer loses its last 16/32/64 units            no
add_layer          a hidden layer is inserted after a random one         yes for ReLU/ReLU6/
                                                                         Hardtanh without
                                                                         layer_norm (see below)
remove_layer       a random hidden layer is removed                      no
change_activation  hidden activation becomes another one                 no
=================  ====================================================  =======================

Sizes are clipped to the bounds (`min/max_mlp_nodes`, `min/max_hidden_layers`); when no change is
possible the record is `{"method": ..., "noop": reason}` and nothing happens. Every resize copies the
overlapping slice of the old weights, so surviving units keep their weights.

Why growth keeps the function:

* add_node: new units get fresh incoming weights but zero outgoing weights, so the next layer sees
  them multiplied by 0. With layer_norm the new units would shift the normalisation statistics, so
  instead they read the layer's mean pre-activation (incoming weights = mean of the old rows): the
  mean is unchanged and the variance shrinks by n/(n+k), which we undo by scaling the layer's weights
  by c = sqrt((n+k)/n) and the old units' LayerNorm gain by 1/c. Exact, eps included. Their
  LayerNorm bias starts small and positive so their activation is non-zero and the zero outgoing
  weights still receive gradient.
* add_layer: the new layer starts as the identity (W = I, b = 0) and receives the previous layer's
  activations h; it outputs act(h), which equals h when act is idempotent (ReLU(h) = h for h >= 0).
  For Tanh, ELU, GELU, ... the identity start is only close (tanh(h) ~ h for small h). With
  layer_norm the new layer also normalises h, so it is not exact either; we still start from the
  identity, the nearest simple choice.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from marlkit.networks.evolvable import (
    MUTATION_ACTIVATIONS,
    EvolvableModule,
    copy_overlap_,
    make_activation,
    new_layer,
    new_seed,
    noop,
    reindexed_output,
    seeded_linear,
)

NODE_STEPS = (16, 32, 64)  # how many units add_node / remove_node try to move


class EvolvableMLP(EvolvableModule):
    """MLP (batch, num_inputs) -> (batch, num_outputs) with mutable hidden layers."""

    def __init__(
        self,
        num_inputs: int,
        num_outputs: int,
        hidden_size: Sequence[int] = (64,),
        activation: str = "ReLU",
        output_activation: str | None = None,
        min_hidden_layers: int = 1,
        max_hidden_layers: int = 4,
        min_mlp_nodes: int = 16,
        max_mlp_nodes: int = 512,
        layer_norm: bool = False,
    ):
        super().__init__()
        hidden_size = [int(h) for h in hidden_size]
        if min_hidden_layers < 1:
            raise ValueError(f"min_hidden_layers must be at least 1, got {min_hidden_layers}")
        if not min_hidden_layers <= len(hidden_size) <= max_hidden_layers:
            raise ValueError(f"hidden_size {hidden_size} has {len(hidden_size)} layers, expected between "
                             f"min_hidden_layers={min_hidden_layers} and max_hidden_layers={max_hidden_layers}")
        if any(not min_mlp_nodes <= h <= max_mlp_nodes for h in hidden_size):
            raise ValueError(f"hidden_size {hidden_size} has a layer outside "
                             f"[min_mlp_nodes={min_mlp_nodes}, max_mlp_nodes={max_mlp_nodes}]")
        self.num_inputs, self.num_outputs = int(num_inputs), int(num_outputs)
        self.activation, self.output_activation = activation, output_activation
        self.min_hidden_layers, self.max_hidden_layers = min_hidden_layers, max_hidden_layers
        self.min_mlp_nodes, self.max_mlp_nodes = min_mlp_nodes, max_mlp_nodes
        self.layer_norm = bool(layer_norm)

        widths = [self.num_inputs, *hidden_size]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        # an empty ModuleList when layer_norm is off keeps the state_dict keys a function of the config
        self.norms = nn.ModuleList(nn.LayerNorm(h) for h in hidden_size) if self.layer_norm else nn.ModuleList()
        self.output = nn.Linear(widths[-1], self.num_outputs)
        self.act = make_activation(activation)
        self.output_act = make_activation(output_activation)

    @property
    def hidden_size(self) -> list[int]:
        return [layer.out_features for layer in self.hidden]

    @property
    def config(self) -> dict:
        return {
            "num_inputs": self.num_inputs,
            "num_outputs": self.num_outputs,
            "hidden_size": self.hidden_size,
            "activation": self.activation,
            "output_activation": self.output_activation,
            "min_hidden_layers": self.min_hidden_layers,
            "max_hidden_layers": self.max_hidden_layers,
            "min_mlp_nodes": self.min_mlp_nodes,
            "max_mlp_nodes": self.max_mlp_nodes,
            "layer_norm": self.layer_norm,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (batch, num_inputs) -> (batch, num_outputs)."""
        if x.shape[-1] != self.num_inputs:
            raise ValueError(f"expected input of shape (batch, {self.num_inputs}), got {tuple(x.shape)}")
        # F.linear and each module's forward() rather than layer(x): nn.Module.__call__ (hook dispatch)
        # costs more than the arithmetic of a small layer on a few rows, and acting runs this every env
        # step. Same result; the price is that hooks registered on the layers themselves are not called.
        act = self.act.forward
        for i, linear in enumerate(self.hidden):
            x = F.linear(x, linear.weight, linear.bias)
            if self.layer_norm:
                x = self.norms[i].forward(x)
            x = act(x)
        output = self.output
        return self.output_act.forward(F.linear(x, output.weight, output.bias))

    # ----------------------------------------------------------------------------------------------
    # mutations: sampling (all the randomness)
    # ----------------------------------------------------------------------------------------------
    @property
    def mutation_methods(self) -> list[str]:
        return ["add_layer", "remove_layer", "add_node", "remove_node", "change_activation"]

    def sample_mutation(self, method: str, rng: np.random.Generator) -> dict:
        sizes = self.hidden_size
        if method == "add_layer":
            if len(sizes) >= self.max_hidden_layers:
                return noop(method, f"already at max_hidden_layers={self.max_hidden_layers}")
            # insert after hidden layer index-1, so the new layer reads activations (>= 0 for ReLU)
            return {"method": method, "index": int(rng.integers(1, len(sizes) + 1)), "seed": new_seed(rng)}
        if method == "remove_layer":
            if len(sizes) <= self.min_hidden_layers:
                return noop(method, f"already at min_hidden_layers={self.min_hidden_layers}")
            return {"method": method, "index": int(rng.integers(len(sizes))), "seed": new_seed(rng)}
        if method in ("add_node", "remove_node"):
            grow = method == "add_node"
            room = [self.max_mlp_nodes - h if grow else h - self.min_mlp_nodes for h in sizes]
            layers = [i for i, r in enumerate(room) if r > 0]
            if not layers:
                bound = f"max_mlp_nodes={self.max_mlp_nodes}" if grow else f"min_mlp_nodes={self.min_mlp_nodes}"
                return noop(method, f"every hidden layer is at {bound}")
            layer = int(rng.choice(layers))
            num_nodes = min(int(rng.choice(NODE_STEPS)), room[layer])
            return {"method": method, "layer": layer, "num_nodes": num_nodes, "seed": new_seed(rng)}
        if method == "change_activation":
            choices = [a for a in MUTATION_ACTIVATIONS if a != self.activation]
            return {"method": method, "activation": str(rng.choice(choices))}
        raise ValueError(f"unknown mutation {method!r} for EvolvableMLP; expected one of {self.mutation_methods}")

    # convenience: net.add_node(rng) == net.mutate("add_node", rng)
    def add_layer(self, rng: np.random.Generator) -> dict:
        return self.mutate("add_layer", rng)

    def remove_layer(self, rng: np.random.Generator) -> dict:
        return self.mutate("remove_layer", rng)

    def add_node(self, rng: np.random.Generator) -> dict:
        return self.mutate("add_node", rng)

    def remove_node(self, rng: np.random.Generator) -> dict:
        return self.mutate("remove_node", rng)

    def change_activation(self, rng: np.random.Generator) -> dict:
        return self.mutate("change_activation", rng)

    # ----------------------------------------------------------------------------------------------
    # mutations: applying (deterministic)
    # ----------------------------------------------------------------------------------------------
    def apply_mutation(self, record: dict) -> None:
        method = record["method"]
        if "noop" in record:
            return
        if method == "add_layer":
            self._add_layer(record["index"])
        elif method == "remove_layer":
            self._remove_layer(record["index"], torch.Generator().manual_seed(record["seed"]))
        elif method == "add_node":
            self._add_nodes(record["layer"], record["num_nodes"], torch.Generator().manual_seed(record["seed"]))
        elif method == "remove_node":
            self._remove_nodes(record["layer"], record["num_nodes"])
        elif method == "change_activation":
            self.activation = record["activation"]
            self.act = make_activation(self.activation)
        else:
            raise ValueError(f"unknown mutation {method!r} for EvolvableMLP; expected one of {self.mutation_methods}")

    def _layer_after(self, i: int) -> nn.Linear:
        """The Linear that reads hidden layer i."""
        return self.hidden[i + 1] if i + 1 < len(self.hidden) else self.output

    def _set_layer_after(self, i: int, layer: nn.Linear) -> None:
        if i + 1 < len(self.hidden):
            self.hidden[i + 1] = layer
        else:
            self.output = layer

    def _check_layer(self, layer: int) -> None:
        if not 0 <= layer < len(self.hidden):
            raise ValueError(f"hidden layer {layer} does not exist; this MLP has hidden_size {self.hidden_size}")

    def _add_nodes(self, layer: int, num_nodes: int, gen: torch.Generator) -> None:
        self._check_layer(layer)
        old_in, old_next = self.hidden[layer], self._layer_after(layer)
        n, k = old_in.out_features, num_nodes
        if n + k > self.max_mlp_nodes:
            raise ValueError(f"add_node: layer {layer} would have {n + k} > max_mlp_nodes={self.max_mlp_nodes} units")

        new_in = seeded_linear(old_in.in_features, n + k, old_in, gen)
        copy_overlap_(new_in.weight, old_in.weight)
        copy_overlap_(new_in.bias, old_in.bias)
        new_next = seeded_linear(n + k, old_next.out_features, old_next, gen)
        copy_overlap_(new_next.weight, old_next.weight)
        copy_overlap_(new_next.bias, old_next.bias)
        with torch.no_grad():
            new_next.weight[:, n:] = 0.0  # the next layer ignores the new units: same function
            if self.layer_norm:
                # new units read the mean pre-activation, then rescale so LayerNorm's statistics and
                # outputs are unchanged (derivation in the module docstring)
                new_in.weight[n:] = old_in.weight.mean(dim=0)
                new_in.bias[n:] = old_in.bias.mean()
                c = math.sqrt((n + k) / n)
                new_in.weight.mul_(c)
                new_in.bias.mul_(c)
                old_norm = self.norms[layer]
                norm = nn.LayerNorm(n + k, eps=old_norm.eps, device=old_norm.weight.device,
                                    dtype=old_norm.weight.dtype)
                norm.weight[:n] = old_norm.weight / c
                norm.bias[:n] = old_norm.bias
                # small positive, distinct biases: non-zero activations, so the new units can learn
                norm.bias[n:] = 0.1 + 0.9 * torch.rand(k, generator=gen).to(norm.bias)
                self.norms[layer] = norm
        self.hidden[layer] = new_in
        self._set_layer_after(layer, new_next)

    def _remove_nodes(self, layer: int, num_nodes: int) -> None:
        self._check_layer(layer)
        old_in, old_next = self.hidden[layer], self._layer_after(layer)
        keep = old_in.out_features - num_nodes
        if keep < self.min_mlp_nodes:
            raise ValueError(f"remove_node: layer {layer} would have {keep} < min_mlp_nodes={self.min_mlp_nodes} units")
        gen = torch.Generator().manual_seed(0)  # every weight below is overwritten by a copy
        new_in = seeded_linear(old_in.in_features, keep, old_in, gen)
        copy_overlap_(new_in.weight, old_in.weight)
        copy_overlap_(new_in.bias, old_in.bias)
        new_next = seeded_linear(keep, old_next.out_features, old_next, gen)
        copy_overlap_(new_next.weight, old_next.weight)
        copy_overlap_(new_next.bias, old_next.bias)
        if self.layer_norm:
            old_norm = self.norms[layer]
            norm = nn.LayerNorm(keep, eps=old_norm.eps, device=old_norm.weight.device, dtype=old_norm.weight.dtype)
            copy_overlap_(norm.weight, old_norm.weight)
            copy_overlap_(norm.bias, old_norm.bias)
            self.norms[layer] = norm
        self.hidden[layer] = new_in
        self._set_layer_after(layer, new_next)

    def _add_layer(self, index: int) -> None:
        if not 1 <= index <= len(self.hidden):
            raise ValueError(f"add_layer: index {index} must be in [1, {len(self.hidden)}]")
        if len(self.hidden) >= self.max_hidden_layers:
            raise ValueError(f"add_layer: already at max_hidden_layers={self.max_hidden_layers}")
        width = self.hidden[index - 1].out_features
        like = self.hidden[index - 1]
        layer = new_layer(nn.Linear, width, width, like=like)
        with torch.no_grad():
            layer.weight.copy_(torch.eye(width))  # identity start: see the module docstring
            layer.bias.zero_()
        self.hidden.insert(index, layer)
        if self.layer_norm:
            self.norms.insert(index, nn.LayerNorm(width, device=like.weight.device, dtype=like.weight.dtype))

    def _remove_layer(self, index: int, gen: torch.Generator) -> None:
        self._check_layer(index)
        if len(self.hidden) <= self.min_hidden_layers:
            raise ValueError(f"remove_layer: already at min_hidden_layers={self.min_hidden_layers}")
        # the layer after the removed one now reads what the removed one read
        in_width = self.hidden[index].in_features
        old_next = self._layer_after(index)
        new_next = seeded_linear(in_width, old_next.out_features, old_next, gen)
        copy_overlap_(new_next.weight, old_next.weight)
        copy_overlap_(new_next.bias, old_next.bias)
        self._set_layer_after(index, new_next)
        del self.hidden[index]
        if self.layer_norm:
            del self.norms[index]

    # ----------------------------------------------------------------------------------------------
    # resizing the ends (used by EvolvableNetwork when the latent size mutates)
    # ----------------------------------------------------------------------------------------------
    def reindex_inputs(self, source: Sequence[int]) -> None:
        """New input j reads old input source[j]; source[j] == -1 marks a new input with zero weights."""
        first = self.hidden[0]
        layer = seeded_linear(len(source), first.out_features, first, torch.Generator().manual_seed(0))
        index = torch.as_tensor(source, device=first.weight.device)
        with torch.no_grad():
            layer.weight.copy_(first.weight[:, index.clamp(min=0)] * (index >= 0))  # zero columns: same function
            layer.bias.copy_(first.bias)
        self.hidden[0] = layer
        self.num_inputs = len(source)

    def reindex_outputs(self, source: Sequence[int], seed: int) -> None:
        """New output j is old output source[j]; source[j] == -1 marks a new, freshly initialised output."""
        self.output = reindexed_output(self.output, list(source), seed)
        self.num_outputs = len(source)

