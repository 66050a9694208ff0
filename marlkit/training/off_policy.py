"""``train_multi_agent_off_policy``: evolutionary training of MADDPG / MATD3 populations.

Per generation, each member in turn acts in the vector env for ``evo_steps`` env steps, storing every
transition in the replay buffer the whole population shares and learning every ``learn_step`` steps;
then the population is evaluated, recorded and evolved (``marlkit.training.evolution``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from marlkit.training.evolution import EpisodeScores, GenerationLoop, check_common_args, seed_everything


def next_obs_for_buffer(next_obs: Mapping[str, np.ndarray], infos: Mapping[str, Mapping]) -> dict[str, np.ndarray]:
    """The observation each transition really led to.

    With same-step autoreset the vector env returns the *first* observation of the next episode for a
    sub-env that just finished; the last observation of the finished episode is in
    ``infos[agent]["final_observation"]``. A truncated transition must be bootstrapped from the latter,
    so it is what the buffer stores.
    """
    out = {}
    for agent, obs in next_obs.items():
        info = infos.get(agent, {})
        mask = info.get("_final_observation")
        if mask is not None and np.any(mask):
            obs = obs.copy()
            obs[mask] = np.asarray(info["final_observation"])[mask]
        out[agent] = obs
    return out


def train_multi_agent_off_policy(
    env: Any,
    env_name: str,
    algo: str,
    pop: list,
    memory: Any,
    INIT_HP: Mapping[str, Any] | None = None,
    MUT_P: Mapping[str, Any] | None = None,
    net_config: Mapping[str, Any] | None = None,
    sum_scores: bool = True,
    max_steps: int = 50_000,
    evo_steps: int = 500,
    eval_steps: int | None = None,
    eval_loop: int = 1,
    learning_delay: int = 0,
    target: float | None = None,
    tournament: Any = None,
    mutation: Any = None,
    checkpoint: int | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    save_elite: bool = False,
    elite_path: str | os.PathLike | None = None,
    wb: bool = False,
    verbose: bool = True,
    accelerator: Any = None,
    seed: int | None = None,
    run_dir: str | os.PathLike | None = None,
    on_generation: Any = None,
) -> tuple[list, list[list[float]]]:
    """Train a population of off-policy agents with evolutionary HPO.

    Args follow the guide. Beyond it: ``checkpoint`` (save the population every this many env steps per
    member, into ``checkpoint_path``, default ``<run_dir>/checkpoints``), ``save_elite``/``elite_path`` (save
    the best agent after each generation, default ``<run_dir>/elite.pt``), ``seed`` (seeds torch/NumPy and
    the env resets), ``run_dir`` (where the run record ``generations.jsonl`` goes; default
    ``runs/<env_name>-<algo>-<time>``), ``on_generation`` (called with each generation's record line,
    e.g. by the live training widget).

    ``max_steps`` is the budget of *each member*, in env steps (``agent.steps[-1]``), as in the guide's
    custom loop: a population of 4 with ``max_steps=200_000`` takes 800,000 env steps in all. Training
    stops at the end of the generation in which the members reach it (each member takes
    ``(evo_steps // num_envs) * num_envs`` env steps per generation).

    Early stopping: training stops once every member's mean fitness over its last 3 evaluations is at
    least ``target``.

    Returns:
        ``(pop, pop_fitnesses)``: the final population and one list of member fitnesses per generation.
    """
    num_envs = int(getattr(env, "num_envs", 1))
    check_common_args(accelerator, wb, pop, evo_steps, num_envs)
    seed_everything(seed)
    loop = GenerationLoop(
        env=env,
        env_name=env_name,
        algo=algo,
        pop=pop,
        max_steps=max_steps,
        eval_steps=eval_steps,
        eval_loop=eval_loop,
        target=target,
        tournament=tournament,
        mutation=mutation,
        sum_scores=sum_scores,
        checkpoint=checkpoint,
        checkpoint_path=checkpoint_path,
        save_elite=save_elite,
        elite_path=elite_path,
        wb=wb,
        verbose=verbose,
        run_dir=run_dir,
        seed=seed,
        on_generation=on_generation,
        meta={
            "INIT_HP": dict(INIT_HP or {}),
            "MUT_P": dict(MUT_P or {}),
            "net_config": net_config,
            "seed": seed,
            "evo_steps": evo_steps,
            "learning_delay": learning_delay,
            "num_envs": num_envs,
        },
    )

    def train_member(agent, obs, info, scores: EpisodeScores) -> int:
        """Act, store and learn for ``evo_steps`` env steps; returns the steps taken."""
        agent.reset_action_noise()
        for idx_step in range(evo_steps // num_envs):
            action, raw_action = agent.get_action(obs, infos=info)
            next_obs, reward, termination, truncation, info = env.step(action)
            memory.save_to_memory(
                obs, raw_action, reward, next_obs_for_buffer(next_obs, info), termination, is_vectorised=True
            )
            loop.train_step_done(num_envs)

            # Learn every learn_step env steps (several times per step when learn_step < num_envs).
            learns = learn_count(agent.learn_step, num_envs, idx_step)
            if learns and len(memory) >= agent.batch_size and memory.counter > learning_delay:
                for _ in range(learns):
                    agent.learn(memory.sample(agent.batch_size))

            finished = scores.update(reward, termination, truncation)
            if finished.size:
                agent.reset_action_noise(finished)
            obs = next_obs
        return (evo_steps // num_envs) * num_envs

    return loop.run(train_member)


def learn_count(learn_step: int, num_envs: int, idx_step: int) -> int:
    """How many ``learn`` calls the vector step ``idx_step`` owes, learning once per ``learn_step`` env steps.

    ``learn_step >= num_envs``: once every ``learn_step // num_envs`` vector steps.
    ``learn_step < num_envs``: ``num_envs // learn_step`` times every vector step.
    """
    if learn_step >= num_envs:
        return int(idx_step % (learn_step // num_envs) == 0)
    return num_envs // learn_step
