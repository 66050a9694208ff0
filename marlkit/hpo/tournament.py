"""Tournament selection: which agents survive into the next generation.

Pseudocode of one ``select`` call (one generation)::

    score every agent by the mean of its last `eval_loop` fitness values
    elite = the best-scoring agent
    new_population = [clone(elite)]                  # only when elitism=True
    while len(new_population) < population_size:
        contestants = `tournament_size` agents drawn without replacement
        winner = best-scoring contestant
        new_population.append(clone(winner, index=next fresh index))
    return elite, new_population

Small tournaments (size 2) give weak selection pressure and keep diversity; a tournament as large as
the population always picks the best agent. Mutation (``marlkit.hpo.mutation``) runs afterwards on the
new population.

What an agent must provide (the "Algorithms" contract in ARCHITECTURE.md):

* ``fitness``: list of evaluation scores, appended by ``agent.test``;
* ``index``: int identifier, unique within a population;
* ``lineage``: list of ``(generation, parent_index)`` tuples;
* ``clone(index=None)``: an independent copy; ``index=None`` keeps the original index.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


class TournamentSelection:
    """Select the next generation by elitism plus tournaments.

    Args:
        tournament_size: number of agents competing in each tournament (drawn without replacement).
        elitism: if True, a clone of the best agent is always member 0 of the new population.
        population_size: size of the population ``select`` returns.
        eval_loop: an agent's score is the mean of its last ``eval_loop`` fitness values.
        rand_seed: seed (or ``np.random.Generator``) for the tournament draws. ``None`` seeds from the
            OS, so runs differ; marlkit's entry points (``create_population``, the CLI, notebooks) pass
            an explicit seed so a run can be repeated.

    Indices: the elite clone keeps the elite's ``index`` (as in AgileRL), so "agent 3" in a plot or
    checkpoint name is the same lineage for as long as it stays the best. Every other new member gets a
    fresh index, counting up from the largest index in the old population, so an index never names two
    different agents.

    Generations: the population returned by the k-th ``select`` call is generation k (the initial
    population is generation 0). Each new member's ``lineage`` gets ``(k, parent_index)`` appended;
    for the elite clone the parent is itself.
    """

    def __init__(
        self,
        tournament_size: int,
        elitism: bool,
        population_size: int,
        eval_loop: int,
        rand_seed: int | np.random.Generator | None = None,
    ) -> None:
        for name, value in (
            ("tournament_size", tournament_size),
            ("population_size", population_size),
            ("eval_loop", eval_loop),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"TournamentSelection {name} must be a positive int, got {value!r}")
        self.tournament_size = int(tournament_size)
        self.elitism = bool(elitism)
        self.population_size = int(population_size)
        self.eval_loop = int(eval_loop)
        self.rng = np.random.default_rng(rand_seed)
        self.generation = 0  # number of select() calls so far

    def agent_score(self, agent: Any) -> float:
        """Mean of the agent's last ``eval_loop`` fitness values (what tournaments compare)."""
        fitness = list(agent.fitness)
        if not fitness:
            raise ValueError(
                f"agent {agent.index} has no fitness values; evaluate every agent with "
                "agent.test(env, ...) before tournament selection"
            )
        score = float(np.mean(fitness[-self.eval_loop :]))
        # A diverged agent (NaN return) should lose every tournament, not crash a long run.
        return -math.inf if math.isnan(score) else score

    def _tournament(self, scores: np.ndarray) -> int:
        """Position (in the old population) of the winner of one tournament."""
        contestants = self.rng.choice(len(scores), size=self.tournament_size, replace=False)
        # argmax returns the first maximum: ties go to the contestant drawn first, i.e. at random.
        return int(contestants[np.argmax(scores[contestants])])

    def select(self, population: Sequence[Any], generation: int | None = None) -> tuple[Any, list[Any]]:
        """Return ``(elite, new_population)``.

        ``elite`` is the best agent of ``population`` itself (not a copy), e.g. for saving a
        checkpoint; ``new_population`` holds ``population_size`` fresh clones. ``generation`` defaults
        to this object's own count of ``select`` calls.
        """
        if len(population) == 0:
            raise ValueError("TournamentSelection.select got an empty population")
        if self.tournament_size > len(population):
            raise ValueError(
                f"tournament_size={self.tournament_size} is larger than the population "
                f"({len(population)} agents); tournaments draw without replacement"
            )
        scores = np.array([self.agent_score(agent) for agent in population])
        self.generation = self.generation + 1 if generation is None else int(generation)

        elite = population[int(np.argmax(scores))]
        next_index = max(agent.index for agent in population) + 1

        new_population = []
        if self.elitism:
            new_population.append(self._child(elite, index=None))
        while len(new_population) < self.population_size:
            parent = population[self._tournament(scores)]
            new_population.append(self._child(parent, index=next_index))
            next_index += 1
        return elite, new_population

    def _child(self, parent: Any, index: int | None) -> Any:
        child = parent.clone(index=index)
        # Build a new list rather than append: a clone that shares the parent's list would otherwise
        # rewrite the parent's (and every sibling's) history.
        child.lineage = [*parent.lineage, (self.generation, parent.index)]
        return child
