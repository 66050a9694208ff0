"""On-policy rollout storage and GAE(lambda), the data half of IPPO.

A rollout is what one policy collected since its last update. IPPO keeps one ``RolloutBuffer`` per
*group* of agents (agents that share an actor and a critic); the buffer holds, per member agent and per
vector step, one ``Transition`` of ``num_envs`` rows. When learning, the buffer stacks them into a
``RolloutBatch`` of ``(T, C)`` tensors, where ``T`` is the number of vector steps and column
``c = member * num_envs + env`` is one (agent, sub-env) pair. Each column is one agent's stream of
decisions in one sub-env, in order; a row that is not one of that agent's decisions is *inactive* and
GAE steps over it.

Why store ``V(s')`` rather than rely on ``V(s_{t+1})`` of the next row: with a vector env's same-step
autoreset, the next row of a column can belong to a new episode, and an episode cut by a time limit must
bootstrap from its *final* observation, not from the reset observation that replaced it. Storing the true
next observation of every transition makes the TD error of each row self-contained::

    delta_t = r_t + gamma * (1 - terminated_t) * V(s'_t) - V(s_t)
    A_t     = delta_t + gamma * lambda * (1 - done_t) * A_next        done = terminated | truncated

``A_next`` is the advantage of the column's next *active* row; it is 0 after the last one, where
``delta_t`` has already bootstrapped from ``V(s'_t)``. So episodes never leak into each other across
autoresets, and a rollout that ends mid-episode needs no special case.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch


@dataclass
class Transition:
    """One agent's results of one vector step, ``E = num_envs`` rows (numpy arrays).

    ==============  ==================  ===========================================================
    obs             (E, *obs_shape)     the observation the agent acted on (env dtype)
    action          (E, *act_shape)     the *sampled* action, before clipping to a Box's bounds
                                        (what ``log_prob`` refers to); Discrete: index without ``start``
    log_prob        (E,) float32        log pi_old(action | obs)
    value           (E,) float32        V_old(obs)
    reward          (E,) float32        reward until the agent's next decision (0 in inactive rows)
    terminated      (E,) bool           the agent's episode ended for good: no bootstrap
    truncated       (E,) bool           the episode was cut (time limit, autoreset): bootstrap
    next_obs        (E, *obs_shape)     the true next observation (the final one after an autoreset)
    next_valid      (E,) bool           ``next_obs`` row is a real observation (else V(s') = 0)
    active          (E,) bool           this row is one of the agent's decisions
    action_mask     (E, n) bool | None  the mask the action was sampled under (Discrete/MultiDiscrete)
    ==============  ==================  ===========================================================
    """

    obs: np.ndarray
    action: np.ndarray
    log_prob: np.ndarray
    value: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    next_obs: np.ndarray
    next_valid: np.ndarray
    active: np.ndarray
    action_mask: np.ndarray | None = None


@dataclass
class RolloutBatch:
    """A group's rollout as ``(T, C, ...)`` tensors: the fields of ``Transition``, stacked over time and
    concatenated over member agents (column ``member * num_envs + env``). ``action_mask`` is None when no
    step of the rollout had one."""

    obs: torch.Tensor
    action: torch.Tensor
    log_prob: torch.Tensor
    value: torch.Tensor
    reward: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    next_obs: torch.Tensor
    next_valid: torch.Tensor
    active: torch.Tensor
    action_mask: torch.Tensor | None


FIELDS = tuple(f.name for f in fields(Transition))


class RolloutBuffer:
    """One group's rollout: a list of ``Transition`` per member agent, one entry per vector step.

    Appending stores references (no copies in the step loop); :meth:`stack` copies everything once, when
    the rollout is used. A member that is absent from a whole step gets an all-inactive placeholder there,
    so every member has one entry per step and the columns line up in time.
    """

    def __init__(self, agents: Sequence[str]) -> None:
        self.agents = list(agents)
        self.steps: dict[str, list[Transition | None]] = {agent: [] for agent in self.agents}

    def __len__(self) -> int:
        """Number of vector steps stored."""
        return len(self.steps[self.agents[0]])

    def add(self, transitions: dict[str, Transition]) -> None:
        """Store one vector step: ``{agent: Transition}`` for the members present (others get None)."""
        for agent in self.agents:
            self.steps[agent].append(transitions.get(agent))

    def clear(self) -> None:
        for agent in self.agents:
            self.steps[agent].clear()

    def stack(self, device: torch.device | str = "cpu") -> RolloutBatch | None:
        """All stored steps as one ``RolloutBatch`` (None if no member has any transition)."""
        per_member = [self._stack_member(agent) for agent in self.agents]
        per_member = [m for m in per_member if m is not None]
        if not per_member:
            return None
        if any(m["action_mask"] is not None for m in per_member):
            for m in per_member:  # members without masks allow every action
                if m["action_mask"] is None:
                    width = next(x["action_mask"].shape[-1] for x in per_member if x["action_mask"] is not None)
                    m["action_mask"] = np.ones((*m["active"].shape, width), dtype=bool)
        out = {}
        for name in FIELDS:
            if per_member[0][name] is None:
                out[name] = None
                continue
            arrays = [m[name] for m in per_member]
            array = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=1)  # (T, C, ...)
            out[name] = torch.as_tensor(array, device=device)
        return RolloutBatch(**out)

    def _stack_member(self, agent: str) -> dict[str, np.ndarray | None] | None:
        steps = self.steps[agent]
        template = next((t for t in steps if t is not None), None)
        if template is None:
            return None
        if any(t is None for t in steps):
            blank = inactive_like(template)
            steps = [blank if t is None else t for t in steps]
        has_mask = [t.action_mask is not None for t in steps]
        stacked: dict[str, np.ndarray | None] = {}
        for name in FIELDS:
            if name == "action_mask":
                if not any(has_mask):
                    stacked[name] = None
                    continue
                width = next(t.action_mask.shape[-1] for t in steps if t.action_mask is not None)
                stacked[name] = np.stack([
                    t.action_mask if t.action_mask is not None else np.ones((len(t.active), width), dtype=bool)
                    for t in steps
                ]).astype(bool, copy=False)
            else:
                stacked[name] = np.stack([getattr(t, name) for t in steps])
        # NaN placeholders of absent agents must not reach a network, even in rows that are masked out
        # afterwards (0 * NaN is NaN); integer and uint8 observations use 0 placeholders already.
        for name in ("obs", "next_obs", "action", "log_prob", "value", "reward"):
            if stacked[name].dtype.kind == "f":
                stacked[name] = np.nan_to_num(stacked[name], copy=False)
        return stacked


@dataclass
class StepOutcome:
    """What one ``env.step`` says about one agent's open decision, ``E`` rows each (see ``step_outcome``)."""

    reported: np.ndarray  # (E,) bool: the env answered for the agent (its termination is not NaN)
    terminated: np.ndarray  # (E,) bool
    truncated: np.ndarray  # (E,) bool, including sub-envs that autoreset without terminating the agent
    next_obs: np.ndarray  # (E, *obs_shape): the final observation where a sub-env autoreset
    next_valid: np.ndarray  # (E,) bool: next_obs is a real observation of the agent


def step_outcome(
    agent: str,
    obs: np.ndarray,
    termination: Mapping[str, np.ndarray],
    truncation: Mapping[str, np.ndarray],
    next_obs: Mapping[str, np.ndarray],
    info: Mapping[str, Mapping],
) -> StepOutcome:
    """Read ``agent``'s done flags and true next observation from a vector env's ``step`` results.

    After a same-step autoreset the returned observation row already belongs to the next episode; the
    finished episode's last one is ``info[agent]["final_observation"]`` (rows where
    ``info[agent]["_final_observation"]``), and the reset rows are ``info[agent]["_final_info"]``. An agent
    whose sub-env reset without terminating it was cut off: truncated, bootstrapped from that final
    observation (or from 0 when the env gave none). ``obs`` (E, *obs_shape) only gives the shapes.
    """
    rows = len(obs)
    missing = np.full(rows, np.nan, np.float32)
    term = np.asarray(termination.get(agent, missing), dtype=np.float32)
    trunc = np.asarray(truncation.get(agent, missing), dtype=np.float32)
    terminated, truncated = np.nan_to_num(term) > 0, np.nan_to_num(trunc) > 0
    agent_info = info.get(agent) or {}
    present = agent in next_obs
    next_o = np.asarray(next_obs[agent]) if present else np.zeros_like(obs)
    next_valid = np.asarray(agent_info.get("active", np.full(rows, present)), dtype=bool)
    ended = agent_info.get("_final_info")
    if ended is not None and np.any(ended):
        ended = np.asarray(ended, dtype=bool)
        truncated = truncated | (ended & ~terminated)
        has_final = np.asarray(agent_info.get("_final_observation", np.zeros_like(ended)), dtype=bool)
        if has_final.any():
            row_mask = has_final.reshape(-1, *[1] * (next_o.ndim - 1))
            next_o = np.where(row_mask, agent_info["final_observation"], next_o)
        next_valid = np.where(ended, has_final, next_valid)
    return StepOutcome(~np.isnan(term), terminated, truncated, next_o, next_valid)


def inactive_like(template: Transition) -> Transition:
    """An all-inactive step shaped like ``template`` (for a member absent from a whole step)."""
    zeros = {name: np.zeros_like(getattr(template, name)) for name in FIELDS if name != "action_mask"}
    mask = None if template.action_mask is None else np.ones_like(template.action_mask)
    return Transition(**zeros, action_mask=mask)


def compute_gae(
    reward: torch.Tensor,
    value: torch.Tensor,
    next_value: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    active: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> torch.Tensor:
    """GAE(lambda) advantages ``(T, C)`` of a rollout; all inputs are ``(T, C)`` tensors.

    ``next_value`` is V of each row's true next observation (0 where there is none); rows where
    ``active`` is False are skipped: they neither get an advantage (0) nor pass one on.
    """
    not_terminated = 1.0 - terminated.float()
    not_done = 1.0 - (terminated | truncated).float()
    # TD error of every row at once: the one place where terminal states stop the bootstrap.
    delta = reward + gamma * not_terminated * next_value - value
    delta = torch.where(active, delta, torch.zeros_like(delta))
    advantages = torch.zeros_like(delta)
    next_advantage = torch.zeros_like(delta[0])  # A of each column's next active row
    for t in reversed(range(delta.shape[0])):
        # The GAE recursion. (1 - done) cuts it at episode ends, so no advantage crosses an autoreset.
        advantage = delta[t] + gamma * gae_lambda * not_done[t] * next_advantage
        advantages[t] = torch.where(active[t], advantage, torch.zeros_like(advantage))
        next_advantage = torch.where(active[t], advantage, next_advantage)  # inactive rows pass it through
    return advantages
