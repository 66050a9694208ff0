"""AsyncAgentsWrapper: IPPO for environments whose agents act at different times.

Turn-based games, or agents acting at different frequencies, follow the guide's convention: the env
returns observations only for the agents that act next. Through a vector env that means an agent's row is
*inactive* (``infos[agent]["active"]`` False, a placeholder observation) whenever it waits. Two things then
differ from the synchronous case:

* **Acting.** Only the active rows are passed to the agent; the outputs are scattered back into
  ``num_envs`` rows, with placeholders where the agent waits (NaN for floats, 0 for integers).
* **Transitions.** An agent's transition runs from one of *its* decisions to its next one, however many
  env steps that takes. Rewards that arrive while it waits are added to its last decision's reward, and
  its next observation is the one of its next decision (or the final one, when the episode ends first).
  Discounting is therefore per decision of the agent: a slow agent's return is
  ``r_1 + gamma * r_2 + ...`` over its own decisions, matching ``AsyncAgentsEnv.expected()``.

Pseudocode of :meth:`AsyncAgentsWrapper.store_transition`, per agent and sub-env::

    if the agent acted:                    open a pending transition (obs, action, log_prob, value, mask)
    pending.reward += reward               (also while it waits)
    if the agent acts next, or its episode ended:
        close it with next_obs = its next (or final) observation, and hand it to IPPO

Everything else (``learn``, ``clone``, ``test``, checkpoints, hyperparameters, bookkeeping) is the wrapped
agent's: attribute reads and writes pass through to it, so population tools treat the wrapper like the
agent. ``clone()`` returns a *wrapper* around the agent's clone, so tournament selection keeps wrapping.
Checkpoints are the wrapped agent's own (``IPPO.load`` gives back the bare agent; wrap it again).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from marlkit.algorithms.base import MultiAgentAlgorithm
from marlkit.algorithms.ippo import IPPO, PolicyStep
from marlkit.algorithms.rollout import Transition, step_outcome

_OWN_ATTRIBUTES = ("agent", "_pending", "_last_step", "_last_next_obs")


class _Pending:
    """One agent's open transitions, one row per sub-env (numpy arrays of ``num_envs`` rows)."""

    def __init__(self, obs: np.ndarray, raw_action: np.ndarray, mask: np.ndarray | None) -> None:
        n = len(obs)
        self.open = np.zeros(n, dtype=bool)
        self.obs = np.zeros_like(obs)
        self.action = np.zeros_like(raw_action)
        self.log_prob = np.zeros(n, dtype=np.float32)
        self.value = np.zeros(n, dtype=np.float32)
        self.reward = np.zeros(n, dtype=np.float64)  # float64: many small rewards may add up
        self.action_mask = None if mask is None else np.ones_like(mask)


class AsyncAgentsWrapper:
    """Wrap an IPPO agent so it trains on envs whose agents act at different times.

    Use it wherever the agent is used: ``pop = [AsyncAgentsWrapper(agent) for agent in pop]``, then
    ``train_multi_agent_on_policy(env, ..., pop=pop)`` or the guide's custom loop.
    """

    def __init__(self, agent: IPPO) -> None:
        if not isinstance(agent, IPPO):
            raise TypeError(f"AsyncAgentsWrapper wraps IPPO agents, got {type(agent).__name__}")
        object.__setattr__(self, "agent", agent)
        object.__setattr__(self, "_pending", {})  # agent id -> _Pending
        object.__setattr__(self, "_last_step", None)  # what the last training-mode get_action did
        object.__setattr__(self, "_last_next_obs", None)  # to notice env resets between store calls

    # ------------------------------------------------------------------ delegation
    def __getattr__(self, name: str) -> Any:
        # Only called for names the wrapper itself lacks. Guard the wrapper's own slots so that
        # half-built instances (copy, pickle) fail normally instead of recursing.
        if name in _OWN_ATTRIBUTES or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.agent, name)

    def __setattr__(self, name: str, value: Any) -> None:
        # ``child.lineage = ...`` (tournament), ``agent.mut = ...`` (mutation) must reach the agent.
        if name in _OWN_ATTRIBUTES:
            object.__setattr__(self, name, value)
        else:
            setattr(self.agent, name, value)

    def __repr__(self) -> str:
        agent = self.agent
        return f"AsyncAgentsWrapper({type(agent).__name__}(index={agent.index}, agents={agent.agent_ids}))"

    def clone(self, index: int | None = None) -> AsyncAgentsWrapper:
        """A wrapper around ``agent.clone(index)``: selection must hand back agents that still wrap."""
        return AsyncAgentsWrapper(self.agent.clone(index))

    def test(self, env: Any, max_steps: int | None = None, loop: int = 1, sum_scores: bool = True) -> float:
        """The shared evaluation of ``MultiAgentAlgorithm.test``, acting through this wrapper."""
        return MultiAgentAlgorithm.test(self, env, max_steps=max_steps, loop=loop, sum_scores=sum_scores)

    # ------------------------------------------------------------------ acting
    def get_action(
        self, obs: Mapping[str, np.ndarray], infos: Mapping[str, Mapping] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
        """``IPPO.get_action`` for a vector env where agents wait: only active rows reach the policy.

        ``obs[agent]`` (num_envs, *obs_shape), ``infos[agent]["active"]`` (num_envs,) bool. Returns
        ``(action, log_prob, entropy, value)`` with ``num_envs`` rows per agent; rows where the agent waits
        hold placeholders (action NaN for floats / 0 for ints, the rest NaN).
        """
        if self.agent.is_unbatched(obs):
            raise ValueError(
                "AsyncAgentsWrapper needs the vector-env layout (a leading num_envs axis and infos[agent]['active']); "
                "run a single env as SyncPettingZooVecEnv([env_fn])"
            )
        infos = infos or {}
        rows = {}
        for agent, x in obs.items():
            info = infos.get(agent) or {}
            rows[agent] = np.asarray(info["active"], dtype=bool) if "active" in info else np.ones(len(x), dtype=bool)
        acting = [a for a in obs if rows[a].any()]
        sub_obs = {a: np.asarray(obs[a])[rows[a]] for a in acting}
        sub_infos = {
            a: {"action_mask": np.asarray(infos[a]["action_mask"])[rows[a]]}
            for a in acting
            if "action_mask" in (infos.get(a) or {})
        }
        sub = self.agent.act(sub_obs, sub_infos)
        full = PolicyStep()
        for agent, active in rows.items():
            n = len(active)
            full.active[agent] = active
            if agent not in sub.action:  # the agent waits in every sub-env
                space = self.agent.action_spaces[agent]
                placeholder = np.full((n, *space.shape), np.nan if _is_float(space.dtype) else 0, dtype=space.dtype)
                full.action[agent] = full.raw_action[agent] = placeholder
                full.log_prob[agent] = full.entropy[agent] = full.value[agent] = np.full(n, np.nan, np.float32)
                full.action_mask[agent] = None
                continue
            for key in ("action", "raw_action", "log_prob", "entropy", "value"):
                getattr(full, key)[agent] = _scatter(getattr(sub, key)[agent], active)
            mask = sub.action_mask[agent]
            full.action_mask[agent] = None if mask is None else _scatter(mask, active, fill=True)
        self._last_step = full if self.agent.training else None
        return full.action, full.log_prob, full.entropy, full.value

    # ------------------------------------------------------------------ assembling transitions
    def store_transition(
        self,
        obs: Mapping[str, np.ndarray],
        action: Mapping[str, np.ndarray],
        log_prob: Mapping[str, np.ndarray],
        reward: Mapping[str, np.ndarray],
        termination: Mapping[str, np.ndarray],
        truncation: Mapping[str, np.ndarray],
        value: Mapping[str, np.ndarray],
        next_obs: Mapping[str, np.ndarray],
        info: Mapping[str, Mapping] | None = None,
    ) -> None:
        """Collect one vector step; hand every transition that closes at this step to the agent.

        Same arguments as ``IPPO.store_transition`` (vector-env layout). Call it after every
        ``get_action``/``env.step`` pair in training mode.
        """
        info = info or {}
        last, self._last_step = self._last_step, None
        if not self._continues(obs):
            self._pending.clear()  # the env was reset: open transitions belong to abandoned episodes
        self._last_next_obs = next_obs
        closed: dict[str, Transition] = {}
        for agent in self.agent.agent_ids:
            if agent not in obs or agent not in log_prob:
                continue
            agent_obs, agent_log_prob = np.asarray(obs[agent]), np.asarray(log_prob[agent], dtype=np.float32)
            out = step_outcome(agent, agent_obs, termination, truncation, next_obs, info)
            acted = np.isfinite(agent_log_prob) & out.reported  # as in IPPO.store_transition
            raw = last.raw_action[agent] if last is not None and agent in last.raw_action else np.asarray(action[agent])
            mask = last.action_mask.get(agent) if last is not None else None
            pending = self._pending.get(agent)
            if pending is None:
                pending = self._pending[agent] = _Pending(agent_obs, raw, mask)

            # 1. every row where the agent acted opens a transition
            if acted.any():
                pending.open[acted] = True
                pending.obs[acted] = agent_obs[acted]
                pending.action[acted] = raw[acted]
                pending.log_prob[acted] = agent_log_prob[acted]
                pending.value[acted] = np.asarray(value[agent], dtype=np.float32)[acted]
                pending.reward[acted] = 0.0
                if mask is not None:
                    if pending.action_mask is None:
                        pending.action_mask = np.ones_like(mask)
                    pending.action_mask[acted] = mask[acted]

            # 2. rewards that arrive now belong to the agent's open decision, even while it waits
            pending.reward += np.where(pending.open, np.nan_to_num(np.asarray(reward.get(agent, 0.0), np.float64)), 0.0)

            # 3. a transition closes at the agent's next decision or when its episode ends
            done = out.terminated | out.truncated
            closing = pending.open & (done | out.next_valid)
            if not closing.any():
                continue
            closed[agent] = Transition(
                obs=pending.obs.copy(), action=pending.action.copy(), log_prob=pending.log_prob.copy(),
                value=pending.value.copy(), reward=pending.reward.astype(np.float32),
                terminated=out.terminated & closing, truncated=out.truncated & closing, next_obs=out.next_obs,
                next_valid=out.next_valid & closing, active=closing,
                action_mask=None if pending.action_mask is None else pending.action_mask.copy(),
            )
            pending.open[closing] = False
            pending.reward[closing] = 0.0
        self.agent.add_transitions(closed)

    def _continues(self, obs: Mapping[str, np.ndarray]) -> bool:
        """Whether ``obs`` is the ``next_obs`` of the previous store call (no env reset in between)."""
        last = self._last_next_obs
        if last is None or obs is last:
            return True
        return obs.keys() == last.keys() and all(
            np.array_equal(np.asarray(obs[a]), np.asarray(last[a]), equal_nan=np.asarray(obs[a]).dtype.kind == "f")
            for a in obs
        )


def _is_float(dtype: Any) -> bool:
    return np.dtype(dtype).kind == "f"


def _scatter(values: np.ndarray, active: np.ndarray, fill: Any = None) -> np.ndarray:
    """Rows of the active sub-envs -> ``len(active)`` rows; the others hold a placeholder."""
    if active.all():
        return values
    if fill is None:
        fill = np.nan if _is_float(values.dtype) else 0
    out = np.full((len(active), *values.shape[1:]), fill, dtype=values.dtype)
    out[active] = values
    return out
