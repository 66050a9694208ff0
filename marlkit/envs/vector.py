"""Vector environments: many copies of a PettingZoo parallel env, stepped as one batch.

    env = AsyncPettingZooVecEnv(
        [lambda: simple_speaker_listener_v4.parallel_env(continuous_actions=True) for _ in range(8)]
    )
    obs, infos = env.reset(seed=0)                     # obs[agent]: (8, *obs_shape)
    obs, rewards, terminations, truncations, infos = env.step(actions)  # actions[agent]: (8, *act_shape)

``SyncPettingZooVecEnv`` steps the sub-envs one after the other in this process (simple, easy to debug);
``AsyncPettingZooVecEnv`` spreads them over worker processes (and, by default, steps a share itself while the
workers step theirs). Both return identical transitions for the
same seeds and actions, with these conventions (also in ARCHITECTURE.md):

* ``obs[agent]`` is ``(num_envs, *obs_shape)`` in the env's own dtype (uint8 images stay uint8).
* **Absent agents.** An agent that is dead, or does not act in a sub-env at this step, has a placeholder
  observation row (NaN for float dtypes, 0 for integer dtypes); ``infos[agent]["active"]`` (``(num_envs,)``
  bool, always present) is the reliable signal. ``rewards[agent]`` is float32 ``(num_envs,)``,
  ``terminations[agent]``/``truncations[agent]`` float32 with 1/0; all three are NaN where the env reported
  nothing for that agent, so the guide's ``np.where(np.isnan(terminated), True, terminated)`` works.
  Actions for absent agents are ignored (the env never sees them).
* **Same-step autoreset.** When every agent of a sub-env is done, that sub-env is reset inside the same
  ``step``: its rewards/terminations/truncations row still describes the finished episode's last step, but
  its observation row is already the *first* observation of the next episode, ready for the next action.
  The finished episode's last observation is kept in ``infos[agent]["final_observation"]`` (rows valid
  where ``infos[agent]["_final_observation"]``), and its infos in ``infos[agent]["final_info"]`` (sub-envs
  that ended: ``infos[agent]["_final_info"]``). These keys appear only on steps where some sub-env ended.
  Why keep it: an episode cut by a time limit (truncation) did not really end, so its value target must
  bootstrap from that last observation, not from the new episode's first one.
* **Infos** are batched per agent, gymnasium style: numbers and equal-shaped arrays become arrays
  (``infos[agent]["action_mask"]``: ``(num_envs, n)``), anything else an object array; ``infos[agent]["_key"]``
  is the ``(num_envs,)`` mask of sub-envs that reported ``key``.
"""

from __future__ import annotations

import multiprocessing as mp
import pickle
import signal
import sys
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

import cloudpickle
import numpy as np
from gymnasium import spaces
from gymnasium.vector.utils import batch_space

from marlkit.envs.shared_memory import BufferLayout, placeholder
from marlkit.envs.worker import (
    STEP_MESSAGE,
    EnvGroup,
    EnvSpec,
    InfoPayload,
    Readable,
    available_cpus,
    default_start_method,
    shutdown_workers,
    split_rows,
    unguarded_main_script,
    worker_main,
)

EnvFn = Callable[[], Any]  # () -> pettingzoo.ParallelEnv

STARTUP_TIMEOUT = 120.0  # seconds: the least a worker is given to build its sub-envs
DEFAULT_TIMEOUT = 60.0  # seconds to wait for a worker's answer (AsyncPettingZooVecEnv's ``timeout``)
DEFAULT_SPIN = 1e-3  # seconds of busy-waiting before sleeping (AsyncPettingZooVecEnv's ``spin``)


class WorkerError(RuntimeError):
    """A worker process of ``AsyncPettingZooVecEnv`` raised an exception, died, or stopped answering."""


class _PettingZooVecEnv(ABC):
    """What the sync and async vector envs share: spaces, action checks, and turning buffers into outputs.

    Subclasses own the sub-envs and implement the four abstract methods; their sub-envs write into
    ``self._buffers`` (see ``marlkit.envs.shared_memory.Buffers``).
    """

    def __init__(self, num_envs: int, spec: EnvSpec, shared_memory: bool):
        self.num_envs = num_envs
        self.metadata = spec.metadata
        self.render_mode = spec.render_mode
        self.closed = False
        self._spec = spec
        self._agents = spec.agents
        self._layout = BufferLayout.create(spec.agents, spec.observation_spaces, spec.action_spaces, num_envs)
        self._memory = self._layout.allocate(shared=shared_memory)
        self._buffers = self._layout.views(self._memory)
        self._placeholders = {agent: placeholder(self._buffers.obs[agent].dtype) for agent in self._agents}
        self._batched_spaces: dict[tuple[str, str], spaces.Space] = {}
        self._needs_reset = True

    # ----- agents and spaces ------------------------------------------------------------------------------
    @property
    def possible_agents(self) -> list[str]:
        return list(self._agents)

    @property
    def agents(self) -> list[str]:
        """Every agent id. Per-sub-env presence changes step by step: see ``infos[agent]["active"]``."""
        return list(self._agents)

    def single_observation_space(self, agent: str) -> spaces.Space:
        return self._spec.observation_spaces[self._check_agent(agent)]

    def single_action_space(self, agent: str) -> spaces.Space:
        return self._spec.action_spaces[self._check_agent(agent)]

    def observation_space(self, agent: str) -> spaces.Space:
        """Batched space: e.g. ``Box(obs_shape)`` -> ``Box((num_envs, *obs_shape))``."""
        return self._batched("observation", self.single_observation_space(agent), agent)

    def action_space(self, agent: str) -> spaces.Space:
        """Batched space: e.g. ``Discrete(n)`` -> ``MultiDiscrete([n] * num_envs)``."""
        return self._batched("action", self.single_action_space(agent), agent)

    def _batched(self, kind: str, space: spaces.Space, agent: str) -> spaces.Space:
        if (kind, agent) not in self._batched_spaces:
            self._batched_spaces[kind, agent] = batch_space(space, self.num_envs)
        return self._batched_spaces[kind, agent]

    def _check_agent(self, agent: str) -> str:
        if agent not in self._agents:
            raise ValueError(f"unknown agent {agent!r}; this env's agents are {list(self._agents)}")
        return agent

    # ----- the environment loop ---------------------------------------------------------------------------
    def reset(
        self, seed: int | Sequence[int | None] | None = None, options: dict | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
        """Reset every sub-env.

        seed: None (unseeded), an int (sub-env ``i`` gets ``seed + i``) or one seed per sub-env.
        Returns ``obs`` (``obs[agent]``: ``(num_envs, *obs_shape)``) and ``infos`` (``infos[agent]``: dict of
        batched arrays, with ``"active"`` ``(num_envs,)`` bool).
        """
        self._check_open()
        if seed is None or isinstance(seed, (int, np.integer)):
            seeds = [None if seed is None else int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"got {len(seeds)} seeds for {self.num_envs} sub-envs")
        self._needs_reset = True
        payloads = self._reset(seeds, options)
        self._needs_reset = False
        return self._observations(), self._infos(payloads)

    def step(
        self, actions: Mapping[str, Any]
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray], dict]:
        """Apply one batch of actions and step every sub-env (autoresetting those whose episode ended).

        actions[agent]: ``(num_envs, *action_shape)``; rows of absent agents are ignored.
        Returns, per agent: ``obs`` ``(num_envs, *obs_shape)``, ``rewards``, ``terminations``, ``truncations``
        (each float32 ``(num_envs,)``, NaN where absent) and ``infos`` (dict of batched arrays).
        """
        self._check_open()
        if self._needs_reset:
            raise RuntimeError("call reset() before step() (a new env, or the last step/reset did not finish)")
        self._write_actions(actions)
        self._needs_reset = True  # stays set if stepping fails or is interrupted half-way
        payloads = self._step()
        self._needs_reset = False
        b = self._buffers
        # One copy per (num_agents, num_envs) array; each agent gets a row of it.
        rewards, terminations, truncations = b.rewards.copy(), b.terminations.copy(), b.truncations.copy()
        return (
            self._observations(),
            dict(zip(self._agents, rewards)),
            dict(zip(self._agents, terminations)),
            dict(zip(self._agents, truncations)),
            self._infos(payloads),
        )

    def render(self) -> Any:
        """Render sub-env 0 (create the sub-envs with a ``render_mode`` to get frames)."""
        self._check_open()
        return self._render()

    def _write_actions(self, actions: Mapping[str, Any]) -> None:
        if not isinstance(actions, Mapping):
            raise TypeError(f"actions must be a dict {{agent: array}}, got {type(actions).__name__}")
        unknown = [agent for agent in actions if agent not in self._buffers.actions]
        if unknown:
            raise ValueError(f"actions for unknown agent(s) {unknown}; this env's agents are {list(self._agents)}")
        for j, agent in enumerate(self._agents):
            target = self._buffers.actions[agent]
            if agent not in actions:
                if self._buffers.active[j].any():
                    raise ValueError(
                        f"actions has no entry for agent {agent!r}, which is active in sub-envs "
                        f"{np.flatnonzero(self._buffers.active[j]).tolist()}; expected an array of shape "
                        f"{target.shape} (rows of absent agents are ignored)"
                    )
                continue
            action = np.asarray(actions[agent])
            if action.shape != target.shape:
                if action.ndim == 0 or action.shape[0] != self.num_envs or action.size != target.size:
                    raise ValueError(
                        f"actions[{agent!r}] has shape {action.shape}, expected {target.shape} "
                        f"(num_envs={self.num_envs} rows of shape {target.shape[1:]})"
                    )
                action = action.reshape(target.shape)
            if target.dtype.kind in "iub" and action.dtype.kind == "f":
                with np.errstate(invalid="ignore"):  # NaN in rows of absent agents: ignored anyway
                    target[...] = action
            else:
                target[...] = action  # casts to the action space's dtype

    def _observations(self) -> dict[str, np.ndarray]:
        # Copies: the buffers are overwritten by the next step, the caller may keep these (replay buffer).
        return {agent: self._buffers.obs[agent].copy() for agent in self._agents}

    def _infos(self, payloads: list[InfoPayload]) -> dict[str, dict]:
        b = self._buffers
        entries: dict[str, list] = {agent: [] for agent in self._agents}
        final_entries: dict[str, list] = {agent: [] for agent in self._agents}
        for payload in payloads:
            if payload is not None:
                for row, agent, info in payload[0]:
                    entries[agent].append((row, info))
                for row, agent, info in payload[1]:
                    final_entries[agent].append((row, info))
        any_reset = bool(b.autoreset.any())
        infos = {}
        for j, agent in enumerate(self._agents):
            info = batch_infos(entries[agent], self.num_envs)
            info["active"] = b.active[j].copy()
            if any_reset:
                has_final_obs = b.final_mask[j] & b.autoreset
                final_obs = b.final_obs[agent].copy()
                final_obs[~has_final_obs] = self._placeholders[agent]  # no stale rows from older episodes
                info["final_observation"] = final_obs
                info["_final_observation"] = has_final_obs
                info["final_info"] = batch_infos(final_entries[agent], self.num_envs)
                info["_final_info"] = b.autoreset.copy()
            infos[agent] = info
        return infos

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError(f"{type(self).__name__} is closed")

    # ----- lifetime -----------------------------------------------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_envs={self.num_envs}, agents={list(self._agents)})"

    # ----- what a subclass provides -------------------------------------------------------------------------
    @abstractmethod
    def _reset(self, seeds: list[int | None], options: dict | None) -> list[InfoPayload]:
        """Reset sub-env ``i`` with ``seeds[i]``; results go to the buffers, infos are returned."""

    @abstractmethod
    def _step(self) -> list[InfoPayload]:
        """Step every sub-env with the actions in the buffers; results go to the buffers, infos are returned."""

    @abstractmethod
    def _render(self) -> Any:
        """Sub-env 0's ``render()``."""

    @abstractmethod
    def close(self) -> None:
        """Release the sub-envs (and workers); calling it again does nothing."""


def batch_infos(entries: Sequence[tuple[int, dict]], num_envs: int) -> dict[str, Any]:
    """Batch per-sub-env info dicts: ``[(row, info), ...]`` -> ``{key: batched, "_key": (num_envs,) bool}``.

    Numbers and equal-shaped numeric arrays are stacked into ``(num_envs, *shape)`` (zeros in rows without the
    key); nested dicts are batched recursively; anything else goes into a ``(num_envs,)`` object array.
    """
    by_key: dict[str, list[tuple[int, Any]]] = {}
    for row, info in entries:
        for key, value in info.items():
            by_key.setdefault(key, []).append((row, value))
    batched: dict[str, Any] = {}
    for key, values in by_key.items():
        rows = [row for row, _ in values]
        if all(isinstance(value, dict) for _, value in values):
            batched[key] = batch_infos(values, num_envs)
        else:
            batched[key] = _stack(values, num_envs)
        mask = np.zeros(num_envs, dtype=bool)
        mask[rows] = True
        batched[f"_{key}"] = mask
    return batched


def _stack(values: list[tuple[int, Any]], num_envs: int) -> np.ndarray:
    numeric = (bool, int, float, np.bool_, np.number, np.ndarray)
    arrays = [np.asarray(value) for _, value in values if isinstance(value, numeric)]
    if len(arrays) == len(values) and all(a.dtype.kind in "biuf" and a.shape == arrays[0].shape for a in arrays):
        stacked = np.zeros((num_envs, *arrays[0].shape), dtype=np.result_type(*arrays))
        for (row, _), array in zip(values, arrays):
            stacked[row] = array
        return stacked
    stacked = np.full(num_envs, None, dtype=object)
    for row, value in values:
        stacked[row] = value
    return stacked


class SyncPettingZooVecEnv(_PettingZooVecEnv):
    """Vector env that steps its sub-envs one after the other in this process.

    Same semantics as ``AsyncPettingZooVecEnv`` (see the module docstring); use it to debug an env, or when
    a step is so cheap that processes do not pay off. ``env_fns``: one factory per sub-env.
    """

    def __init__(self, env_fns: Sequence[EnvFn]):
        envs = [env_fn() for env_fn in env_fns]
        if not envs:
            raise ValueError("env_fns is empty: pass one env factory per sub-env")
        spec = EnvSpec.from_env(envs[0])
        super().__init__(len(envs), spec, shared_memory=False)
        self._group = EnvGroup(envs, 0, self._buffers, spec)

    def _reset(self, seeds: list[int | None], options: dict | None) -> list[InfoPayload]:
        return [self._group.reset(seeds, options)]

    def _step(self) -> list[InfoPayload]:
        return [self._group.step()]

    def _render(self) -> Any:
        return self._group.render()

    def close(self) -> None:
        """Close every sub-env; calling it again does nothing."""
        if not self.closed:
            self.closed = True
            self._group.close()


class AsyncPettingZooVecEnv(_PettingZooVecEnv):
    """Vector env whose sub-envs run in worker processes; same semantics as ``SyncPettingZooVecEnv``.

    env_fns: one factory per sub-env (lambdas and closures are fine: they are sent with cloudpickle).
    num_workers / envs_per_worker: how to spread the worker sub-envs (give at most one). Each worker steps
        a contiguous block of sub-envs, so that a cheap env's step is not dwarfed by inter-process messaging.
    main_process_envs: how many sub-envs (the first ones) this process steps itself while the workers step
        theirs, instead of sitting idle until they answer. Default (when ``num_workers`` and
        ``envs_per_worker`` are not given either): the available CPUs share the sub-envs evenly, this
        process counting as one CPU (2 CPUs, 8 sub-envs: 4 here and 4 in one worker); with one CPU or one
        sub-env, everything runs in one worker. When the workers are chosen, 0. Why: a parent waiting for
        as many busy workers as there are CPUs competes with them for a CPU (``benchmarks/vec_env.py``
        measures both). At least one sub-env always runs in a worker; for none, use ``SyncPettingZooVecEnv``.
    timeout: seconds to wait for a worker's answer before raising ``WorkerError`` (None: wait forever; a
        worker that dies is reported at once either way). Building the sub-envs at start-up may take longer
        (imports, ROMs): it gets at least ``STARTUP_TIMEOUT`` seconds. The attribute can be changed later.
    spin: seconds that the parent (for answers) and the workers (for the next command) busy-wait before
        sleeping, which saves the tens of microseconds a wake-up costs on every step of a cheap env; it
        switches itself off while the other side is slow (see ``marlkit.envs.worker.Readable``). 0 disables.
    context: multiprocessing start method ('fork', 'forkserver' or 'spawn'). Default: 'forkserver' (Windows:
        'spawn'), except that a script without ``if __name__ == "__main__":`` gets 'fork' on Linux, so the
        guide's unguarded scripts run as they are (see "Start method" below). ``start_method`` tells which.

    Start method. 'forkserver' forks each worker from a small single-threaded server process that has
    already imported marlkit's worker module: a worker starts in milliseconds, and it inherits only its
    own pipe ends. 'fork' would be as fast, but it copies a parent that usually runs threads (PyTorch's
    thread pool, Jupyter's), and forking a multi-threaded process can deadlock the child (Python >= 3.12
    warns about it; 3.14 made 'forkserver' the Linux default). forkserver's (and spawn's) price: every
    worker imports the main module again, which re-runs whatever a script does outside
    ``if __name__ == "__main__":`` (creating this env included, which then fails). So when the main
    module is a script without that guard (``marlkit.envs.worker.unguarded_main_script``), the default on
    Linux is 'fork', the reference library's default there: the workers only step the sub-envs and never
    touch torch, whose thread pool (when the parent has started it) is the known fork hazard. If your
    env itself uses torch or threads, guard the script and forkserver is used. Where 'fork' is not safe
    (macOS) or not available (Windows), an unguarded script gets a clear error before any worker starts.

    Each step the parent writes the actions into shared memory, sends each worker a tiny "step" message,
    and reads observations, rewards and done flags back from shared memory; only non-empty infos travel
    through the pipe. A worker exception is re-raised here as ``WorkerError`` carrying its traceback.
    ``close()`` (also via ``with`` or garbage collection) stops the workers; workers also exit by themselves
    if this process dies, so an interrupted or restarted notebook kernel leaves no orphans.
    """

    def __init__(
        self,
        env_fns: Sequence[EnvFn],
        *,
        num_workers: int | None = None,
        envs_per_worker: int | None = None,
        main_process_envs: int | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        spin: float = DEFAULT_SPIN,
        context: str | None = None,
    ):
        env_fns = list(env_fns)
        if not env_fns:
            raise ValueError("env_fns is empty: pass one env factory per sub-env")
        self.start_method = context or default_start_method()
        check_main_module(self.start_method, chosen=context is None)
        # Agents and spaces come from one throwaway instance, because the shared memory they size must
        # exist before the workers start (it is handed to them at start-up).
        probe = env_fns[0]()
        spec = EnvSpec.from_env(probe)
        super().__init__(len(env_fns), spec, shared_memory=True)
        self.timeout = timeout
        self.spin = spin
        if main_process_envs is None and num_workers is None and envs_per_worker is None:
            main_process_envs, num_workers = default_split(self.num_envs)
        main_process_envs = main_process_envs or 0
        if not 0 <= main_process_envs < self.num_envs:
            probe.close()
            raise ValueError(
                f"main_process_envs={main_process_envs} must be between 0 and num_envs - 1 = {self.num_envs - 1} "
                f"(at least one sub-env runs in a worker; for none, use SyncPettingZooVecEnv)"
            )
        self.main_process_envs = main_process_envs
        # This process's sub-envs are rows 0..main_process_envs-1 (so render(), of sub-env 0, needs no
        # worker); the probe instance becomes row 0 rather than being thrown away.
        self._local: EnvGroup | None = None
        if main_process_envs:
            try:
                local_envs = [probe] + [env_fn() for env_fn in env_fns[1:main_process_envs]]
                self._local = EnvGroup(local_envs, 0, self._buffers, spec)
            except BaseException:
                probe.close()
                raise
        else:
            probe.close()
        self.worker_rows = [
            range(rows.start + main_process_envs, rows.stop + main_process_envs)
            for rows in split_rows(self.num_envs - main_process_envs, num_workers, envs_per_worker)
        ]
        self.num_workers = len(self.worker_rows)

        # Start method: see "Start method" in the class docstring. Factories are always sent with cloudpickle
        # (lambdas and closures work), whichever method starts the workers.
        ctx = mp.get_context(self.start_method)
        if ctx.get_start_method() == "forkserver":
            ctx.set_forkserver_preload(["marlkit.envs.worker"])  # only takes effect before the server starts

        self._processes: list[Any] = []
        self._pipes: list[tuple[Any, Any]] = []  # per worker: (commands to it, its answers)
        self._readable: list[Readable] = []
        self._pending: set[int] = set()  # workers whose answer to the last command is not read yet
        self._broken: str | None = None  # why the env can no longer be used (a worker died or hung)
        # Registered before any worker starts, so that even a failed construction cleans up; it must not
        # reference self, or garbage collection could never run it.
        self._finalizer = weakref.finalize(self, shutdown_workers, self._processes, self._pipes)
        try:
            for k, rows in enumerate(self.worker_rows):
                payload = cloudpickle.dumps((list(env_fns[rows.start : rows.stop]), rows.start, self._layout, spec))
                # Two one-way pipes rather than one two-way Pipe(), which is a socket pair: a message through
                # a pipe costs about half as much here, and messages are on the critical path of every step.
                command_reader, command_writer = ctx.Pipe(duplex=False)
                answer_reader, answer_writer = ctx.Pipe(duplex=False)
                process = ctx.Process(
                    target=worker_main,
                    args=(payload, self._memory, command_reader, answer_writer, spin),
                    name=f"marlkit-vec-worker-{k}",
                    daemon=True,
                )
                process.start()
                command_reader.close()  # now only the worker holds these ends: its death gives us EOF
                answer_writer.close()
                self._processes.append(process)
                self._pipes.append((command_writer, answer_reader))
                self._readable.append(Readable(answer_reader, spin))
                self._pending.add(k)
            self.worker_pids = [process.pid for process in self._processes]
            self._receive_all("start", None if timeout is None else max(timeout, STARTUP_TIMEOUT))
        except BaseException:
            self.close()
            raise

    def _reset(self, seeds: list[int | None], options: dict | None) -> list[InfoPayload]:
        args = [(seeds[rows.start : rows.stop], options) for rows in self.worker_rows]
        return self._call("reset", args, local_args=(seeds[: self.main_process_envs], options))

    def _step(self) -> list[InfoPayload]:
        return self._call("step", local_args=())

    def _render(self) -> Any:
        if self._local is not None:
            return self._local.render()
        return self._call("render", [()], workers=[0])[0]

    def _call(
        self,
        command: str,
        args: list[tuple] | None = None,
        workers: Sequence[int] | None = None,
        local_args: tuple | None = None,
    ) -> list:
        """Send ``command`` to the workers (``args[k]`` to the k-th) and return their results in order.

        With ``local_args`` (and sub-envs in this process), this process runs ``command`` on its own
        sub-envs while the workers run theirs; its result comes first.
        """
        if self._broken:
            raise WorkerError(f"{self._broken}; this vector env is unusable, close it and create a new one")
        if self._pending:
            # A previous call was interrupted (Ctrl+C) after sending: read and drop its answers first, so
            # that every answer we read below belongs to this command.
            self._receive_all("an interrupted command", self.timeout, raise_errors=False)
        workers = range(self.num_workers) if workers is None else workers
        for i, k in enumerate(workers):
            message = STEP_MESSAGE if args is None else pickle.dumps((command, args[i]), pickle.HIGHEST_PROTOCOL)
            try:
                self._pipes[k][0].send_bytes(message)
            except OSError:  # BrokenPipeError: the worker is gone
                self._worker_died(k, command)
            self._pending.add(k)
        local: list[Any] = []
        if self._local is not None and local_args is not None:
            try:
                local.append(getattr(self._local, command)(*local_args))
            except BaseException:
                # Keep every pipe in step with its worker before the error leaves (as in the sync env,
                # the exception is the sub-env's own).
                self._receive_all(command, self.timeout, raise_errors=False)
                raise
        return local + self._receive_all(command, self.timeout)

    def _receive_all(self, command: str, timeout: float | None, raise_errors: bool = True) -> list[Any]:
        """Read the answer of every pending worker; then raise the workers' errors, if any."""
        deadline = None if timeout is None else time.monotonic() + timeout
        results, errors = [], []
        for k in sorted(self._pending):
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._readable[k](remaining):
                self._broken = f"worker {k} ({self._describe(k)}) did not answer {command!r} within {timeout} s"
                raise WorkerError(f"{self._broken}; call close() to stop the workers")
            try:
                status, result = self._pipes[k][1].recv()
            except (EOFError, OSError):
                self._worker_died(k, command)
            self._pending.discard(k)
            if status == "error":
                errors.append(f"worker {k} ({self._describe(k)}) raised during {command!r}:\n{result}")
            results.append(result)
        if errors and raise_errors:
            if command == "start":
                self._broken = "a worker failed to build its sub-envs"
            raise WorkerError("\n".join(errors))
        return results

    def _worker_died(self, k: int, command: str) -> NoReturn:
        process = self._processes[k]
        process.join(timeout=1.0)  # let the exit code arrive
        code = process.exitcode
        if code is not None and code < 0:
            how = f"was killed by signal {signal.Signals(-code).name}"
        else:
            how = f"exited with code {code}"
        self._broken = f"worker {k} ({self._describe(k)}) {how} while handling {command!r}"
        hint = ""
        if command == "start":
            hint = "\nIts traceback, if any, is printed above."
            if self.start_method != "fork":
                hint += (
                    f" Workers started with {self.start_method!r} re-import the main module: if you run a "
                    f"script, put the code that creates this env under `if __name__ == '__main__':`"
                    + (", or pass context='fork'." if "fork" in mp.get_all_start_methods() else ".")
                )
        raise WorkerError(f"{self._broken}; close this vector env and create a new one{hint}")

    def _describe(self, k: int) -> str:
        rows = self.worker_rows[k]
        return f"pid {self.worker_pids[k]}, sub-envs {rows.start}..{rows.stop - 1}"

    def close(self) -> None:
        """Stop the workers (they close their sub-envs) and free the shared memory; idempotent."""
        if self.closed:
            return
        self.closed = True
        self._finalizer()  # runs shutdown_workers once, whoever calls first (close, gc or interpreter exit)
        if self._local is not None:
            self._local.close()
            self._local = None
        self._buffers = self._memory = None  # the last references to the shared block: it is freed now

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_envs={self.num_envs}, num_workers={self.num_workers}, "
            f"main_process_envs={self.main_process_envs}, start_method={self.start_method!r}, "
            f"agents={list(self._agents)})"
        )


def default_split(num_envs: int) -> tuple[int, int]:
    """``(main_process_envs, num_workers)`` by default: the available CPUs share the sub-envs, this process
    counting as one CPU; with one CPU (or one sub-env) everything runs in one worker."""
    lanes = min(available_cpus(), num_envs)
    if lanes < 2:
        return 0, 1
    return num_envs // lanes, lanes - 1


def check_main_module(start_method: str, chosen: bool) -> None:
    """Refuse, before any worker starts, a default start method that would re-run an unguarded script.

    ``chosen``: the start method is the default (not the caller's ``context``). On Linux the default is
    then 'fork' for such scripts, so this only fires where 'fork' is unsafe or missing (macOS, Windows).
    """
    if not chosen or start_method == "fork":
        return
    script = unguarded_main_script()
    if script is not None:
        raise RuntimeError(
            f"{script} has no `if __name__ == '__main__':` guard, and on {sys.platform} the workers of "
            f"AsyncPettingZooVecEnv start with {start_method!r}, which re-runs the main script in every worker "
            f"(creating this env again). Put the script's code under `if __name__ == '__main__':`, or use "
            f"SyncPettingZooVecEnv (no worker processes)."
        )


def make_multi_agent_vect_envs(
    env_fn: Callable[..., Any],
    num_envs: int = 1,
    *,
    num_workers: int | None = None,
    envs_per_worker: int | None = None,
    main_process_envs: int | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    spin: float = DEFAULT_SPIN,
    context: str | None = None,
    **env_kwargs,
) -> AsyncPettingZooVecEnv:
    """``AsyncPettingZooVecEnv`` of ``num_envs`` copies of ``env_fn(**env_kwargs)`` (the guide's helper).

    The keyword arguments named after ``AsyncPettingZooVecEnv``'s options (``num_workers``,
    ``envs_per_worker``, ``main_process_envs``, ``timeout``, ``spin``, ``context``) go to the vector env;
    all others go to ``env_fn``.
    """
    return AsyncPettingZooVecEnv(
        [lambda: env_fn(**env_kwargs) for _ in range(num_envs)],
        num_workers=num_workers,
        envs_per_worker=envs_per_worker,
        main_process_envs=main_process_envs,
        timeout=timeout,
        spin=spin,
        context=context,
    )
