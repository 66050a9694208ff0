"""IPPO: Independent Proximal Policy Optimisation (de Witt et al., 2020; Schulman et al., 2017).

The idea in one paragraph. Every agent runs PPO on its own: a stochastic actor pi(a | o) and a value
critic V(o), both seeing only the agent's own observation; the other agents are part of the environment.
That sounds naive, but with PPO's small, clipped policy steps it is a strong baseline for cooperative
tasks. Agents named ``<group_id>_<idx>`` with the same spaces are interchangeable, so they share one actor
and one critic (parameter sharing): each member's experience trains the group's networks, which sees
``members x num_envs`` decisions per env step.

Pseudocode of one rollout + ``learn`` call, per group::

    for T vector steps:   a ~ pi_old(.|o), store (o, a, log pi_old(a|o), V_old(o), r, o', terminated, truncated)
    delta_t = r_t + gamma * (1 - terminated_t) * V(o'_t) - V(o_t)                     (1) GAE(lambda)
    A_t     = delta_t + gamma * lambda * (1 - done_t) * A_{t+1},   R_t = A_t + V(o_t)
    for update_epochs epochs, for minibatches of batch_size rows:
        ratio  = pi(a|o) / pi_old(a|o)
        L_clip = mean(min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A))               (2) clipped surrogate
        L_V    = mean((V(o) - R)^2) / 2                                               (3) value loss
        minimise  -L_clip + vf_coef * L_V - ent_coef * entropy                        (4) one step, clipped grads
        stop early if approx KL(pi_old || pi) > target_kl                             (5)

The five steps are marked ``(1)``..``(5)`` in :meth:`IPPO.learn`; storage and the GAE recursion live in
``rollout.py``. Acting (:meth:`IPPO.act`) and bookkeeping around the env are plumbing.

Box actions are sampled from a Gaussian; the env gets the sample clipped to the bounds, but the rollout
stores the *unclipped* sample, because that is what ``log_prob`` is the probability of. Discrete,
MultiDiscrete and MultiBinary actions are sampled from Categorical / Bernoulli distributions;
``infos[agent]["action_mask"]`` (1 = allowed) masks discrete choices, and the same mask is stored and
reapplied when ``learn`` recomputes log-probabilities.

Agents that act at different times (turn-based games, different frequencies) need
``marlkit.algorithms.wrappers.AsyncAgentsWrapper`` around the IPPO agent.

Reliability across seeds (issue 21, measured; tests/test_seed_sweep.py sweeps 20 seeds per probe). A seed
fixes the whole run: the networks are built under ``seeded_init``. With the issue's settings (lr 3e-3, batch
64, 4 epochs, entropy 0, 4 sub-envs, 12,000 steps) on ``ContextualCueEnv(episode_length=10)``, 6 of 20 seeds
ended with a policy wrong in some state, after it had been right everywhere: once every action earns the
same reward, the advantages are only the critic's errors (std 0.003 instead of 0.5); per-minibatch
normalisation blew them up to unit size, and Adam (eps 1e-8) turns even tiny gradients into lr-sized steps.
The step is systematic (the errors depend on the state), and with entropy 0 a state whose action flipped
is never sampled the right way again. Two changes: normalisation is floored by the group's running
advantage scale (:meth:`IPPO.advantage_scale`) and Adam's eps is PPO's usual 1e-5. Same 20 seeds: 6
failures before, 1 with the floor alone, 1 with both (one state of 20 flipped late in the run).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from marlkit.algorithms.base import MultiAgentAlgorithm
from marlkit.algorithms.rollout import RolloutBuffer, Transition, compute_gae, step_outcome
from marlkit.networks import StochasticActor, ValueCritic, group_agents, group_id, resolve_net_config

LOSS_NAMES = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction")


@dataclass
class PolicyStep:
    """What :meth:`IPPO.act` returns, per agent (dicts of numpy arrays with ``E = num_envs`` rows).

    ==============  =================  ================================================================
    action          (E, *act_shape)    for ``env.step``: Box clipped to the bounds, Discrete with ``start``
    raw_action      (E, *act_shape)    the sample itself (what ``log_prob`` refers to; stored for learn)
    log_prob        (E,) float32       log pi(raw_action | obs); NaN in inactive rows
    entropy         (E,) float32       entropy of pi(. | obs); NaN in inactive rows
    value           (E,) float32       V(obs); NaN in inactive rows
    active          (E,) bool          rows where the agent acts (``infos[agent]["active"]``)
    action_mask     (E, n) bool        the mask used, or None
    ==============  =================  ================================================================
    """

    action: dict[str, np.ndarray] = field(default_factory=dict)
    raw_action: dict[str, np.ndarray] = field(default_factory=dict)
    log_prob: dict[str, np.ndarray] = field(default_factory=dict)
    entropy: dict[str, np.ndarray] = field(default_factory=dict)
    value: dict[str, np.ndarray] = field(default_factory=dict)
    active: dict[str, np.ndarray] = field(default_factory=dict)
    action_mask: dict[str, np.ndarray | None] = field(default_factory=dict)


class IPPO(MultiAgentAlgorithm):
    """Independent PPO with parameter sharing within groups of homogeneous agents.

    Args (the guide's names):
        observation_spaces, action_spaces: one space per agent, in ``agent_ids`` order. Actions: Box (1-D),
            Discrete, MultiDiscrete or MultiBinary. Members of a group must have identical spaces.
        agent_ids: agent names; ``<group_id>_<idx>`` agents of one group share one actor and one critic.
        index: position in the population.
        net_config: single-level, or per *group* (``{"speaker": {...}}``). Networks are shared within
            groups, so a per-agent key is accepted only where it cannot conflict: it names its group's only
            member (the guide's ``{"speaker_0": ..., "listener_0": ...}``), or every member of the group
            gets the same config; otherwise it is rejected (see ``resolve_net_config``).
        batch_size: minibatch size (rows = one agent's decision in one sub-env).
        lr: Adam learning rate of actors and critics.
        learn_step: env steps per rollout (the training loop calls ``learn`` after this many).
        gamma, gae_lambda: discount and GAE lambda.
        action_std_init: initial log std of Box actions (0.0 means std 1).
        clip_coef: PPO clip range epsilon (also the value-clipping range when ``clip_vloss``).
        ent_coef, vf_coef: weights of the entropy bonus and of the value loss.
        max_grad_norm: gradients of each network are clipped to this global norm.
        target_kl: stop the epochs of a group early when the approximate KL exceeds it (None: never).
        update_epochs: passes over the rollout per ``learn``.
        device: torch device.
        seed: seeds the initial weights and the minibatch shuffling (sampling actions uses torch's global
            generator, which the training functions seed).
        clip_vloss: clip the value update around the old value, as in PPO's reference code (off by
            default: Andrychowicz et al., 2021 found it does not help).
    """

    algo = "IPPO"
    network_groups = ("actors", "critics")
    optimizer_lrs = {"actors": "lr", "critics": "lr"}
    hp_names = ("lr", "batch_size", "learn_step", "ent_coef")
    # PPO's usual Adam epsilon (Baselines, CleanRL). With torch's 1e-8, a parameter whose gradients have been
    # ~0 for a while (a converged, near-deterministic policy) still moves by ~lr per step in whatever
    # direction the noise points: Adam divides a tiny gradient by its own tiny RMS (issue 21).
    adam_eps = 1e-5

    def __init__(
        self,
        observation_spaces: Sequence[spaces.Space],
        action_spaces: Sequence[spaces.Space],
        agent_ids: Sequence[str],
        index: int = 0,
        net_config: Mapping[str, Any] | None = None,
        batch_size: int = 64,
        lr: float = 1e-4,
        learn_step: int = 2048,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        action_std_init: float = 0.0,
        clip_coef: float = 0.2,
        ent_coef: float = 0.01,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        target_kl: float | None = None,
        update_epochs: int = 4,
        device: str | torch.device = "cpu",
        seed: int | None = None,
        clip_vloss: bool = False,
    ) -> None:
        super().__init__(observation_spaces, action_spaces, agent_ids, index=index, device=device, seed=seed)
        for name, value in (("batch_size", batch_size), ("learn_step", learn_step), ("update_epochs", update_epochs)):
            if int(value) < 1:
                raise ValueError(f"IPPO {name} must be a positive int, got {value!r}")
        if not (0.0 <= gamma <= 1.0 and 0.0 <= gae_lambda <= 1.0):
            raise ValueError(f"IPPO gamma and gae_lambda must lie in [0, 1], got {gamma} and {gae_lambda}")
        self.net_config = None if net_config is None else dict(net_config)
        self.batch_size, self.learn_step, self.update_epochs = int(batch_size), int(learn_step), int(update_epochs)
        self.lr, self.gamma, self.gae_lambda = float(lr), float(gamma), float(gae_lambda)
        self.action_std_init, self.clip_coef = float(action_std_init), float(clip_coef)
        self.ent_coef, self.vf_coef, self.max_grad_norm = float(ent_coef), float(vf_coef), float(max_grad_norm)
        self.target_kl = None if target_kl is None else float(target_kl)
        self.clip_vloss = bool(clip_vloss)

        # Parameter sharing: one actor and one critic per group; a lone agent is a group of one.
        self.groups = group_agents(self.agent_ids)
        self.group_of = {agent: group_id(agent) for agent in self.agent_ids}
        for group, members in self.groups.items():
            first = members[0]
            for agent in members[1:]:
                if self.action_spaces[agent] != self.action_spaces[first]:
                    raise ValueError(
                        f"IPPO shares one actor within group '{group}', but {first} acts in "
                        f"{self.action_spaces[first]} and {agent} in {self.action_spaces[agent]}; give them "
                        f"different group ids"
                    )
        configs = resolve_net_config(
            self.net_config, self.agent_ids, [self.observation_spaces[a] for a in self.agent_ids],
            share_parameters=True,
        )
        self.actors: dict[str, nn.Module] = {}
        self.critics: dict[str, nn.Module] = {}
        with self.seeded_init():  # with a seed, the initial weights depend on it alone (same seed, same run)
            for group, members in self.groups.items():
                obs_space, action_space = self.observation_spaces[members[0]], self.action_spaces[members[0]]
                actor = StochasticActor(obs_space, action_space, configs[group], self.action_std_init)
                self.actors[group] = actor.to(self.device)
                self.critics[group] = ValueCritic(obs_space, configs[group]).to(self.device)
        self.build_optimizers(keep_state=False)

        self.rollouts = {group: RolloutBuffer(members) for group, members in self.groups.items()}
        self._last_step: PolicyStep | None = None  # get_action -> store_transition hand-over
        # Per group: (rows seen, mean advantage variance over them), the floor of advantage normalisation.
        self.advantage_stats: dict[str, tuple[int, float]] = {group: (0, 0.0) for group in self.groups}

    # ================================================================== acting (plumbing)
    def get_action(
        self, obs: Mapping[str, Any], infos: Mapping[str, Mapping] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Sample actions (training mode) or take the most likely ones (evaluation mode).

        Args:
            obs: ``{agent: (num_envs, *obs_shape)}`` from a vector env, or ``{agent: (*obs_shape)}`` from a
                single PettingZoo env. Agents may be missing (absent everywhere).
            infos: the env's infos: ``infos[agent]["active"]`` (num_envs,) bool marks rows where the agent
                is present; ``infos[agent]["action_mask"]`` (num_envs, n) restricts discrete actions.

        Returns:
            ``(action, log_prob, entropy, value)``, each ``{agent: array}`` with a leading ``num_envs`` axis
            (none for a single env): ``action`` (num_envs, *act_shape) for ``env.step`` (Box clipped to the
            bounds, Discrete int64 (num_envs,)); ``log_prob``, ``entropy``, ``value`` float32 (num_envs,),
            NaN in rows where the agent is absent. ``log_prob`` is that of the *unclipped* sample; in
            training mode the sample and the mask are kept for the next :meth:`store_transition`.
        """
        single = self.is_unbatched(obs)
        if single:
            masks = {a: i["action_mask"] for a, i in (infos or {}).items() if "action_mask" in (i or {})}
            obs, infos = _add_env_axis(obs), {a: {"action_mask": np.asarray(m)[None]} for a, m in masks.items()}
        step = self.act(obs, infos)
        self._last_step = step if self.training else None
        outputs = (step.action, step.log_prob, step.entropy, step.value)
        if single:
            return tuple({a: x[0] for a, x in out.items()} for out in outputs)  # type: ignore[return-value]
        return outputs

    def act(self, obs: Mapping[str, np.ndarray], infos: Mapping[str, Mapping] | None = None) -> PolicyStep:
        """Batched policy step (see :class:`PolicyStep`): one actor and one critic forward per group.

        ``obs[agent]`` is ``(n_agent, *obs_shape)``; members of a group may have different row counts
        (``AsyncAgentsWrapper`` passes only the rows of agents that act).
        """
        infos = infos or {}
        step = PolicyStep()
        for group, members in self.groups.items():
            present = [a for a in members if a in obs]
            if not present:
                continue
            xs, masks, actives = [], [], []
            for agent in present:
                x = np.asarray(obs[agent])
                info = infos.get(agent) or {}
                active = np.asarray(info["active"], dtype=bool) if "active" in info else np.ones(len(x), dtype=bool)
                if not active.all():  # NaN placeholders would poison the whole row's outputs
                    x = np.where(_rows(active, x), x, np.zeros((), x.dtype))
                xs.append(x)
                actives.append(active)
                masks.append(info.get("action_mask"))
            x = torch.as_tensor(xs[0] if len(xs) == 1 else np.concatenate(xs), device=self.device)
            mask = self._mask_tensor(group, masks, [len(a) for a in actives])
            actor, critic = self.actors[group], self.critics[group]
            with torch.inference_mode():
                dist = actor(x, mask)
                raw = dist.sample() if self.training else dist.mode()
                outs = {
                    "action": actor.to_env_action(raw),
                    "raw_action": raw,
                    "log_prob": dist.log_prob(raw),
                    "entropy": dist.entropy(),
                    "value": critic(x),
                }
            sizes = [len(a) for a in actives]
            split = {k: (v.cpu().numpy(),) if len(sizes) == 1 else [t.cpu().numpy() for t in v.split(sizes)]
                     for k, v in outs.items()}
            mask_np = None if mask is None else mask.cpu().numpy()
            env_dtype = self.action_spaces[members[0]].dtype  # e.g. int8 for MultiBinary, not the float sample
            start = 0
            for i, (agent, active) in enumerate(zip(present, actives)):
                step.action[agent] = split["action"][i].astype(env_dtype, copy=False)
                step.raw_action[agent] = split["raw_action"][i]
                all_active = active.all()
                for key in ("log_prob", "entropy", "value"):
                    values = split[key][i]
                    getattr(step, key)[agent] = values if all_active else np.where(active, values, np.nan)
                step.active[agent] = active
                step.action_mask[agent] = None if mask_np is None else mask_np[start:start + sizes[i]]
                start += sizes[i]
        return step

    def _mask_tensor(self, group: str, masks: list, sizes: list[int]) -> torch.Tensor | None:
        """The members' action masks as one (rows, n) bool tensor (all-allowed for members without one)."""
        if all(m is None for m in masks):
            return None
        space = self.action_spaces[self.groups[group][0]]
        if not isinstance(space, (spaces.Discrete, spaces.MultiDiscrete)):
            raise ValueError(
                f"action masks are for Discrete and MultiDiscrete actions; group '{group}' acts in {space}"
            )
        width = int(space.n) if isinstance(space, spaces.Discrete) else int(space.nvec.sum())
        parts = [np.ones((n, width), dtype=bool) if m is None else np.asarray(m).reshape(n, width).astype(bool)
                 for m, n in zip(masks, sizes)]
        return torch.as_tensor(parts[0] if len(parts) == 1 else np.concatenate(parts), device=self.device)

    def is_unbatched(self, obs: Mapping[str, Any]) -> bool:
        """Whether ``obs`` comes from one env (no leading num_envs axis)."""
        for agent, x in obs.items():
            return np.ndim(x) == len(self.observation_spaces[agent].shape)
        return False

    # ================================================================== storing a rollout (plumbing)
    def store_transition(
        self,
        obs: Mapping[str, Any],
        action: Mapping[str, Any],
        log_prob: Mapping[str, Any],
        reward: Mapping[str, Any],
        termination: Mapping[str, Any],
        truncation: Mapping[str, Any],
        value: Mapping[str, Any],
        next_obs: Mapping[str, Any],
        info: Mapping[str, Mapping] | None = None,
    ) -> None:
        """Store one vector step: the arguments of ``get_action`` and ``env.step`` (vector-env layout).

        The stored action is the unclipped sample that the last training-mode ``get_action`` drew (with
        its action mask); without one, ``action`` is stored as given (Discrete: minus the space's start).
        A row is one of the agent's decisions where ``log_prob`` is finite and the env reported the
        agent's termination (not NaN: a dead agent's last observation gets an action, but no answer).
        ``info`` is the ``env.step`` info: after a same-step autoreset the true next observation is
        ``info[agent]["final_observation"]`` (see ``rollout.step_outcome``).
        Raises ValueError if an agent acted but has no next observation and is not done: that is an
        asynchronous env, which needs ``AsyncAgentsWrapper``.
        """
        info = info or {}
        if self.is_unbatched(obs):  # one env: give everything a num_envs axis of 1
            next_present = {a: np.array([a in next_obs]) for a in self.agent_ids}
            obs, action, log_prob, value, next_obs = (
                _add_env_axis(d) for d in (obs, action, log_prob, value, next_obs))
            reward, termination, truncation = (
                {a: np.atleast_1d(np.asarray(v, dtype=np.float32)) for a, v in d.items()}
                for d in (reward, termination, truncation))
            info = {a: {"active": next_present[a]} for a in self.agent_ids}  # a single env never autoresets
        cached, self._last_step = self._last_step, None
        transitions: dict[str, Transition] = {}
        for agent in self.agent_ids:
            if agent not in obs or agent not in log_prob:
                continue
            agent_obs, agent_log_prob = np.asarray(obs[agent]), np.asarray(log_prob[agent], dtype=np.float32)
            out = step_outcome(agent, agent_obs, termination, truncation, next_obs, info)
            # A decision = the agent was given an action *and* the env answered for it. A dead agent's
            # terminal observation row is active, but the env reports nothing (NaN) for it afterwards.
            active = np.isfinite(agent_log_prob) & out.reported
            raw, mask = self._sampled_action(agent, action[agent], cached, len(active))
            terminated, truncated, next_valid = out.terminated, out.truncated, out.next_valid
            reward_a = np.asarray(reward[agent], dtype=np.float32) if agent in reward else np.zeros(len(active))
            stranded = active & ~(terminated | truncated) & ~next_valid
            if stranded.any():
                raise ValueError(
                    f"agent '{agent}' acted in sub-env(s) {np.flatnonzero(stranded).tolist()} but has no next "
                    f"observation there and is not done: the env lets agents act at different times; wrap the "
                    f"agent in marlkit.algorithms.wrappers.AsyncAgentsWrapper"
                )
            transitions[agent] = Transition(
                obs=agent_obs, action=raw, log_prob=agent_log_prob, value=np.asarray(value[agent], dtype=np.float32),
                reward=np.nan_to_num(reward_a).astype(np.float32, copy=False), terminated=terminated,
                truncated=truncated, next_obs=out.next_obs, next_valid=next_valid, active=active, action_mask=mask,
            )
        self.add_transitions(transitions)

    def _sampled_action(self, agent: str, given: Any, cached: PolicyStep | None, rows: int):
        """The action to store and its mask: the cached unclipped sample if it matches, else ``given``."""
        if cached is not None and agent in cached.raw_action and len(cached.raw_action[agent]) == rows:
            return cached.raw_action[agent], cached.action_mask[agent]
        given = np.asarray(given)
        space = self.action_spaces[agent]
        if isinstance(space, (spaces.Discrete, spaces.MultiDiscrete)):
            given = np.nan_to_num(given).astype(np.int64) - np.asarray(space.start, dtype=np.int64)
        return given, None

    def add_transitions(self, transitions: Mapping[str, Transition]) -> None:
        """Append one vector step of assembled transitions ``{agent: Transition}`` to the group rollouts."""
        by_group: dict[str, dict[str, Transition]] = {}
        for agent, transition in transitions.items():
            by_group.setdefault(self.group_of[agent], {})[agent] = transition
        for group, members in by_group.items():
            self.rollouts[group].add(members)

    # ================================================================== learning: the algorithm
    def learn(self) -> dict[str, float]:
        """PPO update of every group from its rollout; clears the rollouts.

        Returns the mean over minibatches of ``policy_loss``, ``value_loss``, ``entropy``, ``approx_kl``
        and ``clip_fraction`` (NaN if no group had data).
        """
        sums = {name: torch.zeros((), device=self.device) for name in LOSS_NAMES}
        num_minibatches = 0
        for group, rollout in self.rollouts.items():
            batch = rollout.stack(self.device)
            rollout.clear()
            if batch is None or not bool(batch.active.any()):
                continue
            actor, critic = self.actors[group], self.critics[group]
            actor_opt, critic_opt = self.optimizers[f"actors/{group}"], self.optimizers[f"critics/{group}"]

            # (1) GAE(lambda): advantages from V of each transition's true next observation.
            advantages = self.advantages(group, batch)
            returns = advantages + batch.value

            # Only active rows (real decisions) enter the loss: (T, C, ...) -> (N, ...) of those rows.
            act = batch.active
            b_obs, b_action, b_log_prob = batch.obs[act], batch.action[act], batch.log_prob[act]
            b_value, b_adv, b_ret = batch.value[act], advantages[act], returns[act]
            b_mask = None if batch.action_mask is None else batch.action_mask[act]

            n = b_obs.shape[0]
            adv_scale = self.advantage_scale(group, b_adv)
            num_chunks = max(1, round(n / self.batch_size))  # equal-sized minibatches of ~batch_size rows
            for _ in range(self.update_epochs):
                stop = False
                permutation = torch.as_tensor(self.rng.permutation(n), device=self.device)
                for mb in torch.tensor_split(permutation, num_chunks):
                    dist = actor(b_obs[mb], None if b_mask is None else b_mask[mb])
                    log_ratio = dist.log_prob(b_action[mb]) - b_log_prob[mb]
                    ratio = log_ratio.exp()
                    entropy = dist.entropy().mean()
                    adv = b_adv[mb]
                    if len(mb) > 1:  # per-minibatch normalisation: a scale-free policy step ...
                        # ... that never blows up a minibatch whose advantages are smaller than the group's
                        # usual scale (see advantage_scale: that would turn value noise into a full step)
                        adv = (adv - adv.mean()) / (torch.clamp(adv.std(), min=adv_scale) + 1e-8)

                    # (2) the clipped surrogate: no incentive to move the ratio beyond 1 +- clip_coef.
                    policy_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - self.clip_coef, 1 + self.clip_coef))
                    policy_loss = policy_loss.mean()

                    # (3) the value loss, optionally clipped around the value the rollout saw.
                    v = critic(b_obs[mb])
                    value_loss = (v - b_ret[mb]) ** 2
                    if self.clip_vloss:
                        v_clipped = b_value[mb] + (v - b_value[mb]).clamp(-self.clip_coef, self.clip_coef)
                        value_loss = torch.max(value_loss, (v_clipped - b_ret[mb]) ** 2)
                    value_loss = 0.5 * value_loss.mean()

                    # (4) one gradient step on both networks, each with its gradient norm clipped.
                    loss = policy_loss - self.ent_coef * entropy + self.vf_coef * value_loss
                    actor_opt.zero_grad()
                    critic_opt.zero_grad()
                    loss.backward()
                    nn.utils.clip_grad_norm_(actor.parameters(), self.max_grad_norm)
                    nn.utils.clip_grad_norm_(critic.parameters(), self.max_grad_norm)
                    actor_opt.step()
                    critic_opt.step()

                    with torch.no_grad():
                        # (5) approximate KL(pi_old || pi), the low-variance estimator E[(r - 1) - log r].
                        approx_kl = ((ratio - 1) - log_ratio).mean()
                        clip_fraction = ((ratio - 1).abs() > self.clip_coef).float().mean()
                        for name, x in zip(LOSS_NAMES, (policy_loss, value_loss, entropy, approx_kl, clip_fraction)):
                            sums[name] += x.detach()
                    num_minibatches += 1
                    if self.target_kl is not None and approx_kl.item() > self.target_kl:
                        stop = True  # the policy moved too far from the one that collected the data
                        break
                if stop:
                    break
        self.learn_counter += 1
        if num_minibatches == 0:
            return dict.fromkeys(LOSS_NAMES, float("nan"))
        return {name: float(total) / num_minibatches for name, total in sums.items()}

    def advantage_scale(self, group: str, advantages: torch.Tensor) -> float:
        """Record this rollout's advantages ``(N,)`` of ``group``; returns the group's advantage scale so far.

        The scale is the root of the mean advantage variance over every row the group has learnt from. A
        minibatch's advantages are divided by the larger of their own std and this scale. Why not by their
        own std alone: once a policy is right almost everywhere, every row earns the same reward and the
        advantages are only the critic's errors (std 0.003 where it was 0.5). Dividing by that std blows
        the errors up to unit size, and since the errors depend on the state, the "step" is systematic:
        with entropy 0 it can turn a correct, near-deterministic policy into a constant action that never
        recovers (issue 21: one policy ends at chance). With the floor such a rollout changes the policy by
        as little as its advantages say. The mean runs over all rows (not a moving window), as in the running
        reward normalisation of Baselines, so a long converged phase does not bring the blow-up back.
        """
        n = int(advantages.numel())
        rows, mean_var = self.advantage_stats[group]
        if n > 1:
            var = float(advantages.var())
            rows += n
            mean_var += (var - mean_var) * n / rows
            self.advantage_stats[group] = (rows, mean_var)
        return mean_var ** 0.5

    def advantages(self, group: str, batch: Any | None = None) -> torch.Tensor:
        """GAE advantages ``(T, C)`` of ``group``'s rollout (its stored one unless ``batch`` is given).

        V(s'_t) is computed here, in one critic forward over every row that has a next observation; rows
        that terminated, or have none, bootstrap from 0.
        """
        if batch is None:
            batch = self.rollouts[group].stack(self.device)
            if batch is None:
                raise ValueError(f"group '{group}' has no stored transitions; collect a rollout first")
        needed = batch.active & batch.next_valid & ~batch.terminated
        next_value = torch.zeros_like(batch.value)
        with torch.no_grad():
            if bool(needed.any()):
                next_value[needed] = self.critics[group](batch.next_obs[needed])
        return compute_gae(
            batch.reward, batch.value, next_value, batch.terminated, batch.truncated, batch.active,
            self.gamma, self.gae_lambda,
        )

    # ================================================================== checkpoints
    def extra_state(self) -> dict[str, Any]:
        return {"advantage_stats": {g: [int(r), float(v)] for g, (r, v) in self.advantage_stats.items()}}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        stats = state.get("advantage_stats", {})  # absent in checkpoints written before it existed
        self.advantage_stats.update({g: (int(r), float(v)) for g, (r, v) in stats.items()})

    def init_kwargs(self) -> dict[str, Any]:
        return {
            **super().init_kwargs(),
            "net_config": self.net_config,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "learn_step": self.learn_step,
            "gamma": self.gamma,
            "gae_lambda": self.gae_lambda,
            "action_std_init": self.action_std_init,
            "clip_coef": self.clip_coef,
            "ent_coef": self.ent_coef,
            "vf_coef": self.vf_coef,
            "max_grad_norm": self.max_grad_norm,
            "target_kl": self.target_kl,
            "update_epochs": self.update_epochs,
            "clip_vloss": self.clip_vloss,
        }


def _rows(mask: np.ndarray, like: np.ndarray) -> np.ndarray:
    """A (E,) row mask reshaped to broadcast against ``like`` (E, ...)."""
    return mask.reshape(-1, *[1] * (like.ndim - 1))


def _add_env_axis(d: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """{key: x} -> {key: x[None]}: one env as a batch of one."""
    return {k: np.asarray(v)[None] for k, v in d.items()}
