"""Env steps per second on Simple Speaker Listener: a plain loop vs the sync, async and batched vector envs.

    python benchmarks/vec_env.py                       # 1, 8, 64, 512, 1024, 4096 sub-envs, table + JSON
    python benchmarks/vec_env.py --duration 1 --repeats 1 --num-envs 8

For each number of sub-envs N we time three loops with random actions drawn up front (so the policy costs
nothing) and count N env steps per vector step:

* plain: one ``parallel_env`` through the PettingZoo API, reset when its agents are done (ignores N);
* sync:  ``SyncPettingZooVecEnv`` with N sub-envs;
* async: ``AsyncPettingZooVecEnv`` with N sub-envs and its default split (this process steps a share of
  the sub-envs while the workers step the rest; 2 CPUs, 8 sub-envs: 4 here and 4 in one worker);
* async-workers: the same env with every sub-env in workers, one worker per available CPU (the parent
  only waits), the split the default replaces;
* batched: ``SpeakerListenerVecEnv`` with N sub-envs, one numpy step for all of them, in this process
  (one core).

The PettingZoo vector envs are measured up to ``--max-pettingzoo-envs`` sub-envs (default 64): every mpe2
env holds a 700 x 700 drawing surface (2 MB), so thousands of them would take gigabytes.

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

from marlkit.envs.speaker_listener import SpeakerListenerVecEnv
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


def measure(num_envs: int, duration: float, repeats: int, num_workers: int | None, seed: int, pettingzoo: bool) -> dict:
    """Best env steps/s of each loop; repeats are interleaved so each loop meets the same load.

    pettingzoo: also time the sync and async vector envs of mpe2 envs (else only plain and batched).
    """
    loops = ["plain", "batched"] + (["sync", "async", "async_workers"] if pettingzoo else [])
    best: dict = {name: 0.0 for name in loops}
    with SpeakerListenerVecEnv(num_envs) as batched_env:
        envs = {"batched": batched_env}
        if pettingzoo:
            envs["sync"] = SyncPettingZooVecEnv([make_env] * num_envs)
            envs["async"] = AsyncPettingZooVecEnv([make_env] * num_envs, num_workers=num_workers)
            envs["async_workers"] = AsyncPettingZooVecEnv([make_env] * num_envs, num_workers=available_cpus())
            best["split"] = f"{envs['async'].main_process_envs} here + {envs['async'].num_workers} worker(s)"
        try:
            for _ in range(repeats):
                best["plain"] = max(best["plain"], plain_loop(duration, seed))
                for name, env in envs.items():
                    best[name] = max(best[name], vector_loop(env, duration, seed))
        finally:
            for name, env in envs.items():
                if name != "batched":
                    env.close()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-envs", type=int, nargs="+", default=[1, 8, 64, 512, 1024, 4096])
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per timed run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per loop; the best is kept")
    parser.add_argument(
        "--num-workers", type=int, default=None, help="workers of the async column (default: its default split)"
    )
    parser.add_argument(
        "--max-pettingzoo-envs", type=int, default=64, help="largest N for the sync and async envs of mpe2 envs"
    )
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/vec_env.json"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    load_before = os.getloadavg()
    rows = []
    print(
        f"{'sub-envs':>8} {'plain':>9} {'sync':>9} {'async':>9} {'async-workers':>14} {'batched':>10}"
        f" {'async/plain':>12} {'batched/plain':>14}   (env steps/s; async split)"
    )

    def cell(value: float | None, width: int) -> str:
        return f"{'-':>{width}}" if value is None else f"{value:>{width}.0f}"

    for num_envs in args.num_envs:
        pettingzoo = num_envs <= args.max_pettingzoo_envs
        best = measure(num_envs, args.duration, args.repeats, args.num_workers, args.seed, pettingzoo)
        plain, batched = best["plain"], best["batched"]
        sync, async_, workers = (best.get(k) for k in ("sync", "async", "async_workers"))
        row = {
            "num_envs": num_envs,
            "plain_steps_per_s": round(plain, 1),
            "batched_steps_per_s": round(batched, 1),
            "batched_over_plain": round(batched / plain, 2),
        }
        if pettingzoo:
            row |= {
                "async_split": best["split"],
                "sync_steps_per_s": round(sync, 1),
                "async_steps_per_s": round(async_, 1),
                "async_workers_only_steps_per_s": round(workers, 1),
                "async_over_plain": round(async_ / plain, 3),
                "async_workers_only_over_plain": round(workers / plain, 3),
                "sync_over_plain": round(sync / plain, 3),
            }
        rows.append(row)
        ratio = f"{async_ / plain:>11.2f}x" if pettingzoo else f"{'-':>12}"
        print(
            f"{num_envs:>8} {plain:>9.0f} {cell(sync, 9)} {cell(async_, 9)} {cell(workers, 14)} {batched:>10.0f}"
            f" {ratio} {batched / plain:>13.1f}x   {best.get('split', '')}",
            flush=True,
        )

    result = {
        "benchmark": "simple_speaker_listener_v4 (continuous), random actions drawn up front; "
        "batched = marlkit.SpeakerListenerVecEnv in one process",
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
