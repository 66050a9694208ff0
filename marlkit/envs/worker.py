"""Stepping a group of PettingZoo sub-envs into batch buffers, in-process or in a worker process.

``EnvGroup`` is the one place where sub-envs are stepped, reset and autoreset. ``SyncPettingZooVecEnv``
owns a single group holding every sub-env; each worker process of ``AsyncPettingZooVecEnv`` runs
``worker_main`` around a group holding a contiguous slice of the sub-envs. Both therefore produce
identical transitions by construction.
"""

from __future__ import annotations

import ast
import functools
import math
import multiprocessing as mp
import os
import pickle
import select
import signal
import sys
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
    """``Readable(conn, spin)(timeout)``: wait up to ``timeout`` seconds (None: forever) for data on ``conn``.

    Like ``conn.poll(timeout)``, but it first busy-waits up to ``spin`` seconds. Why: waking a sleeping
    process, and the idle CPU under it, costs tens of microseconds (more in a VM) on each side of every
    step, a large share of a cheap env's step. The spin adapts: after a wait longer than ``spin`` (the
    other side is busy, e.g. learning) it sleeps straight away until waits are short again, so little CPU
    is burnt; and it yields the CPU at every check, so a process that needs the CPU still gets it.
    ``select.poll`` registered once is also cheaper than ``conn.poll``, which builds a selector per call.
    """

    def __init__(self, conn: Any, spin: float = 0.0):
        self.conn = conn
        self.spin = spin if hasattr(select, "poll") else 0.0  # (Windows has no select.poll)
        self.spinning = self.spin > 0
        self.poller = None
        if hasattr(select, "poll"):
            self.poller = select.poll()
            self.poller.register(conn.fileno(), select.POLLIN)

    def __call__(self, timeout: float | None) -> bool:
        if self.poller is None:
            return self.conn.poll(timeout)
        start = time.perf_counter()
        if self.spinning:
            while time.perf_counter() - start < self.spin:
                if self.poller.poll(0):
                    return True
                os.sched_yield()
            timeout = None if timeout is None else max(0.0, timeout - self.spin)
        ready = bool(self.poller.poll(None if timeout is None else math.ceil(timeout * 1000)))
        self.spinning = self.spin > 0 and ready and time.perf_counter() - start <= self.spin
        return ready


def encode(status: str, result: Any) -> bytes:
    """The message ``(status, result)``, for ``conn.send_bytes``; ``conn.recv()`` unpickles it."""
    if status == "ok" and result is None:
        return _OK_NOTHING
    return pickle.dumps((status, result), protocol=pickle.HIGHEST_PROTOCOL)


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


def worker_main(payload: bytes, memory: Any, commands: Any, answers: Any, spin: float) -> None:
    """Body of one worker process of ``AsyncPettingZooVecEnv``.

    payload: the cloudpickled ``(env_fns, first_row, layout, spec)``; memory: the shared block ``layout``
    describes; spin: seconds to busy-wait for the next command before sleeping (see ``Readable``).
    Protocol: receive ``(command, args)`` on ``commands``, answer ``("ok", result)`` or ``("error", traceback)``
    on ``answers``; the first answer, ``("ok", None)``, says the sub-envs are built.
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
            answers.send_bytes(encode("error", traceback.format_exc()))
            return
        answers.send_bytes(encode("ok", None))

        handlers: dict[str, Callable] = {"reset": group.reset, "step": group.step, "render": group.render}
        readable = Readable(commands, spin)
        while True:
            # Poll with a timeout rather than block, so that a worker whose parent died (killed kernel,
            # SIGKILL) notices it was re-parented and exits instead of lingering as an orphan.
            if not readable(PARENT_CHECK_INTERVAL):
                if os.getppid() != parent_pid:
                    return
                continue
            command, args = commands.recv()
            if command == "close":
                return
            try:
                message = encode("ok", handlers[command](*args))  # (pickling an info value may fail too)
            except Exception:
                message = encode("error", traceback.format_exc())
            answers.send_bytes(message)
    except (EOFError, OSError):
        return  # the parent closed its end of the pipe or died: nobody is left to answer
    finally:
        if group is not None:
            try:
                group.close()
            except Exception:
                pass  # best effort: the worker is exiting either way
        commands.close()
        answers.close()


def available_cpus() -> int:
    """CPUs this process may run on (respects taskset/cgroup affinity where the OS reports it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def default_start_method() -> str:
    """The start method ``AsyncPettingZooVecEnv`` uses by default (its docstring says why).

    'fork' when the main module is a script that workers started any other way would re-run
    (:func:`unguarded_main_script`) and the OS forks safely (Linux and other non-macOS Unixes);
    otherwise 'forkserver' where the OS has it (Linux, macOS), else 'spawn' (Windows).
    """
    methods = mp.get_all_start_methods()
    if "fork" in methods and sys.platform != "darwin" and unguarded_main_script() is not None:
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


def unguarded_main_script() -> str | None:
    """The main script's path if a 'spawn'/'forkserver' worker would re-run its code, else None.

    Such workers import the main module again (as ``__mp_main__``), which runs everything not under
    ``if __name__ == "__main__":``. Which main modules are re-imported follows ``multiprocessing.spawn``:
    a script (``python train.py``) or a module run with ``python -m pkg.mod``, but not a package's
    ``__main__.py``, ``python -c``, a REPL or a notebook kernel. A module counts as guarded when its top
    level has an ``if`` on ``__name__ == "__main__"``.
    """
    main = sys.modules.get("__main__")
    name = getattr(getattr(main, "__spec__", None), "name", None)
    if name is not None:
        if name == "__main__" or name.endswith(".__main__"):
            return None  # multiprocessing does not re-import these
        path = getattr(main.__spec__, "origin", None)
    else:
        path = getattr(main, "__file__", None)
    if not path or not str(path).endswith(".py") or os.path.basename(path) == "ipython.py":
        return None
    try:
        guarded = _has_main_guard(os.path.abspath(path), os.stat(path).st_mtime_ns)
    except OSError:
        return None
    return None if guarded else str(path)


@functools.lru_cache(maxsize=8)
def _has_main_guard(path: str, mtime_ns: int) -> bool:
    """Whether the file's top level has ``if __name__ == "__main__":`` (unparsable files count as guarded)."""
    try:
        with open(path, "rb") as file:
            tree = ast.parse(file.read(), path)
    except (SyntaxError, ValueError):
        return True  # not ours to judge: leave the start method as it was
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Compare):
            names = {n.id for n in ast.walk(node.test) if isinstance(n, ast.Name)}
            values = {n.value for n in ast.walk(node.test) if isinstance(n, ast.Constant)}
            if "__name__" in names and "__main__" in values:
                return True
    return False


def split_rows(num_envs: int, num_workers: int | None = None, envs_per_worker: int | None = None) -> list[range]:
    """Contiguous sub-env rows per worker, as even as possible. Default: one worker per available CPU."""
    if envs_per_worker is not None:
        if envs_per_worker < 1:
            raise ValueError(f"envs_per_worker must be >= 1, got {envs_per_worker}")
        needed = -(-num_envs // envs_per_worker)
        if num_workers is not None and num_workers != needed:
            raise ValueError(
                f"num_workers={num_workers} and envs_per_worker={envs_per_worker} disagree for "
                f"{num_envs} sub-envs; pass only one of them"
            )
        num_workers = needed
    if num_workers is None:
        num_workers = available_cpus()
    if num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}")
    num_workers = min(num_workers, num_envs)
    bounds = np.linspace(0, num_envs, num_workers + 1).round().astype(int)
    return [range(start, stop) for start, stop in zip(bounds[:-1], bounds[1:])]


def shutdown_workers(processes: list, pipes: list) -> None:
    """Ask workers to exit; terminate (then kill) those that do not within a couple of seconds."""
    for commands, _ in pipes:
        try:
            commands.send_bytes(pickle.dumps(("close", ())))
        except OSError:
            pass  # that worker is already gone
    deadline = time.monotonic() + 2.0
    for process in processes:
        process.join(timeout=max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.is_alive():
            process.terminate()
            process.join(timeout=1.0)
        if process.is_alive():
            process.kill()
            process.join()
        process.close()
    for commands, answers in pipes:
        commands.close()
        answers.close()
    processes.clear()  # nothing may use them again
    pipes.clear()
