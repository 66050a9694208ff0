"""MATD3: Multi-Agent Twin Delayed DDPG (Ackermann et al., 2019) = MADDPG + the three TD3 fixes.

DDPG-style critics over-estimate: the actor climbs the critic's errors, and bootstrapping feeds the
over-estimate back into the targets. TD3 (Fujimoto et al., 2018) adds three fixes, and MATD3 applies them
to MADDPG's centralised critics. Everything else (acting, exploration noise, the replay batch, the critic
regression, soft updates, checkpoints) is MADDPG's, in ``maddpg.py``. The three fixes are the three
methods below:

1. **Clipped double-Q** (:meth:`MATD3._target_q`): two critics per agent; the target uses the smaller
   of the two target critics, ``y_i = r_i + gamma (1 - d_i) min(Q'_i1, Q'_i2)(o', a')``.
2. **Target policy smoothing** (:meth:`MATD3._target_actions`): the target actions get clipped Gaussian
   noise, ``a'_j = clip(mu'_j(o'_j) + clip(eps, -c, c), low, high)``, so the target is an average over a
   small neighbourhood of actions and a sharp, wrong peak of Q cannot be exploited. (AgileRL's MATD3
   leaves this out; marlkit includes it. Discrete actions are one-hot and get no smoothing.)
3. **Delayed policy updates** (:meth:`MATD3._update_actor_now`): actors and all target networks are
   updated once every ``policy_freq`` calls of ``learn``, so the critics settle before the actors move.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from gymnasium import spaces

from marlkit.algorithms.maddpg import MADDPG


class MATD3(MADDPG):
    """MADDPG with twin critics, target policy smoothing and delayed policy updates.

    Args: those of :class:`MADDPG`, plus
        policy_freq: actors and targets are updated every ``policy_freq`` learn calls.
        policy_noise: std of the target-smoothing noise, relative to the half-range of the bounds.
        noise_clip: the smoothing noise is clipped to +-``noise_clip`` (same relative units).
    """

    algo = "MATD3"
    critic_groups = ("critics", "critics_2")  # twin critics: MADDPG's code loops over these
    network_groups = ("actors", "actor_targets", "critics", "critic_targets", "critics_2", "critic_targets_2")
    optimizer_lrs = {"actors": "lr_actor", "critics": "lr_critic", "critics_2": "lr_critic"}
    target_groups = {"actors": "actor_targets", "critics": "critic_targets", "critics_2": "critic_targets_2"}
    hp_names = (*MADDPG.hp_names, "policy_freq")

    def __init__(
        self,
        observation_spaces: Sequence[spaces.Space],
        action_spaces: Sequence[spaces.Space],
        agent_ids: Sequence[str],
        *args: Any,
        policy_freq: int = 2,
        policy_noise: float = 0.2,
        noise_clip: float = 0.5,
        **kwargs: Any,
    ) -> None:
        if int(policy_freq) < 1:
            raise ValueError(f"policy_freq must be a positive integer, got {policy_freq}")
        self.policy_freq, self.policy_noise, self.noise_clip = int(policy_freq), float(policy_noise), float(noise_clip)
        super().__init__(observation_spaces, action_spaces, agent_ids, *args, **kwargs)

    # (1) clipped double-Q
    def _target_q(self, key: str, next_obs: list[torch.Tensor], next_actions: list[torch.Tensor]) -> torch.Tensor:
        q1 = self.critic_targets[key](next_obs, next_actions)
        q2 = self.critic_targets_2[key](next_obs, next_actions)
        return torch.min(q1, q2)

    # (2) target policy smoothing
    def _target_actions(self, next_obs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        actions = super()._target_actions(next_obs)
        for agent, a in actions.items():
            space = self.action_spaces[agent]
            if isinstance(space, spaces.Box):
                actor = self.actor_targets[self.policy_key[agent]]
                half_range = actor.action_scale
                eps = (torch.randn_like(a) * self.policy_noise).clamp(-self.noise_clip, self.noise_clip)
                low, high = actor.action_bias - half_range, actor.action_bias + half_range
                actions[agent] = torch.max(torch.min(a + eps * half_range, high), low)
        return actions

    # (3) delayed policy updates
    def _update_actor_now(self) -> bool:
        return self.learn_counter % self.policy_freq == 0

    def init_kwargs(self) -> dict[str, Any]:
        return {
            **super().init_kwargs(),
            "policy_freq": self.policy_freq,
            "policy_noise": self.policy_noise,
            "noise_clip": self.noise_clip,
        }
