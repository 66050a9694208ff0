"""Reference solutions of the exercises in ``marlkit.exercises``: each one passes its check.

Read them after trying the exercise; each names the library code it mirrors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from marlkit.networks.config import NETWORK_KEYS, group_id


def soft_update(target_params: Sequence[torch.Tensor], source_params: Sequence[torch.Tensor], tau: float) -> None:
    """Polyak averaging in place: ``t <- tau * s + (1 - tau) * t`` for every pair.

    Mirrors ``MultiAgentAlgorithm.soft_update_targets`` (which does the same with ``torch._foreach_lerp_``).
    """
    with torch.no_grad():  # the update is not part of any loss: keep it out of autograd
        for target, source in zip(target_params, source_params):
            target.mul_(1.0 - tau).add_(source, alpha=tau)


def critic_target(reward: torch.Tensor, done: torch.Tensor, next_q: torch.Tensor, gamma: float) -> torch.Tensor:
    """``y = r + gamma * (1 - done) * Q'(o', a')``, a fixed label: no gradient flows through it.

    Mirrors step (2) of ``MADDPG.learn``.
    """
    with torch.no_grad():
        return reward + gamma * (1.0 - done) * next_q


def td3_target(
    reward: torch.Tensor, done: torch.Tensor, next_q1: torch.Tensor, next_q2: torch.Tensor, gamma: float
) -> torch.Tensor:
    """``y = r + gamma * (1 - done) * min(Q'_1, Q'_2)``, the minimum taken row by row; no gradient flows through y.

    Mirrors ``MATD3._target_q`` (clipped double-Q) inside step (2) of ``MADDPG.learn``.
    """
    with torch.no_grad():
        # the smaller of two independently trained critics counters the over-estimate a max-seeking actor exploits
        return reward + gamma * (1.0 - done) * torch.min(next_q1, next_q2)


def gae(
    rewards: np.ndarray,
    values: np.ndarray,
    next_values: np.ndarray,
    terminations: np.ndarray,
    truncations: np.ndarray,
    gamma: float,
    lam: float,
) -> np.ndarray:
    """GAE(lambda) advantages, same shape as ``rewards`` ((T,) or (T, num_envs)).

    The same formula as ``compute_gae`` in ``marlkit.algorithms.rollout``.
    """
    # TD errors: only a termination removes the bootstrap; a truncated episode still has a future
    deltas = rewards + gamma * (1.0 - terminations) * next_values - values
    # any episode end (termination or truncation) cuts the recursion: the next row is a new episode
    not_done = 1.0 - np.maximum(terminations, truncations)
    advantages = np.zeros_like(deltas, dtype=np.float64)
    next_advantage = np.zeros_like(deltas[0], dtype=np.float64)
    for t in reversed(range(len(deltas))):
        next_advantage = deltas[t] + gamma * lam * not_done[t] * next_advantage
        advantages[t] = next_advantage
    return advantages


def _score(fitness: float) -> float:
    """A diverged agent (NaN fitness) loses every comparison, as in ``TournamentSelection.agent_score``."""
    return -math.inf if math.isnan(fitness) else fitness


def tournament_winner(fitnesses: Sequence[float], contestants: Sequence[int]) -> int:
    """The population index of the fittest contestant; ties go to the contestant drawn first.

    Mirrors ``TournamentSelection._tournament``.
    """
    best = contestants[0]
    for index in contestants[1:]:
        if _score(fitnesses[index]) > _score(fitnesses[best]):  # strict: an equal score does not win
            best = index
    return int(best)


def select_parents(fitnesses: Sequence[float], draws: Sequence[Sequence[int]], elitism: bool) -> list[int]:
    """Parents of the next population (same size as ``fitnesses``): the elite first, then winners.

    Mirrors ``TournamentSelection.select``, with the random contestant draws given as ``draws``.
    """
    parents = []
    if elitism:
        parents.append(tournament_winner(fitnesses, list(range(len(fitnesses)))))
    for contestants in draws:
        if len(parents) == len(fitnesses):
            break  # the elite took one slot, so the last draw is not needed
        parents.append(tournament_winner(fitnesses, contestants))
    return parents


def my_group_agents(agent_ids: Sequence[str]) -> dict[str, list[str]]:
    """``{group_id: [agent ids]}``, groups and their agents in first-seen order.

    Mirrors ``group_agents`` in ``marlkit.networks.config``.
    """
    groups: dict[str, list[str]] = {}
    for agent in agent_ids:
        # dicts keep insertion order: a group's key goes in when its first agent is seen
        groups.setdefault(group_id(agent), []).append(agent)
    return groups


def resolve_for_agent(net_config: dict, agent_id: str) -> dict:
    """The net_config entry an agent uses: single-level, else its own entry, else its group's, else {}.

    Mirrors ``entry_for`` in ``marlkit.networks.config.resolve_net_config``.
    """
    if any(key in NETWORK_KEYS for key in net_config):
        return net_config  # single-level: one config for every agent
    # group_id strips a trailing "_<int>" only: "blue_team_1" -> "blue_team", "adversary" -> "adversary"
    return net_config.get(agent_id, net_config.get(group_id(agent_id), {}))


def all_members_reached(fitness_histories: Sequence[Sequence[float]], target: float | None, window: int = 3) -> bool:
    """True when every member's mean of its last ``window`` evaluations is >= target; never when target is None.

    Mirrors ``target_reached`` in ``marlkit.training.evolution`` (a member given as its fitness list).
    """
    if target is None:
        return False  # no target: the run always takes its full number of steps
    # a member that was never evaluated has no mean yet, so the population cannot have reached the target
    return all(len(history) > 0 and float(np.mean(history[-window:])) >= target for history in fitness_histories)


def observation_nbytes(memory_size: int, num_agents: int, obs_shape: Sequence[int], dtype: np.dtype | type) -> int:
    """``2 * num_agents * memory_size * prod(obs_shape) * itemsize``: state and next_state, every agent.

    Mirrors ``MultiAgentReplayBuffer.nbytes`` for a buffer of the fields ``["state", "next_state"]``: it
    reserves one (memory_size, *obs_shape) array of the observations' dtype per field and agent.
    """
    one_observation = math.prod(obs_shape) * np.dtype(dtype).itemsize
    return 2 * num_agents * memory_size * one_observation
