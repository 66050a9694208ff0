"""Stepping a group of PettingZoo sub-envs into batch buffers, in-process or in a worker process.

``EnvGroup`` is the one place where sub-envs are stepped, reset and autoreset. ``SyncPettingZooVecEnv``
owns a single group holding every sub-env; each worker process of ``AsyncPettingZooVecEnv`` runs
``worker_main`` around a group holding a contiguous slice of the sub-envs. Both therefore produce
identical transitions by construction.
"""

from __future__ import annotations

import math
import os
import pickle
import select
import signal
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cloudpickle
import numpy as np
from gymnasium import spaces

from marlkit.envs.shared_memory import Buffers, placeholder

# An info entry sent back to the parent: (sub-env row, agent, the env's info dict for that agent).
InfoEntry = tuple[int, str, dict]
# What a reset/step returns: (infos, final_infos) lists of entries, or None when both are empty,
# so that the common case (envs without infos) sends almost nothing through the pipe.
InfoPayload = tuple[list[InfoEntry], list[InfoEntry]] | None

# How often an idle worker checks that its parent is still alive (seconds).
PARENT_CHECK_INTERVAL = 0.5

# Messages are pickled by hand and sent as bytes, so the per-step ones can be pickled once, here.
STEP_MESSAGE = pickle.dumps(("step", ()), protocol=pickle.HIGHEST_PROTOCOL)
_OK_NOTHING = pickle.dumps(("ok", None), protocol=pickle.HIGHEST_PROTOCOL)


class Readable:
    """``Readable(conn)(timeout, spin)``: wait up to ``timeout`` seconds (None: forever) for data on ``conn``.

    Like ``conn.poll(timeout)``, plus an optional busy-wait of up to ``spin`` seconds before sleeping. Why
    spin: waking a sleeping process, and the idle CPU under it, takes tens of microseconds (far more in a
    VM), which is a large share of a cheap env's step; while spinning we yield the CPU at every check, so a
    runnable process that needs it still gets it. Also, a ``select.poll`` object registered once is cheaper
    than ``conn.poll``, which builds a selector per call (Windows has no ``select.poll``: ``conn.poll`` there).
    """

    def __init__(self, conn: Any):
        self.conn = conn
        self.poller = None
        if hasattr(select, "poll"):
            self.poller = select.poll()
            self.poller.register(conn.fileno(), select.POLLIN)

    def __call__(self, timeout: float | None, spin: float = 0.0) -> bool:
        if self.poller is None:
            return self.conn.poll(timeout)
        if spin > 0:
            end = time.perf_counter() + spin
            while not self.poller.poll(0):
                if time.perf_counter() >= end:
                    break
                os.sched_yield()
            else:
                return True
            timeout = None if timeout is None else max(0.0, timeout - spin)
        return bool(self.poller.poll(None if timeout is None else math.ceil(timeout * 1000)))


def send_message(conn: Any, status: str, result: Any) -> None:
    """Send ``(status, result)``; ``conn.recv()`` on the other end unpickles it."""
    if status == "ok" and result is None:
        conn.send_bytes(_OK_NOTHING)
    else:
        conn.send_bytes(pickle.dumps((status, result), protocol=pickle.HIGHEST_PROTOCOL))


@dataclass(frozen=True)
class EnvSpec:
    """What all sub-envs of a vector env must agree on, read from one instance."""

    agents: tuple[str, ...]
    observation_spaces: dict[str, spaces.Space]
    action_spaces: dict[str, spaces.Space]
    metadata: dict
    render_mode: str | None

    @classmethod
    def from_env(cls, env: Any) -> EnvSpec:
        agents = tuple(env.possible_agents)
        return cls(
            agents=agents,
            observation_spaces={agent: env.observation_space(agent) for agent in agents},
            action_spaces={agent: env.action_space(agent) for agent in agents},
            metadata=dict(getattr(env, "metadata", {}) or {}),
            render_mode=getattr(env, "render_mode", None),
        )

    def check(self, env: Any, row: int) -> None:
        """Raise if sub-env ``row`` does not have the agents and spaces of sub-env 0."""
        other = EnvSpec.from_env(env)
        for what in ("agents", "observation_spaces", "action_spaces"):
            if getattr(other, what) != getattr(self, what):
                raise ValueError(
                    f"sub-env {row} has {what} {getattr(other, what)}, but sub-env 0 has "
                    f"{getattr(self, what)}; all sub-envs of a vector env must match"
                )


class EnvGroup:
    """Sub-envs with batch rows ``first_row, first_row + 1, ...``, stepped in order into ``buffers``.

    Per step, sub-env ``i`` receives actions only for its acting agents (those that got an observation at the
    previous step and are still in ``env.agents``), read from ``buffers.actions[agent][i]``. Results are
    written to row ``i`` of the buffers; only infos are returned, and only non-empty ones.
    """

    def __init__(self, envs: Sequence[Any], first_row: int, buffers: Buffers, spec: EnvSpec):
        self.envs = list(envs)
        self.rows = range(first_row, first_row + len(self.envs))
        self.buffers = buffers
        self.agents = spec.agents
        self.placeholders = {agent: placeholder(buffers.obs[agent].dtype) for agent in self.agents}
        for env, row in zip(self.envs, self.rows):
            spec.check(env, row)
        self.acting: list[list[str]] = [[] for _ in self.envs]

    def reset(self, seeds: Sequence[int | None], options: dict | None) -> InfoPayload:
        """Reset every sub-env; ``seeds[k]`` goes to the k-th sub-env of this group."""
        infos: list[InfoEntry] = []
        for k, (env, row, seed) in enumerate(zip(self.envs, self.rows, seeds)):
            obs, env_infos = env.reset(seed=seed, options=options)
            self._write_obs(obs, row, self.buffers.obs, self.buffers.active)
            self.acting[k] = [agent for agent in env.agents if agent in obs]
            infos += self._entries(row, env_infos)
        self.buffers.autoreset[self.rows.start : self.rows.stop] = False
        return (infos, []) if infos else None

    def step(self) -> InfoPayload:
        """Step every sub-env once, resetting (same step) those whose episode ended."""
        b = self.buffers
        infos: list[InfoEntry] = []
        final_infos: list[InfoEntry] = []
        for k, (env, row) in enumerate(zip(self.envs, self.rows)):
            actions = {agent: self._action(agent, row) for agent in self.acting[k]}
            obs, rewards, terminations, truncations, env_infos = env.step(actions)
            for j, agent in enumerate(self.agents):
                b.rewards[j, row] = rewards.get(agent, np.nan)
                b.terminations[j, row] = terminations.get(agent, np.nan)
                b.truncations[j, row] = truncations.get(agent, np.nan)

            episode_over = all(terminations.get(a, False) or truncations.get(a, False) for a in env.agents)
            b.autoreset[row] = episode_over  # (true as well when PettingZoo has emptied env.agents)
            if episode_over:
                # Same-step autoreset: keep the finished episode's last observation and infos aside,
                # then start the next episode so that the returned row is its first observation.
                self._write_obs(obs, row, b.final_obs, b.final_mask)
                final_infos += self._entries(row, env_infos)
                obs, env_infos = env.reset()  # no seed: the env's generator continues, still reproducible

            self._write_obs(obs, row, b.obs, b.active)
            self.acting[k] = [agent for agent in env.agents if agent in obs]
            infos += self._entries(row, env_infos)
        return (infos, final_infos) if infos or final_infos else None

    def render(self) -> Any:
        return self.envs[0].render()

    def close(self) -> None:
        for env in self.envs:
            env.close()

    def _action(self, agent: str, row: int) -> Any:
        action = self.buffers.actions[agent][row]
        # Copy array actions: the buffer row is overwritten next step and an env may keep a reference.
        return action.copy() if isinstance(action, np.ndarray) else action

    def _write_obs(self, obs: dict, row: int, target: dict[str, np.ndarray], mask: np.ndarray) -> None:
        for j, agent in enumerate(self.agents):
            value = obs.get(agent)
            mask[j, row] = value is not None
            if value is None:
                target[agent][row] = self.placeholders[agent]
                continue
            try:
                target[agent][row] = value
            except ValueError as error:
                raise ValueError(
                    f"sub-env {row}: the observation of agent {agent!r} has shape {np.shape(value)}, but its "
                    f"observation space has shape {target[agent].shape[1:]}"
                ) from error

    def _entries(self, row: int, env_infos: dict) -> list[InfoEntry]:
        return [(row, agent, info) for agent, info in env_infos.items() if info and agent in self.agents]


def worker_main(payload: bytes, memory: Any, conn: Any, spin: float) -> None:
    """Body of one worker process of ``AsyncPettingZooVecEnv``.

    payload: the cloudpickled ``(env_fns, first_row, layout, spec)``; memory: the shared block ``layout``
    describes; spin: seconds to busy-wait for the next command before sleeping (see ``Readable``).
    Protocol on ``conn``: receive ``(command, args)``, answer ``("ok", result)`` or ``("error", traceback)``;
    the first answer, ``("ok", None)``, says the sub-envs are built.
    """
    # Ctrl+C (and a notebook's "interrupt kernel") is for the parent to handle; the parent then closes us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent_pid = os.getppid()
    group = None
    try:
        try:
            env_fns, first_row, layout, spec = cloudpickle.loads(payload)
            envs = [env_fn() for env_fn in env_fns]
            group = EnvGroup(envs, first_row, layout.views(memory), spec)
        except Exception:
            send_message(conn, "error", traceback.format_exc())
            return
        send_message(conn, "ok", None)

        commands: dict[str, Callable] = {"reset": group.reset, "step": group.step, "render": group.render}
        readable = Readable(conn)
        while True:
            # Poll with a timeout rather than block, so that a worker whose parent died (killed kernel,
            # SIGKILL) notices it was re-parented and exits instead of lingering as an orphan.
            if not readable(PARENT_CHECK_INTERVAL, spin):
                if os.getppid() != parent_pid:
                    return
                continue
            command, args = conn.recv()
            if command == "close":
                return
            try:
                result = commands[command](*args)
            except Exception:
                send_message(conn, "error", traceback.format_exc())
            else:
                send_message(conn, "ok", result)
    except (EOFError, OSError):
        return  # the parent closed its end of the pipe or died: nobody is left to answer
    finally:
        if group is not None:
            try:
                group.close()
            except Exception:
                pass  # best effort: the worker is exiting either way
        conn.close()

