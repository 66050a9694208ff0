"""``create_population``: build the population that evolutionary HPO trains.

The guide passes hyperparameters as an upper-case ``INIT_HP`` dict. This module is the one place that maps
those keys onto each algorithm's constructor arguments, so a typo (``"LR_ACTR"``) is caught here with a
clear message instead of being silently ignored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

# INIT_HP key -> constructor argument, per algorithm.
_OFF_POLICY_KEYS = {
    "BATCH_SIZE": "batch_size",
    "O_U_NOISE": "O_U_noise",
    "EXPL_NOISE": "expl_noise",
    "MEAN_NOISE": "mean_noise",
    "THETA": "theta",
    "DT": "dt",
    "LR_ACTOR": "lr_actor",
    "LR_CRITIC": "lr_critic",
    "GAMMA": "gamma",
    "LEARN_STEP": "learn_step",
    "TAU": "tau",
}
INIT_HP_KEYS: dict[str, dict[str, str]] = {
    "MADDPG": dict(_OFF_POLICY_KEYS),
    "MATD3": {
        **_OFF_POLICY_KEYS,
        "POLICY_FREQ": "policy_freq",
        "POLICY_NOISE": "policy_noise",
        "NOISE_CLIP": "noise_clip",
    },
    "IPPO": {
        "BATCH_SIZE": "batch_size",
        "LR": "lr",
        "LEARN_STEP": "learn_step",
        "GAMMA": "gamma",
        "GAE_LAMBDA": "gae_lambda",
        "ACTION_STD_INIT": "action_std_init",
        "CLIP_COEF": "clip_coef",
        "ENT_COEF": "ent_coef",
        "VF_COEF": "vf_coef",
        "MAX_GRAD_NORM": "max_grad_norm",
        "TARGET_KL": "target_kl",
        "UPDATE_EPOCHS": "update_epochs",
        "CLIP_VLOSS": "clip_vloss",
    },
}
# Keys read by the training functions or by other algorithms: accepted, not passed to the constructor.
# (The guide's MADDPG example carries POLICY_FREQ, which only MATD3 uses.)
TRAINING_KEYS = {"MEMORY_SIZE", "POP_SIZE", "AGENT_IDS", "CHANNELS_LAST", "SUM_SCORES", "ALGO", "NUM_ENVS"}
_KNOWN_KEYS = TRAINING_KEYS.union(*[set(m) for m in INIT_HP_KEYS.values()])


def algorithm_class(algo: str):
    """The class implementing ``algo`` ("MADDPG", "MATD3" or "IPPO")."""
    from marlkit.algorithms.ippo import IPPO
    from marlkit.algorithms.maddpg import MADDPG
    from marlkit.algorithms.matd3 import MATD3

    classes = {"MADDPG": MADDPG, "MATD3": MATD3, "IPPO": IPPO}
    if algo not in classes:
        raise ValueError(f"unknown algorithm {algo!r}; expected one of {sorted(classes)}")
    return classes[algo]


def init_hp_to_kwargs(algo: str, INIT_HP: Mapping[str, Any]) -> dict[str, Any]:
    """Translate the guide's upper-case ``INIT_HP`` into constructor keyword arguments for ``algo``."""
    if algo not in INIT_HP_KEYS:
        raise ValueError(f"unknown algorithm {algo!r}; expected one of {sorted(INIT_HP_KEYS)}")
    unknown = sorted(k for k in INIT_HP if k not in _KNOWN_KEYS)
    if unknown:
        raise ValueError(
            f"unknown INIT_HP key(s) {unknown}; {algo} understands {sorted(INIT_HP_KEYS[algo])} "
            f"and the training functions read {sorted(TRAINING_KEYS)}"
        )
    mapping = INIT_HP_KEYS[algo]
    return {mapping[k]: v for k, v in INIT_HP.items() if k in mapping}


def create_population(
    algo: str,
    observation_spaces: Sequence[spaces.Space],
    action_spaces: Sequence[spaces.Space],
    net_config: Mapping[str, Any] | None,
    INIT_HP: Mapping[str, Any],
    hp_config=None,
    population_size: int = 1,
    num_envs: int = 1,
    device: str | torch.device = "cpu",
    agent_ids: Sequence[str] | None = None,
    seed: int | None = None,
    **algo_kwargs: Any,
) -> list:
    """Create ``population_size`` agents of ``algo`` with the hyperparameters of ``INIT_HP``.

    Args:
        algo: "MADDPG", "MATD3" or "IPPO".
        observation_spaces, action_spaces: one space per agent, in ``agent_ids`` order.
        net_config: the guide's ``net_config`` (single-level, per agent or per group).
        INIT_HP: upper-case hyperparameters as in the guide; ``INIT_HP["AGENT_IDS"]`` names the agents
            unless ``agent_ids`` is given.
        hp_config: a :class:`HyperparameterConfig` of the hyperparameters evolution may mutate.
        population_size: number of agents.
        num_envs: number of vectorised sub-envs; off-policy agents keep one exploration-noise state each.
        device: torch device of the networks.
        seed: base seed; member ``i`` is seeded with ``seed + i`` (None: not seeded).
        **algo_kwargs: further constructor arguments passed unchanged.

    Returns:
        a list of agents with ``index`` 0 .. population_size - 1.
    """
    cls = algorithm_class(algo)
    kwargs = init_hp_to_kwargs(algo, INIT_HP)
    if agent_ids is None:
        if "AGENT_IDS" not in INIT_HP:
            raise ValueError("pass agent_ids or set INIT_HP['AGENT_IDS'] (the guide sets it to env.agents)")
        agent_ids = INIT_HP["AGENT_IDS"]
    if algo in ("MADDPG", "MATD3"):
        kwargs["vect_noise_dim"] = int(num_envs)
    kwargs.update(algo_kwargs)
    if int(population_size) < 1:
        raise ValueError(f"population_size must be at least 1, got {population_size}")
    seeds = [None] * population_size if seed is None else [int(seed) + i for i in range(population_size)]
    pop = []
    for i in range(int(population_size)):
        agent = cls(
            observation_spaces=list(observation_spaces),
            action_spaces=list(action_spaces),
            agent_ids=list(agent_ids),
            index=i,
            net_config=None if net_config is None else dict(net_config),
            device=device,
            seed=seeds[i],
            **kwargs,
        )
        if hp_config is not None:
            hp_config.check(agent)
            agent.hp_config = hp_config
        pop.append(agent)
    return pop


def population_seed_sequence(seed: int | None, n: int) -> list[int]:
    """``n`` independent integer seeds derived from one seed (for env resets and the like)."""
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(n)]
