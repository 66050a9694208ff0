"""``train_multi_agent_on_policy``: evolutionary training of IPPO populations.

Per generation, each member in turn collects rollouts of ``learn_step`` env steps with its own policy
and learns from them (on-policy data cannot be shared between members, so there is no replay buffer);
then the population is evaluated, recorded and evolved (``marlkit.training.evolution``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from marlkit.training.evolution import EpisodeScores, GenerationLoop, check_common_args, seed_everything


def train_multi_agent_on_policy(
    env: Any,
    env_name: str,
    algo: str,
    pop: list,
    INIT_HP: Mapping[str, Any] | None = None,
    MUT_P: Mapping[str, Any] | None = None,
    net_config: Mapping[str, Any] | None = None,
    sum_scores: bool = True,
    max_steps: int = 50_000,
    evo_steps: int = 10_000,
    eval_steps: int | None = None,
    eval_loop: int = 1,
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
    """Train a population of on-policy agents (IPPO, optionally inside ``AsyncAgentsWrapper``).

    Arguments as for :func:`marlkit.train_multi_agent_off_policy`, without the replay buffer. Each member
    learns after every ``agent.learn_step`` env steps (rounded down to whole vector steps, at least one).
    ``max_steps`` (and ``checkpoint``) count the env steps of *each member* (``agent.steps[-1]``), as in the
    guide: a population of 4 with ``max_steps=1_000_000`` takes 4,000,000 env steps in all. Training stops
    at the end of the generation in which the members reach it.

    Early stopping: every member's mean fitness over its last 3 evaluations is at least ``target``.

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
            "num_envs": num_envs,
        },
    )

    def train_member(agent, obs, info, scores: EpisodeScores) -> int:
        """Collect rollouts of ``learn_step`` env steps and learn from each; returns the steps taken."""
        rollout_len = max(1, agent.learn_step // num_envs)  # vector steps per rollout
        for idx_step in range(evo_steps // num_envs):
            action, log_prob, _, value = agent.get_action(obs, infos=info)
            next_obs, reward, termination, truncation, info = env.step(action)
            agent.store_transition(obs, action, log_prob, reward, termination, truncation, value, next_obs, info)
            loop.train_step_done(num_envs)
            scores.update(reward, termination, truncation)
            obs = next_obs
            if (idx_step + 1) % rollout_len == 0:
                agent.learn()
        if (evo_steps // num_envs) % rollout_len:
            agent.learn()  # the last, shorter rollout: its data would be stale next generation
        return (evo_steps // num_envs) * num_envs

    return loop.run(train_member)
