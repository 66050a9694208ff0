"""Run records: one JSON line per generation, so a finished (or crashed) run can be plotted later.

A run directory holds::

    runs/<env_name>-<algo>-<YYYYmmdd-HHMMSS>/
        run.json            metadata written once (env, algo, INIT_HP, hp_config.to_dict(), seed, ...;
                            the training functions add max_steps, each member's env-step budget, and pop_size)
        generations.jsonl   one line per generation, appended as training goes

Each line of ``generations.jsonl`` is a plain JSON object::

    {
      "generation": 3,                # 0 = the initial population
      "global_steps": 120000,         # env steps taken by the whole population so far
      "wall_time": 95.2,              # seconds since the run started
      "eval_loop": 1,                 # how many fitness values "mean_fitness" averages
      "members": [
        {
          "index": 7,                 # agent.index
          "steps": 30000,             # agent.steps[-1]
          "fitness": -31.4,           # agent.fitness[-1] (null if never evaluated)
          "mean_fitness": -33.0,      # mean of the last eval_loop fitness values (what selection ranks)
          "hyperparameters": {"lr_actor": 0.0012, "batch_size": 38, ...},   # every name in agent.hp_names
          "mutation": "lr_actor",     # agent.mut: the mutation that produced this member (null at gen 0)
          "parent": 2                 # index of the parent in the previous generation (null at gen 0)
        }, ...
      ]
    }

Log a generation after evaluating the population and *before* tournament selection, so each line
describes the agents that were actually trained and scored. Non-finite floats (NaN fitness of a
diverged agent) are written as ``null`` to keep the file strict JSON.
"""

from __future__ import annotations

import json
import math
import re
import time
import warnings
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

GENERATIONS_FILE = "generations.jsonl"
META_FILE = "run.json"


def make_run_dir(
    env_name: str | None = None,
    algo: str | None = None,
    root: str | Path = "runs",
    path: str | Path | None = None,
) -> Path:
    """Create and return a fresh run directory.

    With ``path`` given, that directory is used (created if needed). Otherwise the directory is
    ``<root>/<env_name>-<algo>-<YYYYmmdd-HHMMSS>``, with ``-1``, ``-2``, ... appended if two runs start
    in the same second.
    """
    if path is not None:
        run_dir = Path(path)
        run_dir.mkdir(parents=True, exist_ok=True)
        return run_dir
    if env_name is None or algo is None:
        raise ValueError("make_run_dir needs env_name and algo (or an explicit path)")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    # Env names such as "mpe2/simple_speaker_listener_v4" must not create nested folders.
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{env_name}-{algo}-{stamp}")
    run_dir = Path(root) / stem
    suffix = 0
    while run_dir.exists():
        suffix += 1
        run_dir = Path(root) / f"{stem}-{suffix}"
    run_dir.mkdir(parents=True)
    return run_dir


def _plain(value: Any) -> Any:
    """Turn numpy scalars/arrays and tuples into plain JSON values; non-finite floats become None."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"run records hold plain JSON values only, got {type(value).__name__}: {value!r}")


def member_summary(agent: Any, eval_loop: int = 1) -> dict[str, Any]:
    """The per-member fields of a generation line, read from an agent's public attributes."""
    fitness = list(agent.fitness)
    lineage = list(agent.lineage)
    return {
        "index": int(agent.index),
        "steps": int(agent.steps[-1]) if len(agent.steps) else 0,
        "fitness": float(fitness[-1]) if fitness else None,
        "mean_fitness": float(np.mean(fitness[-eval_loop:])) if fitness else None,
        "hyperparameters": {name: getattr(agent, name) for name in agent.hp_names},
        "mutation": None if agent.mut is None else str(agent.mut),
        "parent": int(lineage[-1][1]) if lineage else None,
    }


class RunRecord:
    """Append-only per-generation record of a training run (``generations.jsonl`` + ``run.json``).

    Opening an existing run directory resumes it: earlier generations are read back and new ones are
    appended after them, with ``wall_time`` continuing from the last line.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.generations, truncated = _read_jsonl(self.generations_path)
        if truncated:
            # Resuming after a crash: drop the half-written line so new lines are not glued onto it.
            self.generations_path.write_text("".join(json.dumps(e, allow_nan=False) + "\n" for e in self.generations))
        meta_path = self.run_dir / META_FILE
        self.meta: dict[str, Any] = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        previous_time = self.generations[-1]["wall_time"] if self.generations else 0.0
        self._start_time = time.perf_counter() - (previous_time or 0.0)

    @property
    def generations_path(self) -> Path:
        return self.run_dir / GENERATIONS_FILE

    @classmethod
    def load(cls, run_dir: str | Path) -> RunRecord:
        """Read a finished (or running) run back; fails if it has no ``generations.jsonl``."""
        path = Path(run_dir) / GENERATIONS_FILE
        if not path.exists():
            raise FileNotFoundError(f"no run record at {path}; expected a run directory made by RunRecord")
        return cls(run_dir)

    def write_meta(self, **meta: Any) -> None:
        """Store run-level metadata (merged into ``run.json``), e.g. ``hp_config=hp_config.to_dict()``."""
        self.meta.update(_plain(meta))
        (self.run_dir / META_FILE).write_text(json.dumps(self.meta, indent=2, allow_nan=False) + "\n")

    def log(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Append one generation line (a dict in the format of this module's docstring)."""
        missing = {"generation", "global_steps", "members"} - set(entry)
        if missing:
            raise ValueError(f"a generation entry needs the keys {sorted(missing)}; got {sorted(entry)}")
        entry = _plain(entry)
        entry.setdefault("wall_time", time.perf_counter() - self._start_time)
        with self.generations_path.open("a") as file:
            file.write(json.dumps(entry, allow_nan=False) + "\n")
        self.generations.append(entry)
        return entry

    def log_population(
        self,
        generation: int,
        population: Sequence[Any],
        global_steps: int,
        eval_loop: int = 1,
        wall_time: float | None = None,
    ) -> dict[str, Any]:
        """Summarise an evaluated population with ``member_summary`` and append it as one line."""
        entry: dict[str, Any] = {
            "generation": int(generation),
            "global_steps": int(global_steps),
            "eval_loop": int(eval_loop),
            "members": [member_summary(agent, eval_loop) for agent in population],
        }
        if wall_time is not None:
            entry["wall_time"] = float(wall_time)
        return self.log(entry)

    def __len__(self) -> int:
        return len(self.generations)

    def __repr__(self) -> str:
        return f"RunRecord({str(self.run_dir)!r}, generations={len(self.generations)})"


def _read_jsonl(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """Entries of a JSON-lines file, and whether a truncated last line was skipped."""
    if not path.exists():
        return [], False
    raw_lines = path.read_text().splitlines()
    entries = []
    for number, line in enumerate(raw_lines, start=1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError as error:
            # A run killed mid-write leaves a truncated last line: skip it so the finished generations
            # can still be plotted. A bad line anywhere else means the file is damaged.
            if number == len(raw_lines):
                warnings.warn(f"{path}:{number} is truncated; ignoring it", stacklevel=3)
                return entries, True
            raise ValueError(f"{path}:{number} is not valid JSON ({error.msg})") from error
    return entries, False
