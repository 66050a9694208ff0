"""The ``marlkit`` command line: ``train``, ``evaluate`` and ``render``.

    marlkit train --preset speaker-listener --algo MATD3 --quick
    marlkit train --preset speaker-listener --env-impl mpe2      # the guide's mpe2 envs in worker processes
    marlkit train --preset space-invaders --config my_hp.yaml --max-steps 100000   # env steps per member
    marlkit evaluate runs/<run>/elite.pt --episodes 10
    marlkit render runs/<run>/elite.pt --out elite.gif

As in the guide, ``--max-steps`` (and a preset's ``max_steps``) is the budget of each member of the
population, in env steps. Bad flags, a missing file or an unknown preset print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from marlkit.presets import PRESETS, get_preset

OFF_POLICY = ("MADDPG", "MATD3")


class CLIError(Exception):
    """A user error: printed as one line, exit code 2."""


def make_env_factory(env: str, **env_kwargs: Any):
    """A picklable-by-cloudpickle factory for the named environment."""
    from marlkit.envs.makers import make_space_invaders, make_speaker_listener

    makers = {"speaker-listener": make_speaker_listener, "space-invaders": make_space_invaders}
    if env not in makers:
        raise CLIError(f"unknown environment {env!r}; expected one of {sorted(makers)}")
    maker = makers[env]
    return lambda: maker(**env_kwargs)


def make_vec_env(env: str, env_impl: str, num_envs: int, **env_kwargs: Any):
    """The vector env: ``"batched"`` is ``SpeakerListenerVecEnv`` (one numpy step for every sub-env, equal
    to mpe2); ``"mpe2"``/``"pettingzoo"`` is the guide's ``AsyncPettingZooVecEnv``."""
    from marlkit import SpeakerListenerVecEnv, make_multi_agent_vect_envs

    if env_impl == "batched":
        if env != "speaker-listener":
            raise CLIError(f"env_impl 'batched' exists for speaker-listener only, not {env!r}")
        return SpeakerListenerVecEnv(num_envs, **env_kwargs)
    if env_impl not in ("mpe2", "pettingzoo"):
        raise CLIError(f"unknown env_impl {env_impl!r}; expected 'batched', 'mpe2' or 'pettingzoo'")
    return make_multi_agent_vect_envs(make_env_factory(env, **env_kwargs), num_envs=num_envs)


def load_overrides(path: str | None) -> dict[str, Any]:
    """Read a YAML file with optional top-level keys INIT_HP, NET_CONFIG, MUT_P, hp_config, train."""
    if path is None:
        return {}
    file = Path(path)
    if not file.is_file():
        raise CLIError(f"config file not found: {path}")
    data = yaml.safe_load(file.read_text()) or {}
    allowed = {"INIT_HP", "NET_CONFIG", "MUT_P", "hp_config", "train"}
    unknown = sorted(set(data) - allowed) if isinstance(data, dict) else ["<not a mapping>"]
    if unknown:
        raise CLIError(f"{path}: unknown top-level key(s) {unknown}; expected some of {sorted(allowed)}")
    return data


def build_run(preset: dict[str, Any], seed: int, pop_size: int | None = None):
    """Env, population, buffer, tournament and mutations for a preset (what the guide sets up by hand)."""
    from marlkit import (
        HyperparameterConfig,
        MultiAgentReplayBuffer,
        Mutations,
        TournamentSelection,
        create_population,
    )

    train = preset["train"]
    init_hp = dict(preset["INIT_HP"])
    if pop_size is not None:
        init_hp["POP_SIZE"] = pop_size
    env_impl = preset.get("env_impl") or preset["env_impls"][0]
    env = make_vec_env(preset["env"], env_impl, train["num_envs"], **preset["env_kwargs"])
    try:
        env.reset(seed=seed)
        agent_ids = list(env.agents)
        init_hp["AGENT_IDS"] = agent_ids
        hp_config = HyperparameterConfig.from_dict(preset["hp_config"]) if preset.get("hp_config") else None
        pop = create_population(
            preset["algo"],
            [env.single_observation_space(a) for a in agent_ids],
            [env.single_action_space(a) for a in agent_ids],
            preset["NET_CONFIG"],
            init_hp,
            hp_config,
            population_size=init_hp["POP_SIZE"],
            num_envs=train["num_envs"],
            seed=seed,
        )
        memory = None
        if preset["algo"] in OFF_POLICY:
            memory = MultiAgentReplayBuffer(
                init_hp["MEMORY_SIZE"], ["state", "action", "reward", "next_state", "done"], agent_ids, seed=seed
            )
        tournament = TournamentSelection(
            train["tournament_size"], train["elitism"], init_hp["POP_SIZE"], train["eval_loop"], rand_seed=seed
        )
        mut = preset["MUT_P"]
        mutations = Mutations(
            no_mutation=mut["NO_MUT"],
            architecture=mut["ARCH_MUT"],
            new_layer_prob=mut["NEW_LAYER"],
            parameters=mut["PARAMS_MUT"],
            activation=mut["ACT_MUT"],
            rl_hp=mut["RL_HP_MUT"],
            mutation_sd=mut["MUT_SD"],
            rand_seed=seed,
        )
    except BaseException:
        env.close()
        raise
    return env, pop, memory, tournament, mutations, init_hp


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from marlkit import train_multi_agent_off_policy, train_multi_agent_on_policy
    from marlkit.plotting import plot_fitness, plot_hyperparameters

    # Small networks run fastest on one thread; a second thread would fight the env workers for the CPU.
    torch.set_num_threads(args.threads)
    preset = get_preset(args.preset, args.algo, quick=args.quick, env_impl=args.env_impl)
    if args.discrete:
        if "continuous_actions" not in preset["env_kwargs"]:
            raise CLIError(f"--discrete: preset {args.preset!r} has no continuous/discrete action switch")
        preset["env_kwargs"]["continuous_actions"] = False
    overrides = load_overrides(args.config)
    for key in ("INIT_HP", "NET_CONFIG", "MUT_P", "hp_config", "train"):
        if key in overrides:
            if key == "NET_CONFIG":
                preset[key] = overrides[key]  # an architecture is replaced, not merged
            else:
                preset[key].update(overrides[key])
    for flag in ("max_steps", "evo_steps", "num_envs", "target"):
        value = getattr(args, flag)
        if value is not None:
            preset["train"][flag] = value
    train = preset["train"]
    from marlkit.training.records import RunRecord, make_run_dir

    run_dir = make_run_dir(args.preset, preset["algo"], root=args.runs, path=args.run_dir)
    (run_dir / "config.yaml").write_text(
        yaml.safe_dump({k: v for k, v in preset.items() if k != "algos"}, sort_keys=False)
    )
    env, pop, memory, tournament, mutations, init_hp = build_run(preset, args.seed, args.pop_size)
    common = dict(
        env_name=args.preset,
        algo=preset["algo"],
        pop=pop,
        INIT_HP=init_hp,
        MUT_P=preset["MUT_P"],
        net_config=preset["NET_CONFIG"],
        max_steps=train["max_steps"],
        evo_steps=train["evo_steps"],
        eval_steps=train.get("eval_steps"),
        eval_loop=train["eval_loop"],
        target=train["target"],
        tournament=tournament,
        mutation=mutations,
        save_elite=True,
        checkpoint=train["max_steps"] // 4 or None,  # per member, like max_steps: 4 checkpoints a run
        verbose=not args.no_progress,
        seed=args.seed,
        run_dir=run_dir,
    )
    try:
        if preset["algo"] in OFF_POLICY:
            pop, _ = train_multi_agent_off_policy(env, memory=memory, learning_delay=train["learning_delay"], **common)
        else:
            pop, _ = train_multi_agent_on_policy(env, **common)
    finally:
        env.close()
    RunRecord(run_dir).write_meta(env_impl=preset["env_impl"])
    if len(preset["env_impls"]) > 1 and args.final_episodes > 0:
        final_evaluation(preset, run_dir, args.final_episodes, args.seed)
    plot_fitness(run_dir, save_path=run_dir / "fitness.png")
    plot_hyperparameters(run_dir, save_path=run_dir / "hyperparameters.png")
    print(f"fitness plot:    {run_dir / 'fitness.png'}")
    print(f"elite checkpoint: {run_dir / 'elite.pt'}")
    print(f"run record:      {run_dir / 'generations.jsonl'}")
    return 0


def final_evaluation(preset: dict[str, Any], run_dir: Path, episodes: int, seed: int) -> dict[str, float]:
    """Score the saved elite on every env implementation of the preset (``marlkit.evaluation``), on the same
    fresh episodes, and, with continuous actions, next to the baselines that expose the centre trick.

    The batched env is mpe2 step for step, so the scores agree (to float rounding); printing both shows
    it, and guards the claim. They are printed and stored in ``run.json`` as ``final_evaluation``.
    """
    from marlkit.algorithms.base import read_checkpoint
    from marlkit.evaluation import agent_policy, evaluate_team
    from marlkit.hpo.population import algorithm_class
    from marlkit.training.records import RunRecord

    elite_path = run_dir / "elite.pt"
    elite = algorithm_class(read_checkpoint(elite_path)["algo"]).load(elite_path)
    eval_seed = seed + 1_000_000  # episodes that no member met in training (sub-env i gets eval_seed + i)
    continuous = preset["env_kwargs"].get("continuous_actions", True)
    results = {
        impl: evaluate_team(agent_policy(elite), episodes, eval_seed, env=impl, continuous_actions=continuous)
        for impl in preset["env_impls"]
    }
    scores = {impl: result.mean for impl, result in results.items()}
    print(
        f"final elite on the same {episodes} fresh episodes: "
        + ", ".join(f"{impl} {score:.3f}" for impl, score in scores.items())
    )
    final = {"episodes": episodes, "seed": eval_seed, "elite": str(elite_path.name), "scores": scores}
    if continuous:
        final["communication"] = communication_check(elite, results["batched"], episodes, eval_seed)
    RunRecord(run_dir).write_meta(final_evaluation=final)
    return scores


def communication_check(elite, team, episodes: int, seed: int) -> dict[str, float]:
    """Does the elite communicate? Its score (``team``, already played on these episodes) next to the
    wrong-message ablation and the two scripted listeners (centre: no communication; told the goal: perfect)."""
    from marlkit.evaluation import agent_policy, evaluate_team, scripted_team, wrong_goal_ablation

    results = {
        "trained team": team,
        "trained team, speaker shown a wrong goal": wrong_goal_ablation(agent_policy(elite), episodes, seed, "batched"),
        "centre listener": evaluate_team(scripted_team(False), episodes, seed, env="batched"),
        "listener told the goal": evaluate_team(scripted_team(True), episodes, seed, env="batched"),
    }
    print(
        "does it communicate? "
        + "; ".join(f"{name} {r.mean:.1f} (success {r.success_rate:.0%})" for name, r in results.items())
    )
    return {name: round(r.mean, 3) for name, r in results.items()}


def _load_agent_and_env(checkpoint: str, env_name: str | None):
    from marlkit.algorithms.base import read_checkpoint
    from marlkit.hpo.population import algorithm_class

    path = Path(checkpoint)
    if not path.is_file():
        raise CLIError(f"checkpoint not found: {checkpoint}")
    try:
        ckpt = read_checkpoint(path)
    except ValueError as err:
        raise CLIError(str(err)) from err
    agent = algorithm_class(ckpt["algo"]).load(path)
    meta_file = path.parent / "run.json"
    if env_name is None and meta_file.is_file():
        env_name = json.loads(meta_file.read_text()).get("env_name")
    if env_name is None:
        raise CLIError(f"cannot tell which environment {checkpoint} was trained on; pass --env {{{','.join(PRESETS)}}}")
    if env_name not in PRESETS:
        raise CLIError(f"unknown environment {env_name!r}; expected one of {sorted(PRESETS)}")
    env_kwargs = dict(PRESETS[env_name]["env_kwargs"])
    if ckpt["action_spaces"][0]["type"] == "Discrete" and env_name == "speaker-listener":
        env_kwargs["continuous_actions"] = False
    return agent, env_name, env_kwargs


def cmd_evaluate(args: argparse.Namespace) -> int:
    from marlkit import SyncPettingZooVecEnv

    agent, env_name, env_kwargs = _load_agent_and_env(args.checkpoint, args.env)
    factory = make_env_factory(env_name, **env_kwargs)
    with SyncPettingZooVecEnv([factory] * args.episodes) as env:
        env.reset(seed=args.seed)
        fitness = agent.test(env, max_steps=args.max_steps, loop=1)
    print(f"{agent.algo} agent {agent.index}: mean score {fitness:.3f} over {args.episodes} episodes of {env_name}")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation, PillowWriter

    from marlkit import SyncPettingZooVecEnv

    agent, env_name, env_kwargs = _load_agent_and_env(args.checkpoint, args.env)
    factory = make_env_factory(env_name, render_mode="rgb_array", **env_kwargs)
    frames, total = [], 0.0
    agent.set_training_mode(False)
    with SyncPettingZooVecEnv([factory]) as env:
        obs, info = env.reset(seed=args.seed)
        for _ in range(args.max_steps):
            frames.append(env.render())
            obs, reward, term, trunc, info = env.step(agent.get_action(obs, infos=info)[0])
            total += float(np.nansum([r[0] for r in reward.values()]))
            if all(bool(term[a][0]) or bool(trunc[a][0]) for a in term):
                break
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.axis("off")
    image = ax.imshow(frames[0])
    anim = FuncAnimation(fig, lambda i: [image.set_data(frames[i])], frames=len(frames))
    anim.save(args.out, writer=PillowWriter(fps=args.fps))
    plt.close(fig)
    print(f"wrote {args.out}: {len(frames)} frames, episode score {total:.2f}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="marlkit", description="Multi-agent RL with evolutionary HPO.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="evolutionary training run from a preset")
    t.add_argument("--preset", default="speaker-listener", help=f"one of {sorted(PRESETS)}")
    t.add_argument("--algo", choices=("MADDPG", "MATD3", "IPPO"), help="default: the preset's")
    t.add_argument("--config", help="YAML with INIT_HP / NET_CONFIG / MUT_P / hp_config / train overrides")
    t.add_argument("--quick", action="store_true",
                   help="a short run: the preset's quick budget (a few minutes on 2 cores)")
    t.add_argument("--max-steps", type=int, help="env steps of each member (the guide's max_steps)")
    t.add_argument("--evo-steps", type=int, help="env steps of each member per generation")
    t.add_argument("--num-envs", type=int)
    t.add_argument("--pop-size", type=int, help="members (each gets --max-steps env steps)")
    t.add_argument("--target", type=float)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument(
        "--env-impl",
        help="how the env is simulated: one of the preset's env_impls (speaker-listener: 'batched', the "
        "default, or 'mpe2', the guide's PettingZoo envs in worker processes)",
    )
    t.add_argument("--discrete", action="store_true", help="speaker-listener with Discrete actions (default: Box)")
    t.add_argument(
        "--final-episodes",
        type=int,
        default=100,
        help="fresh episodes on which the final elite is scored with every env implementation (0: skip)",
    )
    t.add_argument("--runs", default="runs", help="parent folder of run directories")
    t.add_argument("--run-dir", help="exact run directory (default: runs/<preset>-<algo>-<time>)")
    t.add_argument("--no-progress", action="store_true")
    t.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: best for small MLPs)")
    t.set_defaults(func=cmd_train)

    for name, func, help_text in (
        ("evaluate", cmd_evaluate, "mean score of a saved agent"),
        ("render", cmd_render, "GIF of a saved agent playing"),
    ):
        c = sub.add_parser(name, help=help_text)
        c.add_argument("checkpoint")
        c.add_argument("--env", choices=sorted(PRESETS), help="default: read from the run directory")
        c.add_argument("--seed", type=int, default=0)
        c.add_argument("--max-steps", type=int, default=None if name == "evaluate" else 500)
        if name == "evaluate":
            c.add_argument("--episodes", type=int, default=10)
        else:
            c.add_argument("--out", default="agent.gif")
            c.add_argument("--fps", type=int, default=10)
        c.set_defaults(func=func)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    # argparse exits with 2 and a usage line on bad flags; keep its behaviour.
    args = p.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CLIError, ValueError, FileNotFoundError) as err:
        print(f"marlkit {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
