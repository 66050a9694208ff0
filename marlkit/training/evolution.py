"""The generation loop that off- and on-policy training share.

One generation = every member trains for ``evo_steps`` env steps, then the population is evaluated,
recorded, checkpointed, and replaced by tournament selection + mutation. ``train_multi_agent_off_policy``
and ``train_multi_agent_on_policy`` differ only in how one member trains; everything in this module is
the part they have in common.

Budgets are counted per member, as in the guide's custom loop
(``while np.less([agent.steps[-1] for agent in pop], max_steps).all()``): ``max_steps`` and
``checkpoint`` are env steps of *each* member, so a population of 4 with ``max_steps=200_000`` takes
800,000 env steps in all. The run record's ``global_steps`` (and W&B's ``global_step``) count the
whole population's env steps.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from marlkit.algorithms.base import episode_dones
from marlkit.training.records import RunRecord, make_run_dir

# Early stopping: a run stops once every member's mean fitness over its last TARGET_WINDOW evaluations
# reaches the target. Averaging over a window (rather than one lucky evaluation of the best member)
# asks for the whole population to be reliably good.
TARGET_WINDOW = 3


def seed_everything(seed: int | None) -> None:
    """Seed Python, NumPy and torch global generators (``None`` leaves them alone)."""
    if seed is None:
        return
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def target_reached(pop: Sequence[Any], target: float | None, window: int = TARGET_WINDOW) -> bool:
    """The early-stopping rule: every member's mean of its last ``window`` fitness values >= target."""
    if target is None:
        return False
    return all(len(a.fitness) > 0 and np.mean(a.fitness[-window:]) >= target for a in pop)


def planned_steps(max_steps: int, evo_steps: int | None, num_envs: int) -> int:
    """Env steps each member really takes (the progress bar's total): ``max_steps`` rounded up to whole
    generations, since a generation ends whole (each member takes ``(evo_steps // num_envs) * num_envs``)."""
    if not evo_steps:
        return max_steps
    generation = (evo_steps // num_envs) * num_envs
    return -(-max_steps // generation) * generation if generation else max_steps


def member_steps(pop: Sequence[Any]) -> int:
    """The furthest member's env-step count, ``max(agent.steps[-1])``: what ``max_steps`` is compared with."""
    return max(int(agent.steps[-1]) for agent in pop)


class EpisodeScores:
    """Running episode scores of one member in a vector env; finished episodes go to ``agent.scores``.

    A score sums an episode's rewards, summed over agents when ``sum_scores`` (cooperative tasks) and
    averaged over agents otherwise; NaN rewards of absent agents count as 0.
    """

    def __init__(self, agent: Any, num_envs: int, sum_scores: bool) -> None:
        self.agent, self.sum_scores = agent, sum_scores
        self.running = np.zeros(num_envs)

    def update(self, reward: dict, termination: dict, truncation: dict) -> np.ndarray:
        """Add one vector step's rewards; returns the indices of the sub-envs whose episode just ended."""
        rewards = np.nan_to_num(np.stack([np.asarray(reward[a], dtype=np.float64) for a in self.agent.agent_ids], -1))
        self.running += rewards.sum(-1) if self.sum_scores else rewards.mean(-1)
        finished = np.flatnonzero(episode_dones(termination, truncation))
        if finished.size:
            self.agent.scores.extend(float(s) for s in self.running[finished])
            self.running[finished] = 0.0
        return finished


def check_common_args(accelerator: Any, wb: bool, pop: Sequence[Any], evo_steps: int, num_envs: int) -> None:
    """Clear errors for arguments the training functions accept but cannot honour."""
    if accelerator is not None:
        raise NotImplementedError(
            "accelerator is not supported by marlkit: pass accelerator=None and choose the device "
            "with create_population(..., device=...)"
        )
    if wb:
        try:
            import wandb  # noqa: F401  (only checking that it is installed)
        except ImportError as err:
            raise ImportError(
                "wb=True logs to Weights & Biases, but wandb is not installed: pip install wandb"
            ) from err
    if len(pop) == 0:
        raise ValueError("pop is empty: create it with create_population(..., population_size=N)")
    if evo_steps < num_envs:
        raise ValueError(f"evo_steps={evo_steps} is smaller than num_envs={num_envs}: no step would be taken")


class GenerationLoop:
    """Bookkeeping of an evolutionary run: progress bar, run record, checkpoints, W&B, selection.

    The training functions call :meth:`train_step_done` as env steps are taken and :meth:`end_generation`
    after every member has trained; the latter evaluates, logs, saves and evolves the population.
    ``max_steps`` and ``checkpoint`` count each member's env steps; ``total_steps`` counts the population's.
    """

    def __init__(
        self,
        *,
        env: Any,
        env_name: str,
        algo: str,
        pop: list,
        max_steps: int,
        eval_steps: int | None,
        eval_loop: int,
        target: float | None,
        tournament: Any,
        mutation: Any,
        sum_scores: bool,
        checkpoint: int | None,
        checkpoint_path: str | os.PathLike | None,
        save_elite: bool,
        elite_path: str | os.PathLike | None,
        wb: bool,
        verbose: bool,
        run_dir: str | os.PathLike | None,
        meta: dict[str, Any],
        seed: int | None = None,
        on_generation: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.env, self.pop, self.algo, self.seed = env, pop, algo, seed
        self.num_envs = int(getattr(env, "num_envs", 1))
        self.max_steps, self.eval_steps, self.eval_loop = max_steps, eval_steps, eval_loop
        self.target, self.tournament, self.mutation = target, tournament, mutation
        self.sum_scores, self.verbose = sum_scores, verbose
        self.checkpoint, self.save_elite = checkpoint, save_elite
        self.run_dir = Path(run_dir) if run_dir is not None else make_run_dir(env_name, algo)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else self.run_dir / "checkpoints"
        self.elite_path = Path(elite_path) if elite_path else self.run_dir / "elite.pt"
        self.record = RunRecord(self.run_dir)
        self.record.write_meta(env_name=env_name, algo=algo, max_steps=max_steps, pop_size=len(pop), **meta)
        self.generation = len(self.record.generations)  # > 0 when resuming into an existing run dir
        self.total_steps = int(sum(a.steps[-1] for a in pop))  # env steps of the whole population
        start = member_steps(pop)
        self.next_checkpoint = None if not checkpoint else (start // checkpoint + 1) * checkpoint
        self.pop_fitnesses: list[list[float]] = []
        self.on_generation = on_generation
        self.wandb_run = None
        if wb:
            import wandb

            self.wandb_run = wandb.init(project="marlkit", name=self.run_dir.name, config=meta)
        self.start = time.perf_counter()
        # The bar counts steps per member, like max_steps: within a generation it advances by the
        # population's env steps / pop size, so it reaches each member's count when the generation ends.
        self._bar_origin = (start, self.total_steps)
        self.pbar = tqdm(
            total=planned_steps(max_steps, meta.get("evo_steps"), self.num_envs),
            initial=start,
            desc="steps per member",
            unit="step",
            dynamic_ncols=True,
            disable=not verbose,
        )

    def run(self, train_member: Callable[[Any, Any, Any, EpisodeScores], int]) -> tuple[list, list[list[float]]]:
        """Train generations until ``max_steps`` or the target; returns ``(pop, pop_fitnesses)``.

        ``train_member(agent, obs, infos, scores)`` trains one member for one generation, starting from a
        fresh ``env.reset`` (seeded on the first reset only), and returns the env steps it took. All the
        rest (training mode, step counts, evaluation, records, selection, mutation) happens here.
        """
        reset_seed = self.seed
        try:
            while not self.done():
                for agent in self.pop:
                    agent.set_training_mode(True)
                    obs, info = self.env.reset(seed=reset_seed)
                    reset_seed = None  # later resets continue the env's own seeded stream
                    scores = EpisodeScores(agent, self.num_envs, self.sum_scores)
                    agent.steps[-1] += train_member(agent, obs, info, scores)
                if self.end_generation():
                    break
        finally:
            self.close()
        return self.pop, self.pop_fitnesses

    def done(self) -> bool:
        """The guide's budget: stop once a member has taken ``max_steps`` env steps (``agent.steps[-1]``)."""
        return not np.less([agent.steps[-1] for agent in self.pop], self.max_steps).all()

    def train_step_done(self, num_steps: int) -> None:
        """``num_steps`` env steps were taken by the member now training."""
        self.total_steps += num_steps
        start_member, start_total = self._bar_origin
        self.pbar.update(start_member + (self.total_steps - start_total) // len(self.pop) - self.pbar.n)

    def end_generation(self) -> bool:
        """Evaluate, record, checkpoint and evolve; returns True when training should stop."""
        fitnesses = [
            agent.test(self.env, max_steps=self.eval_steps, loop=self.eval_loop, sum_scores=self.sum_scores)
            for agent in self.pop
        ]
        self.pop_fitnesses.append(fitnesses)
        wall = time.perf_counter() - self.start
        entry = self.record.log_population(self.generation, self.pop, self.total_steps, eval_loop=self.eval_loop)
        best = max(fitnesses)
        # sps: env steps per second of the whole population (the machine's throughput)
        self.pbar.set_postfix(best=f"{best:.2f}", sps=f"{self.total_steps / max(wall, 1e-9):.0f}", refresh=False)
        if self.verbose:
            self.pbar.write(
                f"gen {self.generation:3d} | steps per member {member_steps(self.pop):>9,d} | fitness "
                + " ".join(f"{f:8.2f}" for f in fitnesses)
                + f" | {wall:6.1f}s"
            )
        if self.wandb_run is not None:
            self.wandb_run.log(
                {
                    "global_step": self.total_steps,
                    "eval/best_fitness": best,
                    "eval/mean_fitness": float(np.mean(fitnesses)),
                }
            )
        if self.on_generation is not None:
            self.on_generation(entry)

        stop = target_reached(self.pop, self.target) or self.done()
        elite = self.pop[int(np.argmax([np.mean(a.fitness[-self.eval_loop :]) for a in self.pop]))]
        if self.save_elite:
            self.elite_path.parent.mkdir(parents=True, exist_ok=True)
            elite.save_checkpoint(self.elite_path)
        if not stop:
            if self.tournament is not None:
                _, self.pop[:] = self.tournament.select(self.pop)
            if self.mutation is not None:
                self.pop[:] = self.mutation.mutation(self.pop)
            for agent in self.pop:
                agent.steps.append(agent.steps[-1])
        self.generation += 1
        steps = member_steps(self.pop)
        if self.checkpoint and (stop or steps >= self.next_checkpoint):
            self.save_population()
            while self.next_checkpoint <= steps:
                self.next_checkpoint += self.checkpoint
        return stop

    def save_population(self) -> None:
        """One checkpoint per member (loadable with ``weights_only=True``) in ``checkpoint_path``."""
        self.checkpoint_path.mkdir(parents=True, exist_ok=True)
        for old in self.checkpoint_path.glob("member_*.pt"):
            old.unlink()  # the population of the previous checkpoint is replaced, not merged
        for position, agent in enumerate(self.pop):
            agent.save_checkpoint(self.checkpoint_path / f"member_{position}.pt")

    def close(self) -> None:
        self.pbar.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()
        if self.verbose:
            print(f"run record, plots and checkpoints: {self.run_dir}")


def load_population(checkpoint_path: str | os.PathLike, device: str | torch.device = "cpu") -> list:
    """Load a population saved by a training function (``member_0.pt``, ``member_1.pt``, ...)."""
    from marlkit.algorithms.base import read_checkpoint
    from marlkit.hpo.population import algorithm_class

    files = sorted(Path(checkpoint_path).glob("member_*.pt"), key=lambda p: int(p.stem.split("_")[1]))
    if not files:
        raise FileNotFoundError(f"no member_*.pt checkpoints in {checkpoint_path}")
    return [algorithm_class(read_checkpoint(f)["algo"]).load(f, device=device) for f in files]
