"""Time to the guide's target: the `speaker-listener` preset (4 MATD3 agents) until every member's mean
over its last 3 evaluations is at least -30, for a few seeds.

For each seed: env steps and wall time of `marlkit train --preset speaker-listener --seed S` (run as a
subprocess, as a user would), the worst member's last-3 mean, and every final member scored on the same
1,000 fresh episodes as a scripted listener that parks at the centre of the landmarks (the best a
listener can roughly do without communication). Also the cost of one MATD3 `learn` call with the
preset's networks, with and without LayerNorm. Prints a table and writes JSON.

    python benchmarks/speaker_listener_target.py                  # seeds 0 1 2 (about 11 minutes on 2 CPUs)
    python benchmarks/speaker_listener_target.py --seeds 0 --episodes 200
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from marlkit import MATD3, MultiAgentReplayBuffer, SyncPettingZooVecEnv, make_speaker_listener
from marlkit.algorithms.base import episode_dones
from marlkit.presets import get_preset
from marlkit.training.evolution import TARGET_WINDOW, load_population
from marlkit.training.records import RunRecord

EVAL_ENVS = 100  # sub-envs per evaluation batch: one fresh episode each
EVAL_SEED = 50_000  # far from the training seeds; batch k resets with EVAL_SEED + k * EVAL_ENVS


def play(policy, batches: int) -> np.ndarray:
    """Returns summed over both agents of ``batches * EVAL_ENVS`` distinct fresh episodes."""
    returns = []
    with SyncPettingZooVecEnv([make_speaker_listener] * EVAL_ENVS) as env:
        for k in range(batches):
            # sub-env i of batch k is seeded with EVAL_SEED + k * EVAL_ENVS + i: no episode repeats
            obs, _ = env.reset(seed=EVAL_SEED + k * EVAL_ENVS)
            total, playing = np.zeros(EVAL_ENVS), np.ones(EVAL_ENVS, dtype=bool)
            while playing.any():
                obs, reward, termination, truncation, _ = env.step(policy(obs))
                total[playing] += sum(np.nan_to_num(reward[a]) for a in env.agents)[playing]
                playing &= ~episode_dones(termination, truncation)
            returns.append(total)
    return np.concatenate(returns)


def centre_listener(obs: dict) -> dict:
    """Scripted team: the speaker is silent; the listener steers, damped, to the landmarks' centre."""
    listener = obs["listener_0"]  # (E, 11): velocity (2), 3 landmarks relative to it (6), message (3)
    push = np.clip(3.0 * listener[:, 2:8].reshape(-1, 3, 2).mean(1) - listener[:, :2], -1.0, 1.0)
    actions = np.zeros((len(listener), 5), np.float32)  # [no-op, -x, +x, -y, +y]
    actions[:, 2], actions[:, 1] = push[:, 0].clip(0), (-push[:, 0]).clip(0)
    actions[:, 4], actions[:, 3] = push[:, 1].clip(0), (-push[:, 1]).clip(0)
    return {"speaker_0": np.zeros((len(listener), 3), np.float32), "listener_0": actions}


def learn_ms(layer_norm: bool, repeats: int = 3, calls: int = 200) -> float:
    """Best-of-``repeats`` ms of one MATD3 ``learn`` (batch 128) with the preset's networks."""
    preset = get_preset("speaker-listener")
    net_config = copy.deepcopy(preset["NET_CONFIG"])
    for config in net_config.values():
        config["encoder_config"]["layer_norm"] = config["head_config"]["layer_norm"] = layer_norm
    env = make_speaker_listener()
    ids = env.possible_agents
    agent = MATD3([env.observation_space(a) for a in ids], [env.action_space(a) for a in ids], ids,
                  net_config=net_config, seed=0)
    memory = MultiAgentReplayBuffer(4_000, ["state", "action", "reward", "next_state", "done"], ids, seed=0)
    rng = np.random.default_rng(0)
    for _ in range(500):
        obs = {a: rng.standard_normal((8, *env.observation_space(a).shape)).astype(np.float32) for a in ids}
        act = {a: rng.uniform(0, 1, (8, *env.action_space(a).shape)).astype(np.float32) for a in ids}
        memory.save_to_memory(obs, act, {a: rng.standard_normal(8) for a in ids}, obs,
                              {a: np.zeros(8) for a in ids}, is_vectorised=True)
    for _ in range(20):
        agent.learn(memory.sample(128))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            agent.learn(memory.sample(128))
        best = min(best, (time.perf_counter() - start) / calls * 1e3)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--episodes", type=int, default=1_000, help="fresh evaluation episodes (multiple of 100)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "speaker_listener_target.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    batches = max(1, args.episodes // EVAL_ENVS)

    centre = play(centre_listener, batches)
    rows = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            run_dir = Path(tmp) / "run"
            command = [sys.executable, "-m", "marlkit", "train", "--preset", "speaker-listener", "--seed", str(seed),
                       "--run-dir", str(run_dir), "--no-progress"]
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            wall = time.perf_counter() - start
            steps = RunRecord.load(run_dir).generations[-1]["global_steps"]
            pop = load_population(run_dir / "checkpoints")  # saved when training stopped, fitness histories included
            # the stopping rule's number (marlkit.training.evolution.target_reached): the worst last-3 mean
            worst = min(float(np.mean(agent.fitness[-TARGET_WINDOW:])) for agent in pop)
            members = []
            for agent in pop:
                agent.set_training_mode(False)
                members.append(float(play(lambda obs, agent=agent: agent.get_action(obs)[0], batches).mean()))
            rows.append({"seed": seed, "env_steps": int(steps), "wall_s": round(wall, 1),
                         "worst_last3_mean": round(worst, 2),
                         "fresh_member_means": [round(m, 2) for m in sorted(members, reverse=True)]})
        print(f"seed {seed}: {rows[-1]}", flush=True)
    learn = {"layer_norm": round(learn_ms(True), 2), "no_layer_norm": round(learn_ms(False), 2)}

    print(f"\nspeaker-listener preset to target -30 (every member's last-3 mean), {len(centre)} fresh episodes")
    print(f"{'seed':>4} {'env steps':>10} {'wall s':>7} {'worst last-3':>13}  final members (fresh episodes)")
    for r in rows:
        print(f"{r['seed']:>4} {r['env_steps']:>10,} {r['wall_s']:>7.1f} {r['worst_last3_mean']:>13.2f}  "
              + ", ".join(f"{m:.1f}" for m in r["fresh_member_means"]))
    stderr = centre.std() / np.sqrt(len(centre))
    print(f"centre listener on the same episodes: {centre.mean():.1f} (standard error {stderr:.1f})")
    print(f"one MATD3 learn, batch 128: {learn['layer_norm']} ms with LayerNorm, {learn['no_layer_norm']} ms without")

    result = {"benchmark": "speaker_listener_target", "target": -30.0, "episodes": len(centre),
              "centre_listener": round(float(centre.mean()), 2), "runs": rows, "learn_ms": learn,
              "torch": torch.__version__, "platform": platform.platform(), "cpus": len(os.sched_getaffinity(0))}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
