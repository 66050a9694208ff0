"""Training throughput of IPPO: a population of 4 on continuous Simple Speaker Listener.

    python benchmarks/train_on_policy.py                     # sync and async vector envs, table + JSON
    python benchmarks/train_on_policy.py --vec sync --generations 1

Setting (the guide's on-policy tutorial): 8 sub-envs, ``learn_step`` 2048, minibatches of 128, 4 epochs,
a population of 4 IPPO agents trained by ``train_multi_agent_on_policy`` (tournament and mutation off, so
only training and the per-generation evaluation are timed). Each member trains ``--evo-steps`` env steps
per generation.

Besides the overall rate (training env steps per second of wall time, evaluation included), the agents'
``get_action``, ``store_transition`` and ``learn`` are timed, so the table shows where a rollout's time
goes: acting and storing (the per-step hot path), ``env.step`` and the loop around it (the rest of the
rollout), and learning.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from marlkit.algorithms.ippo import IPPO
from marlkit.envs.makers import make_speaker_listener
from marlkit.envs.vector import AsyncPettingZooVecEnv, SyncPettingZooVecEnv, available_cpus
from marlkit.training.on_policy import train_multi_agent_on_policy

NUM_ENVS, POP_SIZE = 8, 4
INIT = {"learn_step": 2048, "batch_size": 128, "update_epochs": 4, "lr": 1e-3, "gamma": 0.95}
NET_CONFIG = {  # the guide's architecture, configured per group: IPPO shares networks within groups
    group: {"encoder_config": {"hidden_size": [32, 32], "activation": "ReLU"}, "head_config": {"hidden_size": [32]}}
    for group in ("speaker", "listener")
}
RESULTS = Path(__file__).parent / "results" / "train_on_policy.json"


def timed(agent: IPPO, name: str, clock: dict[str, float], calls: dict[str, int], state: dict) -> None:
    """Replace ``agent.<name>`` by a wrapper adding its wall time to ``clock[name]`` (``clock["eval_" + name]``
    while ``agent.test`` runs, so evaluation does not count as training)."""
    method = getattr(agent, name)

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        key = f"eval_{name}" if state["in_test"] else name
        state["in_test"] |= name == "test"
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            clock[key] += time.perf_counter() - start
            calls[key] += 1
            if name == "test":
                state["in_test"] = False

    setattr(agent, name, wrapper)


def run(vec: str, generations: int, evo_steps: int, seed: int) -> dict:
    env_fns = [make_speaker_listener] * NUM_ENVS
    env = SyncPettingZooVecEnv(env_fns) if vec == "sync" else AsyncPettingZooVecEnv(env_fns)
    agents = env.possible_agents
    pop = [
        IPPO([env.single_observation_space(a) for a in agents], [env.single_action_space(a) for a in agents], agents,
             index=i, net_config=NET_CONFIG, seed=seed + i, **INIT)
        for i in range(POP_SIZE)
    ]
    clock: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    state = {"in_test": False}
    for agent in pop:
        for name in ("get_action", "store_transition", "learn", "test"):
            timed(agent, name, clock, calls, state)
    max_steps = generations * evo_steps  # each member's budget (the population takes POP_SIZE times as many)
    try:
        with tempfile.TemporaryDirectory() as run_dir:
            start = time.perf_counter()
            train_multi_agent_on_policy(
                env, "simple_speaker_listener_v4", "IPPO", pop, max_steps=max_steps, evo_steps=evo_steps,
                eval_steps=25, eval_loop=1, tournament=None, mutation=None, verbose=False, run_dir=run_dir,
                seed=seed,
            )
            wall = time.perf_counter() - start
    finally:
        env.close()
    steps = sum(agent.steps[-1] for agent in pop)
    vector_steps = calls["store_transition"]  # one per training vector step
    rollout_s = wall - clock["learn"] - clock["test"]
    env_and_loop_s = rollout_s - clock["get_action"] - clock["store_transition"]
    return {
        "vec_env": vec,
        "env_steps": steps,
        "wall_s": round(wall, 2),
        "steps_per_s": round(steps / wall, 1),
        "rollout_steps_per_s": round(steps / rollout_s, 1),
        "get_action_ms_per_step": round(1e3 * clock["get_action"] / vector_steps, 3),
        "store_transition_ms_per_step": round(1e3 * clock["store_transition"] / vector_steps, 3),
        "env_and_loop_ms_per_step": round(1e3 * env_and_loop_s / vector_steps, 3),
        "learn_ms_per_call": round(1e3 * clock["learn"] / calls["learn"], 1),
        "learn_share": round(clock["learn"] / wall, 3),
        "evaluation_share": round(clock["test"] / wall, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vec", choices=["sync", "async", "both"], default="both")
    parser.add_argument("--generations", type=int, default=2)
    parser.add_argument("--evo-steps", type=int, default=4096, help="env steps per member per generation")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    load_before = os.getloadavg()
    rows = [run(vec, args.generations, args.evo_steps, args.seed)
            for vec in (("sync", "async") if args.vec == "both" else (args.vec,))]
    header = (f"{'vec env':>8} {'steps/s':>9} {'rollout/s':>10} {'act ms':>8} {'store ms':>9} {'env ms':>8} "
              f"{'learn ms':>9} {'learn %':>8}")
    print(header)
    for r in rows:
        print(f"{r['vec_env']:>8} {r['steps_per_s']:>9.0f} {r['rollout_steps_per_s']:>10.0f} "
              f"{r['get_action_ms_per_step']:>8.3f} {r['store_transition_ms_per_step']:>9.3f} "
              f"{r['env_and_loop_ms_per_step']:>8.3f} {r['learn_ms_per_call']:>9.1f} {100 * r['learn_share']:>7.1f}%")
    print("(ms per vector step of 8 sub-envs; learn ms per call on 2048 env steps)")
    result = {
        "benchmark": "IPPO population of 4, simple_speaker_listener_v4 (continuous), train_multi_agent_on_policy",
        "setting": {"num_envs": NUM_ENVS, "population": POP_SIZE, **INIT, "net_config": NET_CONFIG,
                    "generations": args.generations, "evo_steps": args.evo_steps},
        "unit": "training env steps per second of wall time (evaluation included); ms per vector step",
        "torch": torch.__version__,
        "threads": args.threads,
        "cpus_available": available_cpus(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "results": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
