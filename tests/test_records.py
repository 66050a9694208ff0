"""Run records: JSON-lines round trip, resuming, run directories, and a simulated evolution run."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from marlkit.hpo import HyperparameterConfig, RLParameter, TournamentSelection
from marlkit.training.records import GENERATIONS_FILE, META_FILE, RunRecord, make_run_dir, member_summary


class FakeAgent:
    """The public bookkeeping attributes of the Algorithms contract, nothing else."""

    hp_names = ("lr_actor", "batch_size")

    def __init__(self, index: int) -> None:
        self.index = index
        self.steps = [0]
        self.scores: list[float] = []
        self.fitness: list[float] = []
        self.mut = None
        self.lineage: list[tuple[int, int]] = []
        self.lr_actor = 1e-3
        self.batch_size = 32

    def set_hyperparameter(self, name: str, value) -> None:
        setattr(self, name, value)

    def clone(self, index: int | None = None) -> FakeAgent:
        child = copy.deepcopy(self)
        if index is not None:
            child.index = index
        return child


def simulate_run(record: RunRecord, generations: int = 4, pop_size: int = 3, seed: int = 0) -> None:
    """Evaluate -> log -> select -> mutate, the order the training loop uses."""
    rng = np.random.default_rng(seed)
    hp_config = HyperparameterConfig(
        lr_actor=RLParameter(min=1e-4, max=1e-2), batch_size=RLParameter(min=8, max=512, dtype=int)
    )
    tournament = TournamentSelection(2, elitism=True, population_size=pop_size, eval_loop=2, rand_seed=seed)
    pop = [FakeAgent(i) for i in range(pop_size)]
    global_steps = 0
    for generation in range(generations):
        for agent in pop:
            agent.steps[-1] += 100
            global_steps += 100
            agent.fitness.append(float(rng.normal(loc=-agent.lr_actor * 1000)))
        record.log_population(generation, pop, global_steps, eval_loop=2)
        _, pop = tournament.select(pop)
        pop[0].mut = "None"  # the elite is not mutated
        for agent in pop[1:]:
            name = hp_config.sample(rng)
            agent.set_hyperparameter(name, hp_config[name].mutate(getattr(agent, name), rng))
            agent.mut = name
        for agent in pop:
            agent.steps.append(agent.steps[-1])


def test_member_summary_reads_the_public_attributes():
    agent = FakeAgent(5)
    agent.fitness = [1.0, 2.0, 4.0]
    agent.steps = [0, 300]
    agent.lineage = [(1, 2), (2, 3)]
    agent.mut = "batch_size"
    agent.batch_size = np.int64(64)  # numpy scalars must become plain ints
    summary = member_summary(agent, eval_loop=2)
    assert summary == {
        "index": 5,
        "steps": 300,
        "fitness": 4.0,
        "mean_fitness": 3.0,
        "hyperparameters": {"lr_actor": 1e-3, "batch_size": 64},
        "mutation": "batch_size",
        "parent": 3,
    }
    fresh = member_summary(FakeAgent(0))
    assert fresh["fitness"] is None and fresh["parent"] is None and fresh["mutation"] is None


def test_round_trip_of_a_simulated_run(tmp_path):
    record = RunRecord(tmp_path / "run")
    record.write_meta(env_name="simple_speaker_listener_v4", algo="MADDPG", seed=0)
    simulate_run(record, generations=4, pop_size=3)

    lines = (tmp_path / "run" / GENERATIONS_FILE).read_text().splitlines()
    assert len(lines) == 4
    first = json.loads(lines[0])
    assert set(first) == {"generation", "global_steps", "eval_loop", "wall_time", "members"}
    assert set(first["members"][0]) == {
        "index", "steps", "fitness", "mean_fitness", "hyperparameters", "mutation", "parent"
    }  # fmt: skip

    loaded = RunRecord.load(tmp_path / "run")
    assert loaded.generations == record.generations
    assert loaded.meta == {"env_name": "simple_speaker_listener_v4", "algo": "MADDPG", "seed": 0}
    assert [g["generation"] for g in loaded.generations] == [0, 1, 2, 3]
    assert [g["global_steps"] for g in loaded.generations] == [300, 600, 900, 1200]
    wall_times = [g["wall_time"] for g in loaded.generations]
    assert wall_times == sorted(wall_times)

    # Every member after generation 0 names a parent that existed in the generation before it.
    for previous, current in zip(loaded.generations, loaded.generations[1:]):
        parents = {m["index"] for m in previous["members"]}
        assert all(m["parent"] in parents for m in current["members"])
        assert current["members"][0]["index"] == current["members"][0]["parent"]  # elite keeps its index
        assert all(isinstance(m["hyperparameters"]["batch_size"], int) for m in current["members"])
    assert all(m["parent"] is None for m in loaded.generations[0]["members"])


def test_resume_appends_and_nan_becomes_null(tmp_path):
    record = RunRecord(tmp_path)
    record.log({"generation": 0, "global_steps": 10, "members": [], "wall_time": 5.0})
    resumed = RunRecord(tmp_path)
    resumed.log({"generation": 1, "global_steps": 20, "members": [{"index": 0, "fitness": float("nan")}]})
    loaded = RunRecord.load(tmp_path)
    assert [g["generation"] for g in loaded.generations] == [0, 1]
    assert loaded.generations[1]["wall_time"] >= 5.0  # time continues from the last line
    assert loaded.generations[1]["members"][0]["fitness"] is None
    assert "NaN" not in (tmp_path / GENERATIONS_FILE).read_text()


def test_truncated_last_line_is_dropped_on_resume(tmp_path):
    RunRecord(tmp_path).log({"generation": 0, "global_steps": 10, "members": []})
    with (tmp_path / GENERATIONS_FILE).open("a") as file:
        file.write('{"generation": 1, "glob')  # a run killed mid-write
    with pytest.warns(UserWarning, match="truncated"):
        record = RunRecord(tmp_path)
    record.log({"generation": 1, "global_steps": 20, "members": []})
    assert [g["generation"] for g in RunRecord.load(tmp_path).generations] == [0, 1]


def test_record_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=GENERATIONS_FILE):
        RunRecord.load(tmp_path / "missing")
    record = RunRecord(tmp_path)
    with pytest.raises(ValueError, match="global_steps"):
        record.log({"generation": 0, "members": []})
    with pytest.raises(TypeError, match="plain JSON"):
        record.log({"generation": 0, "global_steps": 0, "members": [object()]})
    (tmp_path / GENERATIONS_FILE).write_text('{"generation": 0\n{"generation": 1}\n')
    with pytest.raises(ValueError, match=f"{GENERATIONS_FILE}:1 is not valid JSON"):
        RunRecord.load(tmp_path)
    assert not (tmp_path / META_FILE).exists()


def test_make_run_dir(tmp_path):
    first = make_run_dir("mpe2/simple_speaker_listener_v4", "MATD3", root=tmp_path)
    second = make_run_dir("mpe2/simple_speaker_listener_v4", "MATD3", root=tmp_path)
    assert first.is_dir() and second.is_dir() and first != second
    assert first.parent == tmp_path  # the "/" in the env name did not nest folders
    assert first.name.startswith("mpe2_simple_speaker_listener_v4-MATD3-")
    given = make_run_dir(path=tmp_path / "my" / "run")
    assert given == tmp_path / "my" / "run" and given.is_dir()
    with pytest.raises(ValueError, match="env_name and algo"):
        make_run_dir()
