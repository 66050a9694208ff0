"""MADDPG: Multi-Agent Deep Deterministic Policy Gradient (Lowe et al., 2017).

The idea in one paragraph. Each agent i has a deterministic actor mu_i(o_i) that sees only its own
observation (decentralised execution) and a critic Q_i(o_1..o_N, a_1..a_N) that sees *every* agent's
observation and action (centralised training). From agent i's point of view the other agents are part
of the environment, and they keep changing while they learn; conditioning the critic on their actions
makes the environment stationary again for the critic.

Pseudocode of one ``learn`` call, for a batch (o, a, r, o', d) from the shared replay buffer::

    a'_j = mu'_j(o'_j)                                   for every agent j   (target actors)
    y_i  = r_i + gamma * (1 - d_i) * Q'_i(o', a')        for every agent i   (target critics)
    critic_i  <- minimise (Q_i(o, a) - y_i)^2
    actor_i   <- maximise Q_i(o, a_1, .., mu_i(o_i), .., a_N)   (the other agents' actions from the batch)
    targets   <- tau * online + (1 - tau) * targets

The four steps are marked in :meth:`MADDPG.learn`. MATD3 (``matd3.py``) reuses all of this and changes
three hooks: :meth:`_target_actions`, :meth:`_target_q` and :meth:`_update_actor_now`.

Actions. Box actions: the actor's tanh output scaled to the bounds; exploration adds Ornstein-Uhlenbeck or
Gaussian noise of std ``expl_noise`` times the half-range of the bounds, clipped to the bounds.
``expl_noise`` may differ per agent (a dict keyed by agent or group id): in Speaker Listener the speaker's
message must stay close to what it will send greedily, or the listener learns to ignore it, while the
listener needs wide noise to find the landmarks.
Discrete actions: the actor outputs a one-hot; during training it is a Gumbel-Softmax sample (the
exploration) with a straight-through gradient, so the critic's gradient reaches the logits.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces

from marlkit.algorithms.base import MultiAgentAlgorithm
from marlkit.algorithms.noise import ActionNoise
from marlkit.networks import DeterministicActor, QCritic, group_id, resolve_net_config

# Weight of the penalty on the actor's pre-activations (see step (4) of ``learn``). Discrete logits: 1e-3,
# as in the original MADDPG code. Box actions: 0.1. With 1e-3 the Speaker Listener listener's pre-tanh
# outputs grew to |3-4| within 5,000 env steps (tanh' ~ 0.01): its greedy policy drove full throttle in one
# direction (episode scores near -500) and the vanishing gradient kept it there for thousands of updates.
PREACTIVATION_PENALTY = {"box": 0.1, "discrete": 1e-3}


class MADDPG(MultiAgentAlgorithm):
    """Multi-agent DDPG with decentralised actors and centralised critics.

    Args (the guide's names):
        observation_spaces, action_spaces: one space per agent, in ``agent_ids`` order. Actions must be
            Box (1-D) or Discrete.
        agent_ids: agent names; ``<group_id>_<idx>`` names form groups (see ``share_parameters``).
        O_U_noise: Ornstein-Uhlenbeck exploration noise (else Gaussian).
        expl_noise: noise std, relative to the half-range of the action bounds; one number for every
            agent, or a dict ``{agent_or_group_id: std}`` covering every agent with Box actions.
        vect_noise_dim: number of sub-envs (one noise state each).
        mean_noise, theta, dt: Ornstein-Uhlenbeck parameters.
        index: position in the population.
        net_config: single-level, per agent or per group (``marlkit.networks.resolve_net_config``).
        batch_size, lr_actor, lr_critic, learn_step, gamma, tau: the usual DDPG hyperparameters;
            ``learn_step`` is read by the training loop (learn once per ``learn_step`` env steps).
        share_parameters: agents of one group share one actor and one critic (their spaces must match).
        device: torch device.
        seed: seeds this agent's exploration noise and sampling.
    """

    algo = "MADDPG"
    critic_groups: tuple[str, ...] = ("critics",)
    network_groups = ("actors", "actor_targets", "critics", "critic_targets")
    optimizer_lrs = {"actors": "lr_actor", "critics": "lr_critic"}
    target_groups = {"actors": "actor_targets", "critics": "critic_targets"}
    hp_names = ("lr_actor", "lr_critic", "batch_size", "learn_step", "gamma", "tau", "expl_noise")

    def __init__(
        self,
        observation_spaces: Sequence[spaces.Space],
        action_spaces: Sequence[spaces.Space],
        agent_ids: Sequence[str],
        O_U_noise: bool = True,
        expl_noise: float | Mapping[str, float] = 0.1,
        vect_noise_dim: int = 1,
        mean_noise: float = 0.0,
        theta: float = 0.15,
        dt: float = 0.01,
        index: int = 0,
        net_config: Mapping[str, Any] | None = None,
        batch_size: int = 64,
        lr_actor: float = 1e-3,
        lr_critic: float = 1e-3,
        learn_step: int = 100,
        gamma: float = 0.95,
        tau: float = 0.01,
        share_parameters: bool = False,
        device: str | torch.device = "cpu",
        seed: int | None = None,
    ) -> None:
        super().__init__(observation_spaces, action_spaces, agent_ids, index=index, device=device, seed=seed)
        for agent, space in self.action_spaces.items():
            if not isinstance(space, (spaces.Box, spaces.Discrete)):
                raise ValueError(f"{self.algo} acts in Box or Discrete action spaces; agent '{agent}' has {space}")
        self.O_U_noise, self.vect_noise_dim = bool(O_U_noise), int(vect_noise_dim)
        self.expl_noise = dict(expl_noise) if isinstance(expl_noise, Mapping) else float(expl_noise)
        noise_scales = self._noise_scales(self.expl_noise)  # checked before any network is built
        self.mean_noise, self.theta, self.dt = float(mean_noise), float(theta), float(dt)
        self.net_config = None if net_config is None else dict(net_config)
        self.batch_size, self.learn_step = int(batch_size), int(learn_step)
        self.lr_actor, self.lr_critic = float(lr_actor), float(lr_critic)
        self.gamma, self.tau = float(gamma), float(tau)
        self.share_parameters = bool(share_parameters)

        # Which actor/critic each agent uses: its own, or its group's when sharing parameters.
        self.policy_key = {a: group_id(a) if self.share_parameters else a for a in self.agent_ids}
        # Critic input order for agent i: i first, then the others. Members of one group then see
        # identically-shaped inputs, so one critic can serve the whole group.
        self.critic_order = {a: [a] + [b for b in self.agent_ids if b != a] for a in self.agent_ids}
        configs = resolve_net_config(
            self.net_config,
            self.agent_ids,
            [self.observation_spaces[a] for a in self.agent_ids],
            share_parameters=self.share_parameters,
        )
        first_agent = {}
        for a in self.agent_ids:
            first_agent.setdefault(self.policy_key[a], a)
        with self.seeded_init():
            self._build_networks(first_agent, configs)
        self.build_optimizers(keep_state=False)
        self.set_training_mode(True)  # and target networks in eval mode

        # The noise draws from self.rng, so seeding, cloning and checkpoints cover it too.
        self.noises = {
            a: ActionNoise(
                self.vect_noise_dim,
                space.shape[0],
                noise_scales[a],
                self.mean_noise,
                self.theta,
                self.dt,
                ou=self.O_U_noise,
                rng=self.rng,
            )
            for a, space in self.action_spaces.items()
            if isinstance(space, spaces.Box)
        }
        # (low, high, half-range) of each Box action space: the noise is scaled and clipped to them every step.
        self.box_bounds = {
            a: (space.low, space.high, (space.high - space.low) / 2)
            for a, space in self.action_spaces.items()
            if isinstance(space, spaces.Box)
        }

    def _build_networks(self, first_agent: dict[str, str], configs: Mapping[str, dict]) -> None:
        """One actor per policy key, and one critic per key for each of ``critic_groups``, with targets."""
        self.actors, self.actor_targets = {}, {}
        for key, agent in first_agent.items():
            actor = DeterministicActor(self.observation_spaces[agent], self.action_spaces[agent], configs[key])
            self.actors[key] = actor.to(self.device)
            self.actor_targets[key] = actor.clone().to(self.device)
        for group in self.critic_groups:
            online, target = {}, {}
            for key, agent in first_agent.items():
                order = self.critic_order[agent]
                critic = QCritic(
                    [self.observation_spaces[b] for b in order], [self.action_spaces[b] for b in order], configs[key]
                )
                online[key], target[key] = critic.to(self.device), critic.clone().to(self.device)
            setattr(self, group, online)
            setattr(self, group.replace("critics", "critic_targets"), target)

    # ================================================================== acting
    def get_action(
        self, obs: Mapping[str, np.ndarray], infos: Mapping[str, Mapping] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Actions for every agent in ``obs``.

        Args:
            obs: ``{agent: (num_envs, *obs_shape)}`` from a vector env (or ``(*obs_shape)`` for one env).
            infos: the env's infos; ``infos[agent]["action_mask"]`` (num_envs, n) restricts Discrete actions.

        Returns:
            ``(action, raw_action)``: ``action`` goes to ``env.step`` (Box: (num_envs, d) float32 in the
            bounds; Discrete: (num_envs,) int64); ``raw_action`` goes to the replay buffer (Box: the same
            array; Discrete: the action index (num_envs,) int64 without the space's ``start`` offset).
        """
        infos = infos or {}
        action, raw_action = {}, {}
        with torch.inference_mode():
            for agent, agent_obs in obs.items():
                space = self.action_spaces.get(agent)
                if space is None:
                    raise KeyError(f"observation for unknown agent '{agent}'; {self.algo} knows {self.agent_ids}")
                x, single = self._obs_tensor(agent, agent_obs)
                info = infos.get(agent)
                mask = info.get("action_mask") if isinstance(info, Mapping) else None
                if mask is not None:
                    mask = torch.as_tensor(np.asarray(mask), device=self.device).reshape(x.shape[0], -1)
                actor = self.actors[self.policy_key[agent]]
                out = actor.forward(x, mask)  # (not actor(x): see EvolvableMLP.forward)
                if isinstance(space, spaces.Box):
                    a = out.cpu().numpy()
                    if self.training:
                        a = self._add_noise(agent, a)
                    raw = env_a = a.astype(np.float32, copy=False)
                else:
                    raw = out.argmax(-1).cpu().numpy().astype(np.int64)
                    env_a = raw + int(space.start)
                action[agent] = env_a[0] if single else env_a
                raw_action[agent] = raw[0] if single else raw
        return action, raw_action

    def _obs_tensor(self, agent: str, agent_obs: Any) -> tuple[torch.Tensor, bool]:
        """obs as a batched tensor (placeholders of absent agents -> 0), and whether it was unbatched."""
        arr = np.asarray(agent_obs)
        single = arr.ndim == len(self.observation_spaces[agent].shape)
        if single:
            arr = arr[None]
        if arr.dtype.kind == "f" and np.isnan(arr).any():
            arr = np.nan_to_num(arr, copy=False)
        if self.device.type == "cpu" and arr.flags.writeable:
            return torch.from_numpy(arr), single  # shares the array's memory, as as_tensor would, but faster
        return torch.as_tensor(arr, device=self.device), single

    def _add_noise(self, agent: str, a: np.ndarray) -> np.ndarray:
        """Box action ``a`` (num_envs, d) plus exploration noise scaled to the bounds' half-range, clipped."""
        noise = self.noises[agent]
        if a.shape[0] != noise.num_envs:
            raise ValueError(
                f"got observations of {a.shape[0]} sub-envs for agent '{agent}', but this agent keeps "
                f"vect_noise_dim={noise.num_envs} exploration-noise states; create it with "
                f"vect_noise_dim=num_envs (create_population(..., num_envs=...) does this)"
            )
        low, high, half_range = self.box_bounds[agent]
        noisy = a + noise.sample() * half_range
        return np.minimum(np.maximum(noisy, low, out=noisy), high, out=noisy)  # np.clip, without its overhead

    def reset_action_noise(self, indices: Sequence[int] | None = None) -> None:
        """Restart the exploration noise of the given sub-envs (all when None), e.g. at episode ends."""
        for noise in self.noises.values():
            noise.reset(indices)

    def _noise_scales(self, expl_noise: float | Mapping[str, float]) -> dict[str, float]:
        """``expl_noise`` (a number, or ``{agent_or_group_id: std}``) -> ``{agent: std}`` for Box-action agents."""
        box_agents = [a for a, s in self.action_spaces.items() if isinstance(s, spaces.Box)]
        if not isinstance(expl_noise, Mapping):
            expl_noise = {a: expl_noise for a in box_agents}
        known = set(self.agent_ids) | {group_id(a) for a in self.agent_ids}
        unknown = sorted(str(k) for k in expl_noise if k not in known)
        if unknown:
            raise ValueError(f"expl_noise names unknown agent(s) {unknown}; agents are {self.agent_ids}")
        scales = {}
        for a in box_agents:
            value = expl_noise.get(a, expl_noise.get(group_id(a)))  # an agent's own entry beats its group's
            if value is None:
                raise ValueError(f"expl_noise gives no value for agent '{a}' (Box actions): add '{a}' or "
                                 f"'{group_id(a)}' to {dict(expl_noise)}")
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < float("inf"):
                raise ValueError(f"expl_noise for agent '{a}' must be a non-negative number, got {value!r}")
            scales[a] = float(value)
        return scales

    def set_hyperparameter(self, name: str, value: Any) -> None:
        scales = self._noise_scales(value) if name == "expl_noise" else None  # validate before setting
        super().set_hyperparameter(name, value)
        if scales is not None:
            for agent, noise in self.noises.items():
                noise.scale = scales[agent]

    # ================================================================== learning
    def learn(self, experiences: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, dict[str, float]]:
        """One update of every critic and (every ``_update_actor_now``) every actor.

        Args:
            experiences: ``(states, actions, rewards, next_states, dones)`` as returned by
                ``MultiAgentReplayBuffer.sample``: dicts of tensors, states (B, *obs_shape), actions
                (B, d) float or (B,) int, rewards (B,), dones (B,) (terminations: truncated transitions
                are bootstrapped).

        Returns:
            ``{"critic": {agent: loss}, "actor": {agent: loss}}`` (actor losses only when actors updated).
        """
        obs, actions, rewards, next_obs, dones = self._sanitise(experiences)
        self.learn_counter += 1

        # (1) target actions a'_j = mu'_j(o'_j) for every agent j
        with torch.no_grad():
            next_actions = self._target_actions(next_obs)

        # (2) targets y_i = r_i + gamma (1 - d_i) Q'_i(o', a'), once per agent: every critic group
        # (MATD3's twins) regresses on the same y
        targets = {}
        with torch.no_grad():
            for agent in self.agent_ids:
                key, order = self.policy_key[agent], self.critic_order[agent]
                q_next = self._target_q(key, [next_obs[b] for b in order], [next_actions[b] for b in order])
                targets[agent] = rewards[agent] + self.gamma * (1.0 - dones[agent]) * q_next

        # (3) critic regression towards y_i
        critic_losses, critic_terms = {}, []
        for group in self.critic_groups:
            for agent in self.agent_ids:
                key, order, y = self.policy_key[agent], self.critic_order[agent], targets[agent]
                q = getattr(self, group)[key]([obs[b] for b in order], [actions[b] for b in order])
                loss = F.mse_loss(q, y)
                critic_terms.append(loss)
                critic_losses[agent] = critic_losses.get(agent, 0.0) + float(loss.detach()) / len(self.critic_groups)
        self._step(self.critic_groups, critic_terms)

        # (4) actor ascent on Q_i(o, a_1, .., mu_i(o_i), .., a_N), then soft target updates
        actor_losses, actor_terms = {}, []
        if self._update_actor_now():
            for agent in self.agent_ids:
                key, order = self.policy_key[agent], self.critic_order[agent]
                # differentiable: tanh (Box) or straight-through one-hot (Discrete)
                own, pre = self.actors[key].forward_with_preactivation(obs[agent])
                joint = [own] + [actions[b] for b in order[1:]]
                loss = -self.critics[key]([obs[b] for b in order], joint).mean()
                # As in the original MADDPG code: a penalty on the pre-activations keeps tanh (and the
                # logits) out of saturation, where the critic's gradient could no longer move them.
                kind = "discrete" if self.actors[key].discrete else "box"
                loss = loss + PREACTIVATION_PENALTY[kind] * pre.pow(2).mean()
                actor_terms.append(loss)
                actor_losses[agent] = float(loss.detach())
            self._step(("actors",), actor_terms)
            self.soft_update_targets()
        return {"critic": critic_losses, "actor": actor_losses}

    def _sanitise(self, experiences: Sequence[Mapping[str, torch.Tensor]]):
        """Replace absent-agent placeholders: NaN observations/actions/rewards -> 0, NaN dones -> 1."""
        if len(experiences) != 5:
            raise ValueError(
                f"{self.algo}.learn expects (states, actions, rewards, next_states, dones), "
                f"got {len(experiences)} fields"
            )
        states, actions, rewards, next_states, dones = experiences

        def clean(field: Mapping[str, torch.Tensor], nan: float = 0.0) -> dict[str, torch.Tensor]:
            out = {}
            for a in self.agent_ids:
                if a not in field:
                    raise KeyError(f"experience batch has no entry for agent '{a}'")
                t = field[a].to(self.device)
                out[a] = torch.nan_to_num(t, nan=nan) if t.is_floating_point() else t
            return out

        rew = {a: t.float().reshape(-1) for a, t in clean(rewards).items()}
        done = {a: t.float().reshape(-1) for a, t in clean(dones, nan=1.0).items()}
        return clean(states), clean(actions), rew, clean(next_states), done

    def _step(self, groups: Sequence[str], losses: list[torch.Tensor]) -> None:
        """One backward pass for the summed losses, then one optimizer step per network of ``groups``.

        Each network only receives gradient from its own agents' terms, so summing first gives every
        network exactly the gradient of its own loss, with one pass through autograd instead of one per
        agent. ``torch.autograd.grad`` asks only for the gradients of ``groups``' parameters: the actor
        loss flows back through the critics, but the critics' own weight gradients are not computed.
        """
        optimizers = [opt for name, opt in self.optimizers.items() if name.split("/", 1)[0] in groups]
        params = [p for opt in optimizers for group in opt.param_groups for p in group["params"]]
        grads = torch.autograd.grad(torch.stack(losses).sum(), params, allow_unused=True)
        for param, grad in zip(params, grads):
            param.grad = grad  # None for a parameter the loss does not reach: the optimizer skips it
        for opt in optimizers:
            opt.step()

    # ------------------------------------------------------------------ hooks MATD3 overrides
    def _target_actions(self, next_obs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """a'_j = mu'_j(o'_j): greedy target actions (Box (B, d); Discrete one-hot (B, n))."""
        out = {}
        for a in self.agent_ids:
            # target networks stay in eval mode: greedy one-hot for discrete actions, not a Gumbel sample
            out[a] = self.actor_targets[self.policy_key[a]](next_obs[a])
        return out

    def _target_q(self, key: str, next_obs: list[torch.Tensor], next_actions: list[torch.Tensor]) -> torch.Tensor:
        """Q'_i(o', a') of the target critic (B,)."""
        return self.critic_targets[key](next_obs, next_actions)

    def _update_actor_now(self) -> bool:
        """MADDPG updates the actors on every ``learn`` call."""
        return True

    # ------------------------------------------------------------------ checkpoints
    def init_kwargs(self) -> dict[str, Any]:
        return {
            **super().init_kwargs(),
            "O_U_noise": self.O_U_noise,
            "expl_noise": self.expl_noise,
            "vect_noise_dim": self.vect_noise_dim,
            "mean_noise": self.mean_noise,
            "theta": self.theta,
            "dt": self.dt,
            "net_config": self.net_config,
            "batch_size": self.batch_size,
            "lr_actor": self.lr_actor,
            "lr_critic": self.lr_critic,
            "learn_step": self.learn_step,
            "gamma": self.gamma,
            "tau": self.tau,
            "share_parameters": self.share_parameters,
        }

    def extra_state(self) -> dict[str, Any]:
        return {"noise": {a: n.state_dict() for a, n in self.noises.items()}}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        for a, d in state.get("noise", {}).items():
            self.noises[a].load_state_dict(d)
