"""The evolutionary training functions, and the guide's own code blocks with only their imports changed."""

import json

import numpy as np
import pytest
import torch
from mpe2 import simple_speaker_listener_v4

from marlkit import (
    MultiAgentReplayBuffer,
    Mutations,
    SyncPettingZooVecEnv,
    TournamentSelection,
    create_population,
    train_multi_agent_off_policy,
)
from marlkit.training.evolution import load_population
from marlkit.training.records import RunRecord

NET_CONFIG = {
    "speaker_0": {"encoder_config": {"hidden_size": [16], "activation": "ReLU"}, "head_config": {"hidden_size": [16]}},
    "listener_0": {"encoder_config": {"hidden_size": [16], "activation": "ReLU"}, "head_config": {"hidden_size": [16]}},
}
INIT_HP = {
    "BATCH_SIZE": 16,
    "O_U_NOISE": True,
    "EXPL_NOISE": 0.1,
    "MEAN_NOISE": 0.0,
    "THETA": 0.15,
    "DT": 0.01,
    "LR_ACTOR": 0.001,
    "LR_CRITIC": 0.001,
    "GAMMA": 0.95,
    "MEMORY_SIZE": 5000,
    "LEARN_STEP": 4,
    "TAU": 0.01,
    "POLICY_FREQ": 2,
    "POP_SIZE": 3,
}


pytestmark = pytest.mark.usefixtures("single_thread")  # tests/conftest.py


def run(tmp_path, seed=0, algo="MATD3", max_steps=600, target=None, num_envs=2, name="run", **kwargs):
    env = SyncPettingZooVecEnv([lambda: simple_speaker_listener_v4.parallel_env(continuous_actions=True)] * num_envs)
    env.reset(seed=seed)
    agents = env.agents
    init_hp = {**INIT_HP, "AGENT_IDS": agents}
    pop = create_population(
        algo,
        [env.single_observation_space(a) for a in agents],
        [env.single_action_space(a) for a in agents],
        NET_CONFIG,
        init_hp,
        population_size=3,
        num_envs=num_envs,
        seed=seed,
    )
    memory = MultiAgentReplayBuffer(5000, ["state", "action", "reward", "next_state", "done"], agents, seed=seed)
    tournament = TournamentSelection(2, True, 3, 1, rand_seed=seed)
    mutations = Mutations(0.4, 0.2, 0.2, 0.2, 0.0, 0.0, rand_seed=seed)
    kwargs = {"evo_steps": 200, "learning_delay": 50, "verbose": False, **kwargs}
    pop, fitnesses = train_multi_agent_off_policy(
        env,
        "simple_speaker_listener_v4",
        algo,
        pop,
        memory,
        INIT_HP=init_hp,
        net_config=NET_CONFIG,
        max_steps=max_steps,
        eval_steps=25,
        target=target,
        tournament=tournament,
        mutation=mutations,
        seed=seed,
        run_dir=tmp_path / name,
        **kwargs,
    )
    env.close()
    return pop, fitnesses


def test_training_records_a_run_and_saves_the_elite(tmp_path):
    pop, fitnesses = run(tmp_path, save_elite=True, checkpoint=400)
    assert len(fitnesses) == 3 and all(len(f) == 3 for f in fitnesses)  # 600 steps per member, 200 per generation
    lines = (tmp_path / "run" / "generations.jsonl").read_text().splitlines()
    assert len(lines) == 3
    entry = json.loads(lines[-1])
    assert entry["global_steps"] == 1800 and len(entry["members"]) == 3
    assert (tmp_path / "run" / "elite.pt").is_file()
    torch.load(tmp_path / "run" / "elite.pt", weights_only=True)
    restored = load_population(tmp_path / "run" / "checkpoints")
    assert len(restored) == 3 and restored[0].algo == "MATD3"


def test_same_seed_same_fitness_history(tmp_path):
    _, first = run(tmp_path, seed=3, name="a")
    _, second = run(tmp_path, seed=3, name="b")
    _, other = run(tmp_path, seed=4, name="c")
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)


def test_early_stopping_at_target(tmp_path):
    _, fitnesses = run(tmp_path, max_steps=3_000, target=-1e9)  # any fitness beats the target
    assert len(fitnesses) == 1


def test_elitism_keeps_the_best(tmp_path):
    pop2, fitnesses2 = run(tmp_path, max_steps=400, name="two")
    best_first = int(np.argmax(fitnesses2[0]))
    # the elite of generation 0 survives as member 0 of generation 1 with its fitness history
    assert pop2[0].fitness[0] == fitnesses2[0][best_first]


def test_resume_continues_the_run(tmp_path):
    run(tmp_path, max_steps=400, checkpoint=400, name="resumable")
    pop = load_population(tmp_path / "resumable" / "checkpoints")
    steps_before = sum(a.steps[-1] for a in pop)
    env = SyncPettingZooVecEnv([lambda: simple_speaker_listener_v4.parallel_env(continuous_actions=True)] * 2)
    memory = MultiAgentReplayBuffer(5000, ["state", "action", "reward", "next_state", "done"], env.agents)
    pop, fitnesses = train_multi_agent_off_policy(
        env,
        "simple_speaker_listener_v4",
        "MATD3",
        pop,
        memory,
        max_steps=600,
        evo_steps=200,
        eval_steps=25,
        tournament=TournamentSelection(2, True, 3, 1, rand_seed=0),
        mutation=None,
        verbose=False,
        run_dir=tmp_path / "resumable",
    )
    env.close()
    lines = [json.loads(x) for x in (tmp_path / "resumable" / "generations.jsonl").read_text().splitlines()]
    assert [e["generation"] for e in lines] == [0, 1, 2]  # the record continues where it stopped
    assert sum(a.steps[-1] for a in pop) > steps_before
    assert lines[-1]["global_steps"] > lines[1]["global_steps"]


def test_unsupported_arguments_are_clear(tmp_path):
    with pytest.raises(NotImplementedError, match="accelerator is not supported"):
        run(tmp_path, accelerator=object())


def test_max_steps_is_the_budget_of_each_member(tmp_path, capsys):
    # 3 members, 200 env steps each per generation: 500 steps per member end after the third generation
    pop, fitnesses = run(tmp_path, max_steps=500, verbose=True)
    assert len(fitnesses) == 3 and [a.steps[-1] for a in pop] == [600, 600, 600]
    record = RunRecord.load(tmp_path / "run")
    assert [g["global_steps"] for g in record.generations] == [600, 1200, 1800]  # the whole population's
    assert [m["steps"] for m in record.generations[-1]["members"]] == [600, 600, 600]
    assert record.meta["max_steps"] == 500 and record.meta["pop_size"] == 3
    err = capsys.readouterr().err
    assert "steps per member: 100%" in err and "600/600" in err  # the bar counts steps per member too


def test_progress_bar_total_is_the_steps_each_member_takes():
    from marlkit.training.evolution import planned_steps

    assert planned_steps(6_000, 4_000, 8) == 8_000  # the quick preset: two whole generations of 4,000 per member
    assert planned_steps(50_000, 5_000, 8) == 50_000
    assert planned_steps(100, 30, 8) == 120  # a member takes (30 // 8) * 8 = 24 steps per generation
    assert planned_steps(500, None, 1) == 500
