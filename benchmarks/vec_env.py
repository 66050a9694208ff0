"""Env steps per second on Simple Speaker Listener: a plain loop vs the sync and async vector envs.

    python benchmarks/vec_env.py                       # 1, 2, 4, 8, 16 sub-envs, table + JSON
    python benchmarks/vec_env.py --duration 1 --repeats 1 --num-envs 8

For each number of sub-envs N we time three loops with random actions drawn up front (so the policy costs
nothing) and count N env steps per vector step:

* plain: one ``parallel_env`` through the PettingZoo API, reset when its agents are done (ignores N);
* sync:  ``SyncPettingZooVecEnv`` with N sub-envs;
* async: ``AsyncPettingZooVecEnv`` with N sub-envs and its default split (this process steps a share of
  the sub-envs while the workers step the rest; 2 CPUs, 8 sub-envs: 4 here and 4 in one worker);
* async-workers: the same env with every sub-env in workers, one worker per available CPU (the parent
  only waits), the split the default replaces.

Each loop runs ``--repeats`` times for ``--duration`` seconds, the three loops taking turns, and the best
rate is kept, since other processes on the machine can only slow a run down. The plain loop is re-measured
for every N so that each async/plain ratio compares runs taken at nearly the same time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from mpe2 import simple_speaker_listener_v4

from marlkit.envs.vector import AsyncPettingZooVecEnv, SyncPettingZooVecEnv
from marlkit.envs.worker import available_cpus

ACTION_POOL = 64  # distinct random action batches, cycled through


def make_env():
    return simple_speaker_listener_v4.parallel_env(continuous_actions=True)


def random_actions(action_space, agents: list[str], batch: tuple[int, ...], seed: int) -> list[dict]:
    """ACTION_POOL dicts {agent: float32 array batch + action_shape} uniform in the (0, 1) Box."""
    rng = np.random.default_rng(seed)
    return [
        {agent: rng.uniform(0.0, 1.0, batch + action_space(agent).shape).astype(np.float32) for agent in agents}
        for _ in range(ACTION_POOL)
    ]


def plain_loop(duration: float, seed: int) -> float:
    """Env steps/s of one env driven directly through the PettingZoo parallel API."""
    env = make_env()
    env.reset(seed=seed)
    pool = random_actions(env.action_space, env.possible_agents, (), seed)
    steps = 0
    start = time.perf_counter()
    while time.perf_counter() - start < duration:
        for actions in pool:
            env.step({agent: actions[agent] for agent in env.agents})
            if not env.agents:
                env.reset()
        steps += ACTION_POOL
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def vector_loop(env, duration: float, seed: int) -> float:
    """Env steps/s of a vector env (num_envs env steps per call to step)."""
    pool = random_actions(env.single_action_space, env.possible_agents, (env.num_envs,), seed)
    env.reset(seed=seed)
    for actions in pool[:8]:  # warm up (first-touch page faults, caches)
        env.step(actions)
    steps = 0
    start = time.perf_counter()
    while time.perf_counter() - start < duration:
        for actions in pool:
            env.step(actions)
        steps += ACTION_POOL * env.num_envs
    return steps / (time.perf_counter() - start)


def measure(num_envs: int, duration: float, repeats: int, num_workers: int | None, seed: int) -> dict:
    """Best env steps/s of the four loops; repeats are interleaved so each loop meets the same load."""
    with (
        SyncPettingZooVecEnv([make_env] * num_envs) as sync_env,
        AsyncPettingZooVecEnv([make_env] * num_envs, num_workers=num_workers) as async_env,
        AsyncPettingZooVecEnv([make_env] * num_envs, num_workers=available_cpus()) as workers_env,
    ):
        best = {"plain": 0.0, "sync": 0.0, "async": 0.0, "async_workers": 0.0}
        for _ in range(repeats):
            best["plain"] = max(best["plain"], plain_loop(duration, seed))
            best["sync"] = max(best["sync"], vector_loop(sync_env, duration, seed))
            best["async"] = max(best["async"], vector_loop(async_env, duration, seed))
            best["async_workers"] = max(best["async_workers"], vector_loop(workers_env, duration, seed))
        best["split"] = f"{async_env.main_process_envs} here + {async_env.num_workers} worker(s)"
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-envs", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per timed run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per loop; the best is kept")
    parser.add_argument(
        "--num-workers", type=int, default=None, help="workers of the async column (default: its default split)"
    )
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/vec_env.json"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    load_before = os.getloadavg()
    rows = []
    print(
        f"{'sub-envs':>8} {'plain':>9} {'sync':>9} {'async':>9} {'async-workers':>14} {'async/plain':>12}"
        f"   (env steps/s; async split)"
    )
    for num_envs in args.num_envs:
        best = measure(num_envs, args.duration, args.repeats, args.num_workers, args.seed)
        plain, sync, async_, workers = best["plain"], best["sync"], best["async"], best["async_workers"]
        rows.append(
            {
                "num_envs": num_envs,
                "async_split": best["split"],
                "plain_steps_per_s": round(plain, 1),
                "sync_steps_per_s": round(sync, 1),
                "async_steps_per_s": round(async_, 1),
                "async_workers_only_steps_per_s": round(workers, 1),
                "async_over_plain": round(async_ / plain, 3),
                "async_workers_only_over_plain": round(workers / plain, 3),
                "sync_over_plain": round(sync / plain, 3),
            }
        )
        print(
            f"{num_envs:>8} {plain:>9.0f} {sync:>9.0f} {async_:>9.0f} {workers:>14.0f} {async_ / plain:>11.2f}x"
            f"   {best['split']}",
            flush=True,
        )

    result = {
        "benchmark": "simple_speaker_listener_v4 (continuous), random actions drawn up front",
        "unit": "env steps per second (num_envs per vector step), best of repeats",
        "duration_s": args.duration,
        "repeats": args.repeats,
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
    print(f"load average before {result['load_average_before']}, after {result['load_average_after']}")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
