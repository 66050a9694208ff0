"""What every marlkit algorithm shares: bookkeeping, evaluation, hyperparameters, cloning, checkpoints.

MADDPG, MATD3 and IPPO subclass ``MultiAgentAlgorithm``. This file holds *plumbing* a student can skip;
the learning algorithms themselves live in ``maddpg.py``, ``matd3.py`` and ``ippo.py``.

How a subclass plugs in:

* ``network_groups`` names the attributes that hold ``{key: nn.Module}`` dicts (``"actors"``,
  ``"critics"``, ...). ``networks()`` flattens them to ``{"actors/speaker_0": module, ...}``; checkpoints,
  cloning and mutations all go through that one view.
* ``optimizer_lrs`` maps a network group to the attribute holding its learning rate; ``_make_optimizer``
  builds one Adam per network of those groups. ``set_hyperparameter("lr_actor", 3e-4)`` therefore
  reaches the optimizers at once.
* ``hp_names`` lists the hyperparameters evolution may mutate (the guide's ``hp_config`` keys).
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from marlkit.networks import network_from_checkpoint
from marlkit.networks.spaces import space_from_config, space_to_config

CHECKPOINT_FORMAT = 1


# ----------------------------------------------------------------------------- small shared helpers
def episode_dones(terminations: Mapping[str, Any], truncations: Mapping[str, Any]) -> np.ndarray:
    """Which sub-envs finished an episode this step, ``(num_envs,)`` bool.

    A sub-env is done when every agent is terminated, truncated or absent (NaN placeholder), the rule
    of the guide's custom training loop.
    """
    per_agent = []
    for agent, term in terminations.items():
        term = np.asarray(term, dtype=np.float64)
        trunc = np.asarray(truncations.get(agent, np.zeros_like(term)), dtype=np.float64)
        per_agent.append(np.where(np.isnan(term), 1.0, term).astype(bool) | np.nan_to_num(trunc).astype(bool))
    return np.logical_and.reduce(per_agent)


# ----------------------------------------------------------------------------- the base class
class MultiAgentAlgorithm:
    """Shared contract of marlkit's multi-agent algorithms (see ARCHITECTURE.md).

    Bookkeeping read by the guide's custom loop and the training functions:
    ``index`` (position in the population), ``steps`` (``steps[-1]`` is the running env-step count),
    ``scores`` (completed training-episode scores), ``fitness`` (evaluation results), ``mut`` (the last
    mutation, a string), ``lineage`` (``[(generation, parent_index), ...]``).
    """

    algo: str = ""
    network_groups: tuple[str, ...] = ()
    optimizer_lrs: dict[str, str] = {}
    target_groups: dict[str, str] = {}  # trained group -> the group of its target networks
    hp_names: tuple[str, ...] = ()
    adam_eps: float = 1e-8  # Adam's epsilon (torch's default); IPPO raises it, see ippo.py

    def __init__(
        self,
        observation_spaces: Sequence[spaces.Space],
        action_spaces: Sequence[spaces.Space],
        agent_ids: Sequence[str],
        index: int = 0,
        device: str | torch.device = "cpu",
        seed: int | None = None,
    ) -> None:
        agent_ids = list(agent_ids)
        if len(set(agent_ids)) != len(agent_ids):
            raise ValueError(f"agent_ids contains duplicates: {agent_ids}")
        if len(observation_spaces) != len(agent_ids) or len(action_spaces) != len(agent_ids):
            raise ValueError(
                f"{type(self).__name__} needs one observation and one action space per agent: got "
                f"{len(agent_ids)} agent_ids, {len(observation_spaces)} observation_spaces and "
                f"{len(action_spaces)} action_spaces"
            )
        for agent, space in zip(agent_ids, list(observation_spaces) + list(action_spaces)):
            if not isinstance(space, spaces.Space):
                raise TypeError(f"space of agent '{agent}' must be a gymnasium space, got {type(space).__name__}")
        self.agent_ids = agent_ids
        self.observation_spaces = dict(zip(agent_ids, observation_spaces))
        self.action_spaces = dict(zip(agent_ids, action_spaces))
        self.device = torch.device(device)
        self.index = int(index)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.training = True
        self.steps: list[int] = [0]
        self.scores: list[float] = []
        self.fitness: list[float] = []
        self.mut: str = "None"
        self.lineage: list[tuple[int, int]] = []
        self.learn_counter = 0  # calls to learn(); MATD3's delayed policy updates count these
        self.optimizers: dict[str, torch.optim.Optimizer] = {}

    # ------------------------------------------------------------------ networks and optimizers
    @contextlib.contextmanager
    def seeded_init(self):
        """Build networks inside this block: with a ``seed``, their initial weights depend on it alone.

        ``fork_rng`` restores torch's global generator afterwards, so creating an agent does not shift
        the random stream of whatever runs next.
        """
        if self.seed is None:
            yield
            return
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            yield

    def networks(self) -> dict[str, nn.Module]:
        """Every network by role, e.g. ``{"actors/speaker_0": ..., "critic_targets/listener_0": ...}``."""
        return {f"{group}/{key}": net for group in self.network_groups for key, net in getattr(self, group).items()}

    def set_network(self, name: str, net: nn.Module) -> None:
        """Replace the network called ``name`` (as in :meth:`networks`)."""
        group, key = name.split("/", 1)
        getattr(self, group)[key] = net.to(self.device)
        net.train(self.training and group not in self.target_groups.values())
        self._target_pairs = None

    def mutation_groups(self) -> list[list[str]]:
        """Networks that must receive the same architecture mutation, trained network first.

        A trained network and its target network are twins: a mutation applied to one is replayed on
        the other so the soft update keeps matching shapes.
        """
        groups = []
        for group in self.optimizer_lrs:
            for key in getattr(self, group):
                twins = [f"{group}/{key}"]
                if group in self.target_groups:
                    twins.append(f"{self.target_groups[group]}/{key}")
                groups.append(twins)
        return groups

    def _make_optimizer(self, name: str) -> torch.optim.Optimizer:
        group = name.split("/", 1)[0]
        lr = getattr(self, self.optimizer_lrs[group])
        # fused: one kernel for all parameters of the network (many small tensors on a CPU)
        return torch.optim.Adam(self.networks()[name].parameters(), lr=lr, eps=self.adam_eps, fused=True)

    def build_optimizers(self, keep_state: bool = True) -> None:
        """(Re)build one Adam optimizer per trained network.

        Called after an architecture mutation replaced parameters. With ``keep_state``, Adam's moment
        estimates are kept for every parameter whose shape did not change (matched by position), so
        a mutation of one layer does not reset the optimizer of the whole network.
        """
        old = self.optimizers
        self.optimizers = {}
        for name in self.networks():
            if name.split("/", 1)[0] not in self.optimizer_lrs:
                continue  # target networks are not optimised, only soft-updated
            opt = self._make_optimizer(name)
            if keep_state and name in old:
                old_params = [p for g in old[name].param_groups for p in g["params"]]
                new_params = [p for g in opt.param_groups for p in g["params"]]
                for p_old, p_new in zip(old_params, new_params):
                    state = old[name].state.get(p_old)
                    if state and p_old.shape == p_new.shape:
                        opt.state[p_new] = {k: v.clone() if torch.is_tensor(v) else v for k, v in state.items()}
            self.optimizers[name] = opt
        self._target_pairs = None  # parameters changed: soft_update_targets rebuilds its lists

    def soft_update_targets(self, groups: Sequence[str] | None = None) -> None:
        """Polyak-average every target network towards its trained twin: ``t <- tau * s + (1 - tau) * t``.

        ``groups`` limits the update to these trained groups (default: all with a target). The flat
        parameter lists are cached until the next :meth:`build_optimizers` (architectures changed).
        """
        if getattr(self, "_target_pairs", None) is None:
            self._target_pairs = {}
            for group, target_group in self.target_groups.items():
                sources, targets = [], []
                for key, net in getattr(self, group).items():
                    sources += list(net.parameters())
                    targets += list(getattr(self, target_group)[key].parameters())
                self._target_pairs[group] = (targets, sources)
        with torch.no_grad():
            for group in groups or self.target_groups:
                targets, sources = self._target_pairs[group]
                # one fused call over all parameters instead of a Python loop of small kernels
                torch._foreach_lerp_(targets, sources, self.tau)

    # ------------------------------------------------------------------ hyperparameters
    def set_hyperparameter(self, name: str, value: Any) -> None:
        """Set a mutable hyperparameter; it takes effect at once (learning rates reach the optimizers)."""
        if name not in self.hp_names:
            raise ValueError(
                f"'{name}' is not a mutable hyperparameter of {self.algo}; expected one of {self.hp_names}"
            )
        setattr(self, name, value)
        for group, lr_name in self.optimizer_lrs.items():
            if lr_name == name:
                for opt_name, opt in self.optimizers.items():
                    if opt_name.startswith(group + "/"):
                        for param_group in opt.param_groups:
                            param_group["lr"] = float(value)

    def hyperparameters(self) -> dict[str, Any]:
        """Current values of the mutable hyperparameters (plain data)."""
        return {name: getattr(self, name) for name in self.hp_names}

    # ------------------------------------------------------------------ modes
    def set_training_mode(self, training: bool) -> None:
        """Training mode explores (noise / sampling); evaluation mode acts greedily."""
        self.training = bool(training)
        targets = set(self.target_groups.values())
        for name, net in self.networks().items():
            # Target networks are never trained: they stay in eval mode (greedy, no Gumbel sampling).
            net.train(self.training and name.split("/", 1)[0] not in targets)

    # ------------------------------------------------------------------ evaluation
    def test(self, env, max_steps: int | None = None, loop: int = 1, sum_scores: bool = True) -> float:
        """Evaluate the greedy policy and append the result to ``fitness``.

        Runs ``loop`` rounds; in each round every sub-env of ``env`` plays until its first episode ends
        (or ``max_steps`` vector steps pass). An episode's score is the sum of its rewards, summed over
        agents when ``sum_scores`` (the guide's convention for cooperative tasks) and otherwise averaged
        over agents. Returns the mean score over all those episodes.
        """
        was_training = self.training
        self.set_training_mode(False)
        round_scores = []
        with torch.no_grad():
            for _ in range(loop):
                obs, info = env.reset()
                num_envs = int(getattr(env, "num_envs", 1))
                scores = np.zeros((num_envs, len(self.agent_ids)))
                finished = np.zeros(num_envs, dtype=bool)
                step = 0
                while not finished.all() and (max_steps is None or step < max_steps):
                    action = self.get_action(obs, infos=info)[0]
                    obs, reward, termination, truncation, info = env.step(action)
                    rewards = np.stack(
                        [np.nan_to_num(np.asarray(reward[a], dtype=np.float64)) for a in self.agent_ids], -1
                    )
                    scores[~finished] += rewards.reshape(num_envs, -1)[~finished]
                    finished |= episode_dones(termination, truncation).reshape(num_envs)
                    step += 1
                per_env = scores.sum(-1) if sum_scores else scores.mean(-1)
                round_scores.append(per_env.mean())
        fitness = float(np.mean(round_scores))
        self.fitness.append(fitness)
        self.set_training_mode(was_training)
        return fitness

    # ------------------------------------------------------------------ cloning
    def clone(self, index: int | None = None) -> MultiAgentAlgorithm:
        """An independent copy (networks, optimizers, noise, bookkeeping).

        ``deepcopy`` copies networks and optimizers in one pass, so the clone's optimizers point at the
        clone's parameters. The clone gets its own random stream (drawn from this agent's) so clones of
        one parent explore differently, reproducibly.
        """
        twin = copy.deepcopy(self)
        # Reseed in place: objects that hold twin.rng (exploration noise) follow.
        twin.rng.bit_generator.state = np.random.default_rng(self.rng.integers(2**63)).bit_generator.state
        if index is not None:
            twin.index = int(index)
        return twin

    # ------------------------------------------------------------------ checkpoints
    def init_kwargs(self) -> dict[str, Any]:
        """Constructor arguments other than the spaces, as plain data (overridden by subclasses)."""
        return {"agent_ids": self.agent_ids, "index": self.index, "seed": self.seed}

    def extra_state(self) -> dict[str, Any]:
        """Algorithm-specific state for checkpoints, e.g. exploration noise (plain data and tensors)."""
        return {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        """Inverse of :meth:`extra_state`."""

    def checkpoint_dict(self) -> dict[str, Any]:
        """Everything needed to restore this agent, as tensors and plain Python data."""
        return {
            "format": CHECKPOINT_FORMAT,
            "algo": self.algo,
            "init": self.init_kwargs(),
            "observation_spaces": [space_to_config(self.observation_spaces[a]) for a in self.agent_ids],
            "action_spaces": [space_to_config(self.action_spaces[a]) for a in self.agent_ids],
            "hyperparameters": self.hyperparameters(),
            "networks": {name: net.checkpoint() for name, net in self.networks().items()},
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "bookkeeping": {
                "index": self.index,
                "steps": list(self.steps),
                "scores": [float(s) for s in self.scores],
                "fitness": [float(f) for f in self.fitness],
                "mut": self.mut,
                "lineage": [list(x) for x in self.lineage],
                "learn_counter": self.learn_counter,
            },
            "rng": self.rng.bit_generator.state,
            "extra": self.extra_state(),
        }

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        """Write a checkpoint that loads with ``torch.load(path, weights_only=True)``."""
        torch.save(self.checkpoint_dict(), path)

    def load_checkpoint(self, path: str | os.PathLike | Mapping) -> None:
        """Restore this agent in place from a checkpoint file (or an already loaded checkpoint dict)."""
        ckpt = read_checkpoint(path) if not isinstance(path, Mapping) else path
        if ckpt["algo"] != self.algo:
            raise ValueError(f"checkpoint holds a {ckpt['algo']} agent, cannot load it into {self.algo}")
        names = set(self.networks())
        if set(ckpt["networks"]) != names:
            raise ValueError(
                f"checkpoint networks {sorted(ckpt['networks'])} do not match this {self.algo} agent's {sorted(names)}"
            )
        # Architectures may have been mutated since construction: rebuild each network from its config.
        for name, entry in ckpt["networks"].items():
            self.set_network(name, network_from_checkpoint(entry))
        for name, value in ckpt["hyperparameters"].items():
            setattr(self, name, value)
        self.build_optimizers(keep_state=False)
        for name, state in ckpt["optimizers"].items():
            self.optimizers[name].load_state_dict(state)
        book = ckpt["bookkeeping"]
        self.index, self.steps, self.scores = book["index"], list(book["steps"]), list(book["scores"])
        self.fitness, self.mut = list(book["fitness"]), book["mut"]
        self.lineage = [tuple(x) for x in book["lineage"]]
        self.learn_counter = book["learn_counter"]
        self.rng.bit_generator.state = ckpt["rng"]
        self.load_extra_state(ckpt["extra"])
        self.set_training_mode(self.training)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> MultiAgentAlgorithm:
        """Build an agent from a checkpoint file written by :meth:`save_checkpoint`."""
        ckpt = read_checkpoint(path)
        if cls.algo and ckpt["algo"] != cls.algo:
            raise ValueError(f"{path} holds a {ckpt['algo']} checkpoint, not {cls.algo}; use {ckpt['algo']}.load")
        obs_spaces = [space_from_config(d) for d in ckpt["observation_spaces"]]
        act_spaces = [space_from_config(d) for d in ckpt["action_spaces"]]
        agent = cls(obs_spaces, act_spaces, device=device, **ckpt["init"])
        agent.load_checkpoint(ckpt)
        return agent


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a marlkit checkpoint safely (``weights_only=True``) and check that it is one."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise ValueError(f"{path} is not a readable marlkit checkpoint (truncated or corrupt file?): {err}") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT or "algo" not in ckpt:
        raise ValueError(f"{path} is not a marlkit agent checkpoint (format {CHECKPOINT_FORMAT})")
    return ckpt
