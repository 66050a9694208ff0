"""Training throughput of a MADDPG population on continuous Simple Speaker Listener, and its hot path.

The guide's configuration: population of 4 MADDPG agents, batch 32, learn_step 100, Ornstein-Uhlenbeck
noise, tournament selection + mutations every 10,000 steps, on

* ``AsyncPettingZooVecEnv`` of 8 mpe2 envs (the guide's set-up), and
* ``SpeakerListenerVecEnv`` (the same env as batched numpy arrays) with 8, 64 and 512 sub-envs.

Prints env steps per second of the whole training function (acting, storing, learning, evaluating,
evolving) for each, and the per-call cost of the per-step hot path: ``get_action`` (2 agents x 8 rows),
``save_to_memory`` (8 rows) and ``sample`` (32 rows). ``--baseline DIR`` also times the hot path of another
marlkit checkout (e.g. ``git archive <commit> marlkit | tar -x -C DIR``) in a subprocess, for before/after.

    python benchmarks/train_off_policy.py                  # 40,000 env steps per row, table + JSON
    python benchmarks/train_off_policy.py --steps 20000 --profile
    python benchmarks/train_off_policy.py --micro-only --baseline /tmp/marlkit-before

The reference library (AgileRL) is not installed here, so only marlkit is measured; an earlier side-by-side
run on this machine measured marlkit 2,257 env steps/s and the reference 1,000 on the async env (8 sub-envs).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
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
FIELDS = ["state", "action", "reward", "next_state", "done"]
# (label, vector env kind, sub-envs) of the training-throughput table
CONFIGS = [
    ("async, 8", "async", 8),
    ("batched, 8", "batched", 8),
    ("batched, 64", "batched", 64),
    ("batched, 512", "batched", 512),
]
# Functions whose cumulative time makes up the --profile breakdown (name as cProfile reports it -> label).
PARTS = {
    "step": "env.step (vector env)",
    "get_action": "agent.get_action",
    "save_to_memory": "memory.save_to_memory",
    "sample": "memory.sample",
    "learn": "agent.learn",
    "test": "agent.test (evaluation)",
    "mutation": "mutations",
}


def make_env(kind: str, num_envs: int):
    if kind == "async":
        return AsyncPettingZooVecEnv(
            [lambda: simple_speaker_listener_v4.parallel_env(continuous_actions=True)] * num_envs
        )
    from marlkit import SpeakerListenerVecEnv

    return SpeakerListenerVecEnv(num_envs, continuous_actions=True)


def run(kind: str, num_envs: int, steps: int, seed: int, run_dir: Path) -> float:
    """Seconds that ``train_multi_agent_off_policy`` takes for ``steps`` env steps (whole population)."""
    env = make_env(kind, num_envs)
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
    memory = MultiAgentReplayBuffer(100_000, FIELDS, agents, seed=seed)
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


# ----- the per-step hot path --------------------------------------------------------------------------------
def best_us(fn, calls: int, repeats: int) -> float:
    """Best-of-``repeats`` microseconds per call of ``fn()``."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls * 1e6)
    return best


def micro(calls: int = 2_000, repeats: int = 7) -> dict[str, float]:
    """Microseconds per get_action (2 agents x 8 rows, training mode, O-U noise), save_to_memory (8 rows)
    and sample (32 rows), on the guide's networks with synthetic data."""
    env = simple_speaker_listener_v4.parallel_env(continuous_actions=True)
    ids = env.possible_agents
    obs_spaces = [env.observation_space(a) for a in ids]
    act_spaces = [env.action_space(a) for a in ids]
    (agent,) = create_population(
        "MADDPG",
        obs_spaces,
        act_spaces,
        NET_CONFIG,
        {**INIT_HP, "AGENT_IDS": ids},
        population_size=1,
        num_envs=8,
        seed=0,
    )
    rng = np.random.default_rng(0)
    obs = {a: rng.standard_normal((8, *s.shape)).astype(np.float32) for a, s in zip(ids, obs_spaces)}
    infos = {a: {"active": np.ones(8, dtype=bool)} for a in ids}
    action = {a: rng.uniform(0, 1, (8, *s.shape)).astype(np.float32) for a, s in zip(ids, act_spaces)}
    reward = {a: rng.standard_normal(8).astype(np.float32) for a in ids}
    done = {a: np.zeros(8, dtype=np.float32) for a in ids}
    memory = MultiAgentReplayBuffer(100_000, FIELDS, ids, seed=0)
    for _ in range(500):
        memory.save_to_memory(obs, action, reward, obs, done, is_vectorised=True)
    return {
        "get_action_us": best_us(lambda: agent.get_action(obs, infos=infos), calls, repeats),
        "save_to_memory_us": best_us(
            lambda: memory.save_to_memory(obs, action, reward, obs, done, is_vectorised=True), calls, repeats
        ),
        "sample_us": best_us(lambda: memory.sample(32), calls, repeats),
    }


def baseline_micro(baseline: Path) -> dict[str, float]:
    """``micro()`` of the marlkit package under ``baseline``, in a subprocess."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "micro.json"
        env = {**os.environ, "PYTHONPATH": str(baseline.resolve())}
        command = [sys.executable, __file__, "--micro-only", "--out", str(out), "--no-baseline-note"]
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
        return json.loads(out.read_text())["micro"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40_000, help="env steps per training run (whole population)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--micro-only", action="store_true", help="time the hot path only, no training")
    parser.add_argument("--baseline", type=Path, help="a folder holding another marlkit package, timed too")
    parser.add_argument("--profile", action="store_true", help="cProfile breakdown of the first training run")
    parser.add_argument("--no-baseline-note", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_off_policy.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)  # small MLPs: one thread beats two, and leaves a core to the env workers
    import marlkit

    result: dict = {"benchmark": "train_off_policy", "marlkit": str(Path(marlkit.__file__).parent)}
    result["micro"] = micro()
    if args.baseline is not None:
        result["micro_baseline"] = baseline_micro(args.baseline)
        result["baseline"] = str(args.baseline)
    if not args.no_baseline_note:
        print(
            f"{'hot path (us per call)':<28}{'this marlkit':>14}"
            + (f"{'baseline':>12}{'ratio':>8}" if args.baseline else "")
        )
        for key, label in (
            ("get_action_us", "get_action 2 agents x 8"),
            ("save_to_memory_us", "save_to_memory 8"),
            ("sample_us", "sample 32"),
        ):
            line = f"{label:<28}{result['micro'][key]:>14.1f}"
            if args.baseline is not None:
                before = result["micro_baseline"][key]
                line += f"{before:>12.1f}{before / result['micro'][key]:>7.2f}x"
            print(line)

    if not args.micro_only:
        rows = []
        root = Path(tempfile.mkdtemp(prefix="marlkit-bench-"))
        print(f"\nMADDPG x4, speaker-listener (continuous), batch 32, learn_step 100, {args.steps:,} env steps each")
        print(f"{'vector env, sub-envs':<24}{'seconds':>9}{'env steps/s':>13}{'vs async 8':>12}")
        for i, (label, kind, num_envs) in enumerate(CONFIGS):
            run_dir = root / f"{kind}-{num_envs}"
            if args.profile and i == 0:
                profiler = cProfile.Profile()
                profiler.enable()
                profiled = run(kind, num_envs, args.steps, args.seed, run_dir.with_name(run_dir.name + "-profiled"))
                profiler.disable()
                breakdown = {}
                for (_, _, name), (_, _, _, cumulative, _) in pstats.Stats(profiler).stats.items():
                    if name in PARTS:
                        breakdown[PARTS[name]] = max(breakdown.get(PARTS[name], 0.0), cumulative)
                result["profile"] = {"config": label, "seconds": profiled, "breakdown_seconds": breakdown}
            seconds = run(kind, num_envs, args.steps, args.seed, run_dir)
            rows.append(
                {
                    "config": label,
                    "env": kind,
                    "num_envs": num_envs,
                    "seconds": round(seconds, 2),
                    "env_steps_per_s": round(args.steps / seconds, 1),
                }
            )
            ratio = rows[-1]["env_steps_per_s"] / rows[0]["env_steps_per_s"]
            print(f"{label:<24}{seconds:>9.1f}{args.steps / seconds:>13,.0f}{ratio:>11.2f}x", flush=True)
        if "profile" in result:
            p = result["profile"]
            print(f"\ncProfile of '{p['config']}' ({p['seconds']:.1f} s under the profiler):")
            for part, seconds in sorted(p["breakdown_seconds"].items(), key=lambda kv: -kv[1]):
                print(f"  {part:<28}{seconds:>8.1f} s{seconds / p['seconds']:>6.0%}")
        result["steps"] = args.steps
        result["training"] = rows
        result["reference"] = "AgileRL not installed: marlkit alone (earlier side by side, async 8: 2,257 vs 1,000)"
        print("reference library: not installed here, so marlkit alone")
    result |= {
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "machine": platform.platform(),
        "torch_threads": torch.get_num_threads(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    if not args.no_baseline_note:
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
