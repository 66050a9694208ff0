"""EvolvableCNN: a convolutional encoder whose channels, depth and kernels can mutate.

Conv layer i computes  h_i = act(conv_i(h_{i-1}))   (no padding, stride `stride_size[i]`)
then                   y   = output_act(W_out flatten(h_L) + b_out).

Input is a float batch (batch, C, H, W); `EvolvableNetwork` does the uint8 -> [0, 1] scaling and the
channels-last transpose before calling it.

Mutations (records are plain dicts; `apply_mutation` replays them):

==============  =======================================================  ===================
method          what changes                                             keeps the function?
==============  =======================================================  ===================
add_channel     a conv layer gains 8/16/32 filters                       yes, exactly
remove_channel  a conv layer loses its last 8/16/32 filters              no
add_layer       a 1x1 conv, initialised to the identity, is inserted      yes for ReLU-like
                after a random conv layer                                activations
remove_layer    a random conv layer is removed                           no
change_kernel   one conv layer's kernel grows or shrinks by 1            no
==============  =======================================================  ===================

Bounds: `min/max_hidden_layers` (number of conv layers), `min/max_channel_size`,
`min/max_kernel_size`, and the image itself (every conv needs at least a 1x1 output). When no change
fits, the record is `{"method": ..., "noop": reason}` and nothing happens. Resizes copy the overlapping
slice of the old weights (top-left corner for kernels).

add_channel keeps the function because new filters feed the next layer through zero weights (the next
conv's new input channels, or the output layer's new columns: flattening is channel-major, so a new
channel's features are a contiguous block at the end). add_layer inserts a 1x1 conv so the spatial size
does not change, with W = I: act(I h) = h for ReLU since h >= 0 (see mlp.py for other activations).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from marlkit.networks.evolvable import (
    EvolvableModule,
    copy_overlap_,
    init_uniform_,
    make_activation,
    new_layer,
    new_seed,
    noop,
    reindexed_output,
    seeded_linear,
)

CHANNEL_STEPS = (8, 16, 32)  # how many filters add_channel / remove_channel try to move


def conv_output_shape(input_shape: Sequence[int], channel_size: Sequence[int], kernel_size: Sequence[int],
                      stride_size: Sequence[int]) -> tuple[int, int, int] | None:
    """(C, H, W) after the conv stack, or None if some layer's kernel no longer fits its input."""
    c, h, w = input_shape
    for c_out, k, s in zip(channel_size, kernel_size, stride_size):
        if h < k or w < k:
            return None
        c, h, w = c_out, (h - k) // s + 1, (w - k) // s + 1
    return c, h, w


class EvolvableCNN(EvolvableModule):
    """CNN (batch, C, H, W) float -> (batch, num_outputs) with mutable conv layers."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        channel_size: Sequence[int] = (32, 64, 64),
        kernel_size: Sequence[int] = (8, 4, 3),
        stride_size: Sequence[int] = (4, 2, 1),
        activation: str = "ReLU",
        output_activation: str | None = None,
        min_hidden_layers: int = 1,
        max_hidden_layers: int = 6,
        min_channel_size: int = 8,
        max_channel_size: int = 256,
        min_kernel_size: int = 1,
        max_kernel_size: int = 8,
    ):
        super().__init__()
        channel_size, kernel_size, stride_size = (list(map(int, v)) for v in (channel_size, kernel_size, stride_size))
        self.input_shape = tuple(int(d) for d in input_shape)
        if len(self.input_shape) != 3:
            raise ValueError(f"input_shape must be (C, H, W), got {list(input_shape)}")
        if not len(channel_size) == len(kernel_size) == len(stride_size):
            raise ValueError(f"channel_size {channel_size}, kernel_size {kernel_size} and stride_size "
                             f"{stride_size} must have the same length (one entry per conv layer)")
        if min_hidden_layers < 1:
            raise ValueError(f"min_hidden_layers must be at least 1, got {min_hidden_layers}")
        if not min_hidden_layers <= len(channel_size) <= max_hidden_layers:
            raise ValueError(f"channel_size {channel_size} has {len(channel_size)} layers, expected between "
                             f"min_hidden_layers={min_hidden_layers} and max_hidden_layers={max_hidden_layers}")
        if any(not min_channel_size <= c <= max_channel_size for c in channel_size):
            raise ValueError(f"channel_size {channel_size} has a layer outside "
                             f"[min_channel_size={min_channel_size}, max_channel_size={max_channel_size}]")
        if any(not min_kernel_size <= k <= max_kernel_size for k in kernel_size):
            raise ValueError(f"kernel_size {kernel_size} has a kernel outside "
                             f"[min_kernel_size={min_kernel_size}, max_kernel_size={max_kernel_size}]")
        out_shape = conv_output_shape(self.input_shape, channel_size, kernel_size, stride_size)
        if out_shape is None:
            raise ValueError(f"kernel_size {kernel_size} with stride_size {stride_size} does not fit an image "
                             f"of shape {list(self.input_shape)}: some layer's kernel is larger than its input")
        self.num_outputs = int(num_outputs)
        self.activation, self.output_activation = activation, output_activation
        self.min_hidden_layers, self.max_hidden_layers = min_hidden_layers, max_hidden_layers
        self.min_channel_size, self.max_channel_size = min_channel_size, max_channel_size
        self.min_kernel_size, self.max_kernel_size = min_kernel_size, max_kernel_size

        in_channels = [self.input_shape[0], *channel_size[:-1]]
        self.convs = nn.ModuleList(
            nn.Conv2d(c_in, c_out, k, stride=s)
            for c_in, c_out, k, s in zip(in_channels, channel_size, kernel_size, stride_size)
        )
        self.output = nn.Linear(int(np.prod(out_shape)), self.num_outputs)
        self.act = make_activation(activation)
        self.output_act = make_activation(output_activation)

    @property
    def channel_size(self) -> list[int]:
        return [conv.out_channels for conv in self.convs]

    @property
    def kernel_size(self) -> list[int]:
        return [conv.kernel_size[0] for conv in self.convs]

    @property
    def stride_size(self) -> list[int]:
        return [conv.stride[0] for conv in self.convs]

    @property
    def config(self) -> dict:
        return {
            "input_shape": list(self.input_shape),
            "num_outputs": self.num_outputs,
            "channel_size": self.channel_size,
            "kernel_size": self.kernel_size,
            "stride_size": self.stride_size,
            "activation": self.activation,
            "output_activation": self.output_activation,
            "min_hidden_layers": self.min_hidden_layers,
            "max_hidden_layers": self.max_hidden_layers,
            "min_channel_size": self.min_channel_size,
            "max_channel_size": self.max_channel_size,
            "min_kernel_size": self.min_kernel_size,
            "max_kernel_size": self.max_kernel_size,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (batch, C, H, W) float -> (batch, num_outputs)."""
        if x.shape[1:] != self.input_shape:
            raise ValueError(f"expected input of shape (batch, {', '.join(map(str, self.input_shape))}), "
                             f"got {tuple(x.shape)}")
        for conv in self.convs:
            x = self.act(conv(x))
        return self.output_act(self.output(x.flatten(1)))

    def _feature_shape(self, kernel_size: Sequence[int] | None = None) -> tuple[int, int, int] | None:
        return conv_output_shape(self.input_shape, self.channel_size, kernel_size or self.kernel_size,
                                 self.stride_size)

    # ----------------------------------------------------------------------------------------------
    # mutations: sampling (all the randomness)
    # ----------------------------------------------------------------------------------------------
    @property
    def mutation_methods(self) -> list[str]:
        return ["add_layer", "remove_layer", "add_channel", "remove_channel", "change_kernel"]

    def sample_mutation(self, method: str, rng: np.random.Generator) -> dict:
        channels = self.channel_size
        if method == "add_layer":
            if len(channels) >= self.max_hidden_layers:
                return noop(method, f"already at max_hidden_layers={self.max_hidden_layers}")
            return {"method": method, "index": int(rng.integers(1, len(channels) + 1))}
        if method == "remove_layer":
            if len(channels) <= self.min_hidden_layers:
                return noop(method, f"already at min_hidden_layers={self.min_hidden_layers}")
            return {"method": method, "index": int(rng.integers(len(channels))), "seed": new_seed(rng)}
        if method in ("add_channel", "remove_channel"):
            grow = method == "add_channel"
            room = [self.max_channel_size - c if grow else c - self.min_channel_size for c in channels]
            layers = [i for i, r in enumerate(room) if r > 0]
            if not layers:
                bound = (f"max_channel_size={self.max_channel_size}" if grow
                         else f"min_channel_size={self.min_channel_size}")
                return noop(method, f"every conv layer is at {bound}")
            layer = int(rng.choice(layers))
            num_channels = min(int(rng.choice(CHANNEL_STEPS)), room[layer])
            return {"method": method, "layer": layer, "num_channels": num_channels, "seed": new_seed(rng)}
        if method == "change_kernel":
            options = [(i, k + d) for i, k in enumerate(self.kernel_size) for d in (-1, 1)
                       if self._kernel_fits(i, k + d)]
            if not options:
                return noop(method, "no kernel can grow or shrink by 1 within the bounds and the image size")
            layer, kernel = options[int(rng.integers(len(options)))]
            return {"method": method, "layer": layer, "kernel_size": kernel, "seed": new_seed(rng)}
        raise ValueError(f"unknown mutation {method!r} for EvolvableCNN; expected one of {self.mutation_methods}")

    def _kernel_fits(self, layer: int, kernel: int) -> bool:
        if not self.min_kernel_size <= kernel <= self.max_kernel_size:
            return False
        kernels = self.kernel_size
        kernels[layer] = kernel
        return self._feature_shape(kernels) is not None

    # convenience: net.add_channel(rng) == net.mutate("add_channel", rng)
    def add_layer(self, rng: np.random.Generator) -> dict:
        return self.mutate("add_layer", rng)

    def remove_layer(self, rng: np.random.Generator) -> dict:
        return self.mutate("remove_layer", rng)

    def add_channel(self, rng: np.random.Generator) -> dict:
        return self.mutate("add_channel", rng)

    def remove_channel(self, rng: np.random.Generator) -> dict:
        return self.mutate("remove_channel", rng)

    def change_kernel(self, rng: np.random.Generator) -> dict:
        return self.mutate("change_kernel", rng)

    # ----------------------------------------------------------------------------------------------
    # mutations: applying (deterministic)
    # ----------------------------------------------------------------------------------------------
    def apply_mutation(self, record: dict) -> None:
        method = record["method"]
        if "noop" in record:
            return
        gen = torch.Generator().manual_seed(record.get("seed", 0))
        if method == "add_layer":
            self._add_layer(record["index"])
        elif method == "remove_layer":
            self._remove_layer(record["index"], gen)
        elif method == "add_channel":
            self._resize_channels(record["layer"], +record["num_channels"], gen)
        elif method == "remove_channel":
            self._resize_channels(record["layer"], -record["num_channels"], gen)
        elif method == "change_kernel":
            self._change_kernel(record["layer"], record["kernel_size"], gen)
        else:
            raise ValueError(f"unknown mutation {method!r} for EvolvableCNN; expected one of {self.mutation_methods}")

    def _new_conv(self, in_channels: int, out_channels: int, kernel: int, stride: int, like: nn.Conv2d,
                  gen: torch.Generator) -> nn.Conv2d:
        """A seeded conv holding `like`'s weights in the overlapping slice."""
        conv = new_layer(nn.Conv2d, in_channels, out_channels, kernel, stride=stride, like=like)
        init_uniform_(conv.weight, conv.bias, gen)
        copy_overlap_(conv.weight, like.weight)
        copy_overlap_(conv.bias, like.bias)
        return conv

    def _fit_output(self, gen: torch.Generator, zero_from: int | None = None) -> None:
        """Resize the output layer to the flattened conv output; columns >= zero_from start at 0."""
        flat = int(np.prod(self._feature_shape()))
        old = self.output
        if flat == old.in_features and zero_from is None:
            return
        new = seeded_linear(flat, old.out_features, old, gen)
        copy_overlap_(new.weight, old.weight)
        copy_overlap_(new.bias, old.bias)
        if zero_from is not None:
            with torch.no_grad():
                new.weight[:, zero_from:] = 0.0
        self.output = new

    def _check_layer(self, layer: int) -> None:
        if not 0 <= layer < len(self.convs):
            raise ValueError(f"conv layer {layer} does not exist; this CNN has channel_size {self.channel_size}")

    def _resize_channels(self, layer: int, delta: int, gen: torch.Generator) -> None:
        self._check_layer(layer)
        old = self.convs[layer]
        c, new_c = old.out_channels, old.out_channels + delta
        if not self.min_channel_size <= new_c <= self.max_channel_size:
            raise ValueError(f"layer {layer} would have {new_c} channels, outside "
                             f"[{self.min_channel_size}, {self.max_channel_size}]")
        self.convs[layer] = self._new_conv(old.in_channels, new_c, old.kernel_size[0], old.stride[0], old, gen)
        if layer + 1 < len(self.convs):
            nxt = self.convs[layer + 1]
            self.convs[layer + 1] = self._new_conv(new_c, nxt.out_channels, nxt.kernel_size[0], nxt.stride[0],
                                                   nxt, gen)
            if delta > 0:
                with torch.no_grad():
                    self.convs[layer + 1].weight[:, c:] = 0.0  # next conv ignores the new channels
        else:
            _, h, w = self._feature_shape()
            self._fit_output(gen, zero_from=c * h * w if delta > 0 else None)

    def _add_layer(self, index: int) -> None:
        if not 1 <= index <= len(self.convs):
            raise ValueError(f"add_layer: index {index} must be in [1, {len(self.convs)}]")
        if len(self.convs) >= self.max_hidden_layers:
            raise ValueError(f"add_layer: already at max_hidden_layers={self.max_hidden_layers}")
        like = self.convs[index - 1]
        c = like.out_channels
        conv = new_layer(nn.Conv2d, c, c, 1, like=like)
        with torch.no_grad():
            conv.weight.copy_(torch.eye(c).reshape(c, c, 1, 1))  # 1x1 identity: same shape, same values
            conv.bias.zero_()
        self.convs.insert(index, conv)

    def _remove_layer(self, index: int, gen: torch.Generator) -> None:
        self._check_layer(index)
        if len(self.convs) <= self.min_hidden_layers:
            raise ValueError(f"remove_layer: already at min_hidden_layers={self.min_hidden_layers}")
        in_channels = self.convs[index].in_channels
        if index + 1 < len(self.convs):
            nxt = self.convs[index + 1]
            self.convs[index + 1] = self._new_conv(in_channels, nxt.out_channels, nxt.kernel_size[0],
                                                   nxt.stride[0], nxt, gen)
        del self.convs[index]
        self._fit_output(gen)  # removing a layer enlarges the feature map (always still valid)

    def _change_kernel(self, layer: int, kernel: int, gen: torch.Generator) -> None:
        self._check_layer(layer)
        if not self._kernel_fits(layer, kernel):
            raise ValueError(f"change_kernel: kernel {kernel} for layer {layer} is outside "
                             f"[{self.min_kernel_size}, {self.max_kernel_size}] or does not fit the image")
        old = self.convs[layer]
        self.convs[layer] = self._new_conv(old.in_channels, old.out_channels, kernel, old.stride[0], old, gen)
        self._fit_output(gen)

    # ----------------------------------------------------------------------------------------------
    # resizing the output (used by EvolvableNetwork when the latent size mutates)
    # ----------------------------------------------------------------------------------------------
    def reindex_outputs(self, source: Sequence[int], seed: int) -> None:
        """New output j is old output source[j]; source[j] == -1 marks a new, freshly initialised output."""
        self.output = reindexed_output(self.output, list(source), seed)
        self.num_outputs = len(source)
