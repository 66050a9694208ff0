"""Action distributions returned by `StochasticActor`, one small class per action-space kind.

All share one interface (B = batch):

==================  =====================================================================
`sample()`          an action batch, no gradient (Box (B, d) float, Discrete (B,) long,
                    MultiDiscrete (B, k) long, MultiBinary (B, n) float 0/1)
`log_prob(action)`  (B,) log-probability, summed over action dimensions
`entropy()`         (B,) entropy, summed over action dimensions
`mode()`            the most likely action, same format as `sample()`
==================  =====================================================================

Action masks (1 = allowed) are applied to the logits before the distribution is built: masked logits
become -1e8, so their probability is exactly 0 after the softmax but nothing is -inf (no NaNs in
entropies or gradients).
"""

from __future__ import annotations

import torch
from torch.distributions import Bernoulli, Categorical, Normal

MASKED_LOGIT = -1e8


def mask_logits(logits: torch.Tensor, action_mask: torch.Tensor | None) -> torch.Tensor:
    """logits (B, n), action_mask (B, n) bool or 0/1 (1 = allowed) -> masked logits (B, n)."""
    if action_mask is None:
        return logits
    if action_mask.shape != logits.shape:
        raise ValueError(f"expected action_mask of shape {tuple(logits.shape)}, got {tuple(action_mask.shape)}")
    return logits.masked_fill(~action_mask.bool(), MASKED_LOGIT)


class GaussianActions:
    """Diagonal Gaussian for Box actions: mean (B, d) from the network, log_std (d,) a free parameter."""

    def __init__(self, mean: torch.Tensor, log_std: torch.Tensor):
        self.dist = Normal(mean, log_std.exp().expand_as(mean), validate_args=False)

    def sample(self) -> torch.Tensor:
        return self.dist.sample()

    def log_prob(self, action: torch.Tensor) -> torch.Tensor:
        return self.dist.log_prob(action).sum(-1)

    def entropy(self) -> torch.Tensor:
        return self.dist.entropy().sum(-1)

    def mode(self) -> torch.Tensor:
        return self.dist.mean


class CategoricalActions:
    """Discrete actions: logits (B, n); actions are indices (B,) (a (B, 1) batch is accepted too)."""

    def __init__(self, logits: torch.Tensor):
        self.dist = Categorical(logits=logits, validate_args=False)

    def sample(self) -> torch.Tensor:
        return self.dist.sample()

    def log_prob(self, action: torch.Tensor) -> torch.Tensor:
        if action.dim() == 2 and action.shape[1] == 1:
            action = action[:, 0]
        return self.dist.log_prob(action.long())

    def entropy(self) -> torch.Tensor:
        return self.dist.entropy()

    def mode(self) -> torch.Tensor:
        return self.dist.logits.argmax(-1)


class MultiCategoricalActions:
    """MultiDiscrete actions: logits (B, sum(nvec)) split into one Categorical per dimension; actions (B, k)."""

    def __init__(self, logits: torch.Tensor, nvec: list[int]):
        self.dists = [Categorical(logits=part, validate_args=False) for part in logits.split(nvec, dim=-1)]

    def sample(self) -> torch.Tensor:
        return torch.stack([d.sample() for d in self.dists], dim=-1)

    def log_prob(self, action: torch.Tensor) -> torch.Tensor:
        action = action.long()
        return torch.stack([d.log_prob(action[:, i]) for i, d in enumerate(self.dists)], dim=-1).sum(-1)

    def entropy(self) -> torch.Tensor:
        return torch.stack([d.entropy() for d in self.dists], dim=-1).sum(-1)

    def mode(self) -> torch.Tensor:
        return torch.stack([d.logits.argmax(-1) for d in self.dists], dim=-1)


class BernoulliActions:
    """MultiBinary actions: logits (B, n); actions (B, n) float 0/1."""

    def __init__(self, logits: torch.Tensor):
        self.dist = Bernoulli(logits=logits, validate_args=False)

    def sample(self) -> torch.Tensor:
        return self.dist.sample()

    def log_prob(self, action: torch.Tensor) -> torch.Tensor:
        return self.dist.log_prob(action.float()).sum(-1)

    def entropy(self) -> torch.Tensor:
        return self.dist.entropy().sum(-1)

    def mode(self) -> torch.Tensor:
        return (self.dist.logits > 0).float()


ActionDistribution = GaussianActions | CategoricalActions | MultiCategoricalActions | BernoulliActions
