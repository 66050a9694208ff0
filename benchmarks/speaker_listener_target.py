"""Does the `speaker-listener` preset learn to communicate? Complete runs, judged on fresh episodes.

For each run: `marlkit train --preset speaker-listener --seed S [--algo A] [--discrete]` as a subprocess (as
a user would), its env steps and wall time, then its elite on 1,000 fresh mpe2 episodes (seeds never used
in training) next to

* the same elite with its speaker shown a wrong goal (another landmark's colour): a listener that
  follows the message fails; one that parks at the centre does not care;
* hand-written listeners on the same episodes: heading for the landmarks' centre (the best without
  communication) and told the goal (perfect communication), a random team and one standing still;

and the listener's success rate (touching the goal landmark at the last step), with standard errors.
Also every final member on the same episodes (batched env: the same env, faster). Prints a table and
writes JSON.

    python benchmarks/speaker_listener_target.py                      # MATD3 seeds 0 1 2, MADDPG 0, discrete 0
    python benchmarks/speaker_listener_target.py --runs MATD3:0 --episodes 200 --parallel 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from marlkit.algorithms.base import read_checkpoint
from marlkit.envs.speaker_listener import LANDMARK_COLORS
from marlkit.evaluation import (
    agent_policy,
    baselines,
    communication_report,
    evaluate_team,
    wrong_goal_ablation,
)
from marlkit.hpo.population import algorithm_class
from marlkit.training.evolution import load_population
from marlkit.training.records import RunRecord

EVAL_SEED = 50_000  # far from the training seeds (training evaluations never reseed)


def train(spec: str, run_dir: Path) -> dict:
    """Run `marlkit train` for ``spec`` = ``ALGO:SEED`` or ``ALGO:SEED:discrete``; returns its wall time."""
    algo, seed, *rest = spec.split(":")
    command = [sys.executable, "-m", "marlkit", "train", "--preset", "speaker-listener", "--algo", algo,
               "--seed", seed, "--run-dir", str(run_dir), "--no-progress", "--final-episodes", "0"]
    if rest == ["discrete"]:
        command.append("--discrete")
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return {"algo": algo, "seed": int(seed), "discrete": rest == ["discrete"],
            "wall_s": round(time.perf_counter() - start, 1)}


def summary(result) -> dict:
    return {"mean": round(result.mean, 2), "stderr": round(result.stderr, 2),
            "success_rate": round(result.success_rate, 3)}


def judge(row: dict, run_dir: Path, episodes: int) -> dict:
    record = RunRecord.load(run_dir)
    row["env_steps"] = int(record.generations[-1]["global_steps"])
    row["env_steps_per_member"] = int(max(m["steps"] for m in record.generations[-1]["members"]))
    row["generations"] = len(record)
    row["fitness_curve"] = [[round(m["fitness"], 2) for m in g["members"]] for g in record.generations]
    elite = algorithm_class(read_checkpoint(run_dir / "elite.pt")["algo"]).load(run_dir / "elite.pt")
    if row["discrete"]:
        policy = agent_policy(elite)
        row["elite"] = summary(evaluate_team(policy, episodes, EVAL_SEED, continuous_actions=False))
        row["elite_wrong_goal"] = summary(wrong_goal_ablation(policy, episodes, EVAL_SEED, continuous_actions=False))
    else:
        report = communication_report(elite, episodes, EVAL_SEED)
        row["elite"] = summary(report["trained team"])
        row["elite_wrong_goal"] = summary(report["trained team, speaker shown a wrong goal"])
    members = load_population(run_dir / "checkpoints")
    row["members"] = sorted(
        (round(evaluate_team(agent_policy(a), episodes, EVAL_SEED, env="batched",
                             continuous_actions=not row["discrete"]).mean, 2) for a in members), reverse=True)
    messages = agent_policy(elite)({"speaker_0": LANDMARK_COLORS.astype(np.float32),
                                    "listener_0": np.zeros((3, 11), np.float32)})["speaker_0"]
    row["message_per_goal"] = np.round(np.asarray(messages, dtype=float), 3).tolist()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", default=["MATD3:0", "MATD3:1", "MATD3:2", "MADDPG:0", "MATD3:0:discrete"],
                        help="ALGO:SEED or ALGO:SEED:discrete")
    parser.add_argument("--episodes", type=int, default=1_000, help="fresh evaluation episodes")
    parser.add_argument("--parallel", type=int, default=2, help="training runs at once (the first runs alone)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "speaker_listener_target.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {spec: Path(tmp) / spec.replace(":", "-") for spec in args.runs}
        # the first run alone: its wall time is the one a user sees on an idle 2-core machine
        first = train(args.runs[0], dirs[args.runs[0]])
        first["alone"] = True
        rows.append(judge(first, dirs[args.runs[0]], args.episodes))
        print(json.dumps(rows[-1]), flush=True)
        with ThreadPoolExecutor(max(1, args.parallel)) as pool:
            done = list(pool.map(lambda spec: train(spec, dirs[spec]), args.runs[1:]))
        for spec, row in zip(args.runs[1:], done):
            row["alone"] = args.parallel <= 1
            rows.append(judge(row, dirs[spec], args.episodes))
            print(json.dumps(rows[-1]), flush=True)
    base = {name: summary(r) for name, r in baselines(args.episodes, EVAL_SEED).items()}

    print(f"\nspeaker-listener preset: elites on {args.episodes} fresh mpe2 episodes (summed score, ± standard error)")
    print(f"{'run':<20} {'env steps':>10} {'wall s':>7} {'elite':>13} {'wrong goal':>13} {'success':>8}  members")
    for r in rows:
        name = f"{r['algo']} seed {r['seed']}" + (" discrete" if r["discrete"] else "")
        wall = f"{r['wall_s']:.0f}" + ("" if r["alone"] else "*")
        print(f"{name:<20} {r['env_steps']:>10,} {wall:>7} {r['elite']['mean']:>7.1f} ± {r['elite']['stderr']:<3.1f}"
              f" {r['elite_wrong_goal']['mean']:>7.1f} ± {r['elite_wrong_goal']['stderr']:<3.1f}"
              f" {r['elite'].get('success_rate', float('nan')):>8.0%}  " + ", ".join(f"{m:.1f}" for m in r["members"]))
    print("* trained two runs at a time on the 2 CPUs")
    for name, b in base.items():
        print(f"{name:<40} {b['mean']:>7.1f} ± {b['stderr']:.1f}  success {b['success_rate']:.0%}")

    result = {"benchmark": "speaker_listener_target", "episodes": args.episodes, "eval_seed": EVAL_SEED,
              "runs": rows, "baselines": base, "torch": torch.__version__, "platform": platform.platform(),
              "cpus": len(os.sched_getaffinity(0))}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
