"""RLParameter / HyperparameterConfig bounds and errors; tournament selection on fake agents."""

from __future__ import annotations

import copy
from collections import Counter

import numpy as np
import pytest

from marlkit.hpo import HyperparameterConfig, RLParameter, TournamentSelection


class FakeAgent:
    """Just the bookkeeping of the Algorithms contract that tournament selection reads."""

    hp_names = ("lr_actor", "batch_size", "learn_step")

    def __init__(self, index: int, fitness: list[float]) -> None:
        self.index = index
        self.fitness = list(fitness)
        self.lineage: list[tuple[int, int]] = []
        self.steps = [0]
        self.mut = None
        self.lr_actor = 1e-3
        self.batch_size = 32
        self.learn_step = 100

    def clone(self, index: int | None = None) -> FakeAgent:
        child = copy.deepcopy(self)
        if index is not None:
            child.index = index
        return child


def guide_config() -> HyperparameterConfig:
    return HyperparameterConfig(
        lr_actor=RLParameter(min=1e-4, max=1e-2),
        batch_size=RLParameter(min=8, max=512, dtype=int),
        learn_step=RLParameter(min=20, max=200, dtype=int, grow_factor=1.5, shrink_factor=0.75),
    )


# ---------------------------------------------------------------- RLParameter


@pytest.mark.parametrize(
    "param, start",
    [
        (RLParameter(min=1e-4, max=1e-2), 1e-3),
        (RLParameter(min=8, max=512, dtype=int), 32),
        (RLParameter(min=1, max=3, dtype=int), 2),
        (RLParameter(min=20, max=200, dtype=int, grow_factor=1.5, shrink_factor=0.75), 100),
    ],
)
def test_mutations_stay_in_bounds_and_keep_dtype(param, start):
    rng = np.random.default_rng(0)
    value = start
    seen = set()
    for _ in range(1000):
        value = param.mutate(value, rng)
        assert param.min <= value <= param.max
        assert type(value) is param.dtype
        seen.add(value)
    # The walk must explore. grow * shrink < 1 for all of these, so it drifts down and hits the floor.
    assert len(seen) >= min(10, param.max - param.min + 1)
    assert min(seen) == param.min


def test_balanced_factors_reach_both_bounds():
    param = RLParameter(min=1e-4, max=1e-2, grow_factor=1.25, shrink_factor=0.8)  # 1.25 * 0.8 == 1: no drift
    rng = np.random.default_rng(0)
    value, seen = 1e-3, set()
    for _ in range(1000):
        value = param.mutate(value, rng)
        seen.add(value)
    assert min(seen) == param.min and max(seen) == param.max


def test_grow_and_shrink_factors_are_applied_with_equal_probability():
    param = RLParameter(min=0.0, max=100.0, grow_factor=1.5, shrink_factor=0.5)
    rng = np.random.default_rng(1)
    results = Counter(param.mutate(10.0, rng) for _ in range(2000))
    assert set(results) == {15.0, 5.0}
    assert 0.45 < results[15.0] / 2000 < 0.55


def test_int_mutation_moves_by_at_least_one():
    # round(2 * 1.2) == 2 and round(2 * 0.8) == 2: without the +-1 rule, 2 could never change.
    param = RLParameter(min=0, max=10, dtype=int)
    rng = np.random.default_rng(2)
    assert {param.mutate(2, rng) for _ in range(200)} == {1, 3}
    # Large values still use the factor, not +-1.
    assert {param.mutate(10, np.random.default_rng(s)) for s in range(50)} == {8, 10}


def test_value_at_bound_stays_when_pushed_outward():
    param = RLParameter(min=8, max=512, dtype=int)
    rng = np.random.default_rng(3)
    assert {param.mutate(512, rng) for _ in range(200)} == {512, 410}
    assert {param.mutate(8, rng) for _ in range(200)} == {8, 10}


def test_out_of_range_start_is_clipped():
    param = RLParameter(min=8, max=512, dtype=int)
    assert param.mutate(4096, np.random.default_rng(0)) == 512


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"min": 2, "max": 1}, "min must be <= max"),
        ({"min": 0.1, "max": 1, "grow_factor": 0}, "must be positive"),
        ({"min": 0.1, "max": 1, "shrink_factor": -0.5}, "must be positive"),
        ({"min": 0.1, "max": 1, "grow_factor": 0.9}, "grow_factor must be >= 1"),
        ({"min": 0.1, "max": 1, "shrink_factor": 1.1}, "shrink_factor must be <= 1"),
        ({"min": 0.1, "max": 1, "dtype": str}, "dtype must be float or int"),
        ({"min": 0.5, "max": 4, "dtype": int}, "whole-number bounds"),
        ({"min": -1, "max": 1}, "non-negative"),
        ({"min": "a", "max": 1}, "finite number"),
    ],
)
def test_rlparameter_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RLParameter(**kwargs)


# ---------------------------------------------------------------- HyperparameterConfig


def test_config_mapping_sample_and_round_trip():
    config = guide_config()
    assert config.names() == ["lr_actor", "batch_size", "learn_step"]
    assert list(config) == config.names() and len(config) == 3 and "batch_size" in config
    assert config["learn_step"].grow_factor == 1.5

    rng = np.random.default_rng(0)
    counts = Counter(config.sample(rng) for _ in range(3000))
    assert set(counts) == set(config.names()) and min(counts.values()) > 850

    data = config.to_dict()
    assert data["batch_size"] == {"min": 8, "max": 512, "dtype": "int", "grow_factor": 1.2, "shrink_factor": 0.8}
    assert HyperparameterConfig.from_dict(data) == config


def test_config_errors_name_the_key():
    with pytest.raises(TypeError, match="'lr_actor'"):
        HyperparameterConfig(lr_actor=(1e-4, 1e-2))
    with pytest.raises(ValueError, match="empty"):
        HyperparameterConfig().sample(np.random.default_rng(0))
    with pytest.raises(KeyError, match="tau"):
        guide_config()["tau"]


def test_check_rejects_unknown_hyperparameter():
    guide_config().check(FakeAgent(0, [1.0]))  # all names valid: no error
    with pytest.raises(ValueError, match="'lr_actr'.*FakeAgent"):
        HyperparameterConfig(lr_actr=RLParameter(min=1e-4, max=1e-2)).check(FakeAgent(0, [1.0]))


# ---------------------------------------------------------------- TournamentSelection


def population(fitnesses: list[list[float]]) -> list[FakeAgent]:
    return [FakeAgent(i, f) for i, f in enumerate(fitnesses)]


def test_elitism_keeps_a_clone_of_the_best_first():
    pop = population([[1.0], [5.0], [3.0], [2.0]])
    tournament = TournamentSelection(tournament_size=2, elitism=True, population_size=4, eval_loop=1, rand_seed=0)
    elite, new_pop = tournament.select(pop)
    assert elite is pop[1]
    assert len(new_pop) == 4
    assert new_pop[0] is not elite and new_pop[0].index == 1 and new_pop[0].fitness == [5.0]
    # Fresh, consecutive indices after the old maximum; no agent object reused.
    assert [agent.index for agent in new_pop[1:]] == [4, 5, 6]
    assert all(new is not old for new in new_pop for old in pop)


def test_eval_loop_averages_recent_fitness():
    # Agent 0 has the best last score, agent 1 the best mean of the last 3.
    pop = population([[0.0, 0.0, 10.0], [6.0, 6.0, 6.0]])
    t1 = TournamentSelection(tournament_size=2, elitism=True, population_size=2, eval_loop=1, rand_seed=0)
    t3 = TournamentSelection(tournament_size=2, elitism=True, population_size=2, eval_loop=3, rand_seed=0)
    assert t1.select(pop)[0] is pop[0]
    assert t3.select(pop)[0] is pop[1]


def test_full_size_tournament_always_picks_the_best():
    pop = population([[1.0], [9.0], [3.0]])
    tournament = TournamentSelection(tournament_size=3, elitism=False, population_size=5, eval_loop=1, rand_seed=0)
    _, new_pop = tournament.select(pop)
    assert [agent.lineage[-1][1] for agent in new_pop] == [1] * 5
    assert [agent.index for agent in new_pop] == [3, 4, 5, 6, 7]  # no elite: every member is fresh


def test_selection_pressure_favours_fitter_agents():
    pop = population([[0.0], [1.0], [2.0], [3.0]])
    tournament = TournamentSelection(tournament_size=2, elitism=False, population_size=4, eval_loop=1, rand_seed=7)
    wins = Counter()
    for _ in range(500):
        _, new_pop = tournament.select(pop)
        wins.update(agent.lineage[-1][1] for agent in new_pop)
    # Size-2 tournaments without replacement: the worst never wins; win rates are 0, 1/6, 2/6, 3/6.
    assert wins[0] == 0
    assert wins[1] < wins[2] < wins[3]
    assert abs(wins[3] / 2000 - 0.5) < 0.05


def test_same_seed_same_selection():
    def run(seed):
        tournament = TournamentSelection(
            tournament_size=2, elitism=True, population_size=6, eval_loop=1, rand_seed=seed
        )
        pop = population([[float(i % 3)] for i in range(6)])
        return [[a.lineage[-1][1] for a in tournament.select(pop)[1]] for _ in range(20)]

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_lineage_records_generation_and_parent_without_touching_parents():
    pop = population([[1.0], [5.0], [3.0]])
    tournament = TournamentSelection(tournament_size=2, elitism=True, population_size=3, eval_loop=1, rand_seed=0)
    _, gen1 = tournament.select(pop)
    assert all(agent.lineage == [] for agent in pop)
    assert gen1[0].lineage == [(1, 1)]  # the elite clone descends from itself
    for agent in gen1:
        agent.fitness.append(float(agent.index))
    _, gen2 = tournament.select(gen1)
    assert all(len(agent.lineage) == 2 and agent.lineage[-1][0] == 2 for agent in gen2)
    parent_indices = {agent.index for agent in gen1}
    assert all(agent.lineage[-1][1] in parent_indices for agent in gen2)
    # An explicit generation number overrides the internal count.
    _, gen9 = tournament.select(gen2, generation=9)
    assert gen9[0].lineage[-1][0] == 9


def test_nan_fitness_loses_rather_than_crashes():
    pop = population([[float("nan")], [-100.0]])
    tournament = TournamentSelection(tournament_size=2, elitism=True, population_size=2, eval_loop=1, rand_seed=0)
    elite, new_pop = tournament.select(pop)
    assert elite is pop[1] and new_pop[1].lineage[-1][1] == 1


def test_tournament_errors():
    tournament = TournamentSelection(tournament_size=3, elitism=True, population_size=2, eval_loop=1, rand_seed=0)
    with pytest.raises(ValueError, match="tournament_size=3 is larger than the population"):
        tournament.select(population([[1.0], [2.0]]))
    unevaluated = population([[1.0], [], [2.0]])
    unevaluated[1].index = 42
    with pytest.raises(ValueError, match="agent 42 has no fitness"):
        tournament.select(unevaluated)
    with pytest.raises(ValueError, match="tournament_size must be a positive int"):
        TournamentSelection(tournament_size=0, elitism=True, population_size=2, eval_loop=1)
    with pytest.raises(ValueError, match="eval_loop"):
        TournamentSelection(tournament_size=2, elitism=True, population_size=2, eval_loop=0)
