"""Training throughput of a MADDPG population on continuous Simple Speaker Listener.

The guide's configuration: population of 4 MADDPG agents, batch 32, learn_step 100, 8 sub-envs,
Ornstein-Uhlenbeck noise, tournament selection + mutations every 10,000 steps. Prints env steps per second
of the whole training function (acting, storing, learning, evaluating, evolving) and where the time goes,
and writes JSON.

    python benchmarks/train_off_policy.py                 # 100,000 env steps (the 4 members together)
    python benchmarks/train_off_policy.py --steps 20000   # quicker
"""

from __future__ import annotations

import argparse
import cProfile
import json
import platform
import pstats
import time
from pathlib import Path

import torch
from mpe2 import simple_speaker_listener_v4

from marlkit import (
    AsyncPettingZooVecEnv,
    MultiAgentReplayBuffer,
    Mutations,
    TournamentSelection,
    create_population,
    train_multi_agent_off_policy,
)

NET_CONFIG = {
    "speaker_0": {
        "encoder_config": {"hidden_size": [32, 32], "activation": "ReLU"},
        "head_config": {"hidden_size": [32]},
    },
    "listener_0": {
        "encoder_config": {"hidden_size": [32, 32], "activation": "ReLU"},
        "head_config": {"hidden_size": [32]},
    },
}
INIT_HP = {
    "BATCH_SIZE": 32,
    "O_U_NOISE": True,
    "EXPL_NOISE": 0.1,
    "MEAN_NOISE": 0.0,
    "THETA": 0.15,
    "DT": 0.01,
    "LR_ACTOR": 0.001,
    "LR_CRITIC": 0.001,
    "GAMMA": 0.95,
    "MEMORY_SIZE": 100000,
    "LEARN_STEP": 100,
    "TAU": 0.01,
    "POLICY_FREQ": 2,
    "POP_SIZE": 4,
}
# Functions whose cumulative time makes up the breakdown (name as cProfile reports it -> label).
PARTS = {
    "step": "env.step (vector env)",
    "get_action": "agent.get_action",
    "save_to_memory": "memory.save_to_memory",
    "sample": "memory.sample",
    "learn": "agent.learn",
    "test": "agent.test (evaluation)",
    "mutation": "mutations",
}


def run(steps: int, seed: int, run_dir: Path) -> float:
    num_envs = 8
    env = AsyncPettingZooVecEnv([lambda: simple_speaker_listener_v4.parallel_env(continuous_actions=True)] * num_envs)
    env.reset(seed=seed)
    agents = env.agents
    init_hp = {**INIT_HP, "AGENT_IDS": agents}
    pop = create_population(
        "MADDPG",
        [env.single_observation_space(a) for a in agents],
        [env.single_action_space(a) for a in agents],
        NET_CONFIG,
        init_hp,
        population_size=4,
        num_envs=num_envs,
        seed=seed,
    )
    memory = MultiAgentReplayBuffer(100_000, ["state", "action", "reward", "next_state", "done"], agents, seed=seed)
    tournament = TournamentSelection(2, True, 4, 1, rand_seed=seed)
    mutations = Mutations(0.2, 0.2, 0.2, 0.2, 0.0, 0.2, mutation_sd=0.1, rand_seed=seed)
    start = time.perf_counter()
    train_multi_agent_off_policy(
        env,
        "simple_speaker_listener_v4",
        "MADDPG",
        pop,
        memory,
        INIT_HP=init_hp,
        max_steps=steps // 4,  # max_steps is each member's budget; `steps` counts the whole population
        evo_steps=10_000,
        learning_delay=1000,
        tournament=tournament,
        mutation=mutations,
        verbose=False,
        seed=seed,
        run_dir=run_dir,
    )
    elapsed = time.perf_counter() - start
    env.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100_000, help="env steps of the whole population")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_off_policy.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)  # small MLPs: one thread beats two, and leaves a core to the env workers
    run_dir = Path("/tmp") / f"marlkit-bench-{time.time_ns()}"

    profiler = cProfile.Profile()
    profiler.enable()
    elapsed = run(args.steps, args.seed, run_dir)
    profiler.disable()
    stats = pstats.Stats(profiler)
    breakdown = {}
    for (_, _, name), (_, _, _, cumulative, _) in stats.stats.items():
        if name in PARTS:
            breakdown[PARTS[name]] = max(breakdown.get(PARTS[name], 0.0), cumulative)
    sps = args.steps / elapsed
    print("MADDPG x4, speaker-listener (continuous), 8 async sub-envs, batch 32, learn_step 100")
    print(f"{args.steps:,} env steps in {elapsed:.1f} s  ->  {sps:,.0f} env steps/s (under cProfile)")
    print(f"{'part':<28}{'seconds':>10}{'share':>8}")
    for label, seconds in sorted(breakdown.items(), key=lambda kv: -kv[1]):
        print(f"{label:<28}{seconds:>10.1f}{seconds / elapsed:>8.0%}")

    # A second run without the profiler gives the figure to report.
    elapsed_plain = run(args.steps, args.seed, run_dir.with_name(run_dir.name + "-plain"))
    sps_plain = args.steps / elapsed_plain
    print(
        f"without profiler: {elapsed_plain:.1f} s  ->  {sps_plain:,.0f} env steps/s "
        f"(reference library: 631 env steps/s; target >= 1,900)"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps(
            {
                "benchmark": "train_off_policy",
                "steps": args.steps,
                "seconds": elapsed_plain,
                "env_steps_per_s": sps_plain,
                "profiled_seconds": elapsed,
                "breakdown_seconds": breakdown,
                "machine": platform.platform(),
                "cpus": torch.get_num_threads(),
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
