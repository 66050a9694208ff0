"""Does a Speaker Listener team communicate? A fair test on fresh episodes, against the baselines.

A score alone cannot tell communication from the *centre trick*: a listener that ignores the speaker and
parks at the centre of the three landmarks scores about -29 (summed over both agents, 25 steps), the
guide's target of -30. What exposes the trick:

* **baselines** on the same episodes: hand-written teams that steer the listener to the landmarks'
  centre (no communication: ``scripted_team(told_the_goal=False)``) or to the goal, read from the
  speaker's observation (perfect communication: ``scripted_team(told_the_goal=True)``), a random team
  and a team that stands still;
* the **wrong-message ablation** (``shown_wrong_goal``): the trained speaker is shown another landmark's
  colour. A listener that follows the message now drives to the wrong landmark and the score collapses;
  a centre-trick listener does not care;
* the listener's **success rate**: at the last step its centre is within ``SUCCESS_RADIUS`` of the goal.

``evaluate_team(policy, episodes, seed)`` plays ``episodes`` fresh episodes, one per sub-env, on real
mpe2 envs (``env="mpe2"``) or on the equal ``SpeakerListenerVecEnv`` (``env="batched"``, faster); sub-env
``i`` of batch ``k`` is seeded ``seed + k * batch + i``, so no episode repeats and every policy meets the
same episodes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from marlkit.algorithms.base import episode_dones
from marlkit.envs.makers import make_speaker_listener
from marlkit.envs.speaker_listener import LANDMARK_COLORS, SpeakerListenerVecEnv
from marlkit.envs.vector import SyncPettingZooVecEnv

# The listener (radius 0.075) touches the goal landmark (radius 0.04) when their centres are this close.
SUCCESS_RADIUS = 0.075 + 0.04

Policy = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]  # obs (batched) -> actions (batched)


@dataclass
class TeamResult:
    """Per-episode results of one policy: ``returns`` (E,) summed over both agents; ``final_distance`` (E,)
    from the listener to the goal at the last step; ``goal`` (E,) the goal landmark's index; ``final_nearest``
    (E,) the index of the landmark nearest to the listener at the last step."""

    returns: np.ndarray
    final_distance: np.ndarray
    goal: np.ndarray
    final_nearest: np.ndarray

    @property
    def mean(self) -> float:
        return float(self.returns.mean())

    @property
    def stderr(self) -> float:
        """Standard error of the mean return."""
        return float(self.returns.std(ddof=1) / np.sqrt(len(self.returns)))

    @property
    def success_rate(self) -> float:
        return float((self.final_distance < SUCCESS_RADIUS).mean())


def goal_index(speaker_obs: np.ndarray) -> np.ndarray:
    """The goal landmark's index (E,) from the speaker's observation (E, 3), the goal's colour."""
    return np.asarray(speaker_obs).argmax(-1)


def shown_wrong_goal(policy: Policy, shift: int = 1) -> Policy:
    """The wrong-message ablation: ``policy`` with its speaker shown landmark ``(goal + shift) % 3``'s colour."""

    def ablated(obs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        obs = dict(obs)
        obs["speaker_0"] = LANDMARK_COLORS[(goal_index(obs["speaker_0"]) + shift) % 3].astype(np.float32)
        return policy(obs)

    return ablated


def steer(target: np.ndarray, velocity: np.ndarray, gain: float = 3.0) -> np.ndarray:
    """Listener actions (E, 5) = [no-op, -x, +x, -y, +y] pushing towards ``target`` (E, 2), damped by velocity."""
    push = np.clip(gain * target - velocity, -1.0, 1.0)
    actions = np.zeros((len(push), 5), np.float32)
    actions[:, 2], actions[:, 1] = push[:, 0].clip(0), (-push[:, 0]).clip(0)
    actions[:, 4], actions[:, 3] = push[:, 1].clip(0), (-push[:, 1]).clip(0)
    return actions


def scripted_team(told_the_goal: bool) -> Policy:
    """A hand-written team (continuous actions): a silent speaker; the listener steers to the landmarks'
    centre, or, ``told_the_goal``, to the goal landmark read from the speaker's observation."""

    def policy(obs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        listener = obs["listener_0"]  # (E, 11): velocity (2), the 3 landmarks relative to it (6), message (3)
        landmarks = listener[:, 2:8].reshape(-1, 3, 2)
        if told_the_goal:
            target = landmarks[np.arange(len(landmarks)), goal_index(obs["speaker_0"])]
        else:
            target = landmarks.mean(axis=1)
        speaker = np.zeros((len(listener), 3), np.float32)
        return {"speaker_0": speaker, "listener_0": steer(target, listener[:, :2])}

    return policy


def random_team(seed: int = 0) -> Policy:
    """Uniform random continuous actions."""
    rng = np.random.default_rng(seed)

    def policy(obs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(obs["listener_0"])
        return {"speaker_0": rng.uniform(0, 1, (n, 3)).astype(np.float32),
                "listener_0": rng.uniform(0, 1, (n, 5)).astype(np.float32)}

    return policy


def still_team(obs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """All-zero continuous actions: the listener never moves, the speaker says nothing."""
    n = len(obs["listener_0"])
    return {"speaker_0": np.zeros((n, 3), np.float32), "listener_0": np.zeros((n, 5), np.float32)}


def agent_policy(agent) -> Policy:
    """A trained MADDPG/MATD3 agent as a greedy team policy."""
    agent.set_training_mode(False)
    return lambda obs: agent.get_action(obs)[0]


def evaluate_team(
    policy: Policy,
    episodes: int = 1_000,
    seed: int = 50_000,
    env: str = "mpe2",
    batch: int = 100,
    continuous_actions: bool = True,
) -> TeamResult:
    """Play ``episodes`` fresh episodes (one per sub-env, ``batch`` sub-envs at a time).

    ``env="mpe2"`` plays real ``mpe2`` envs (``SyncPettingZooVecEnv``), ``"batched"`` the equal
    ``SpeakerListenerVecEnv``. Returns the per-episode ``TeamResult``.
    """
    if env not in ("mpe2", "batched"):
        raise ValueError(f"env must be 'mpe2' or 'batched', got {env!r}")
    if episodes < 1 or batch < 1:
        raise ValueError(f"episodes and batch must be positive, got {episodes} and {batch}")
    batch = min(batch, episodes)
    if env == "mpe2":
        vec = SyncPettingZooVecEnv([lambda: make_speaker_listener(continuous_actions)] * batch)
    else:
        vec = SpeakerListenerVecEnv(batch, continuous_actions=continuous_actions)
    returns, distances, goals, nearest = [], [], [], []
    with vec:  # one env for every batch: building 100 mpe2 envs costs more than playing them
        for start in range(0, episodes, batch):
            obs, _ = vec.reset(seed=seed + start)
            goal = goal_index(obs["speaker_0"])
            total, final, near = np.zeros(batch), np.full(batch, np.nan), np.zeros(batch, dtype=int)
            playing = np.ones(batch, dtype=bool)
            while playing.any():
                obs, reward, termination, truncation, info = vec.step(policy(obs))
                total[playing] += (np.nan_to_num(reward["speaker_0"]) + np.nan_to_num(reward["listener_0"]))[playing]
                done = episode_dones(termination, truncation) & playing
                if done.any():  # the finished episode's last listener observation: landmarks relative to it
                    last = np.asarray(info["listener_0"]["final_observation"])[done]
                    distance = np.linalg.norm(last[:, 2:8].reshape(-1, 3, 2), axis=-1)  # (done, 3 landmarks)
                    final[done] = distance[np.arange(done.sum()), goal[done]]
                    near[done] = distance.argmin(-1)
                playing &= ~done
            n = min(batch, episodes - start)  # the last batch may use only part of the sub-envs
            returns.append(total[:n])
            distances.append(final[:n])
            goals.append(goal[:n])
            nearest.append(near[:n])
    return TeamResult(*(np.concatenate(x) for x in (returns, distances, goals, nearest)))


def baselines(episodes: int = 1_000, seed: int = 50_000, env: str = "mpe2") -> dict[str, TeamResult]:
    """The four reference teams on the same fresh episodes."""
    return {
        "centre listener (no communication)": evaluate_team(scripted_team(False), episodes, seed, env),
        "listener told the goal": evaluate_team(scripted_team(True), episodes, seed, env),
        "random": evaluate_team(random_team(seed), episodes, seed, env),
        "standing still": evaluate_team(still_team, episodes, seed, env),
    }


def wrong_goal_ablation(policy: Policy, episodes: int, seed: int, env: str = "mpe2",
                        continuous_actions: bool = True) -> TeamResult:
    """``policy`` with its speaker shown a wrong goal: the next landmark's colour in the first half of the
    episodes, the one after in the second half (both wrong goals, equally often)."""
    half = episodes // 2
    parts = [evaluate_team(shown_wrong_goal(policy, 1), half, seed, env, continuous_actions=continuous_actions),
             evaluate_team(shown_wrong_goal(policy, 2), episodes - half, seed + half, env,
                           continuous_actions=continuous_actions)]
    return TeamResult(*(np.concatenate([getattr(p, field) for p in parts])
                        for field in ("returns", "final_distance", "goal", "final_nearest")))


def communication_report(agent, episodes: int = 1_000, seed: int = 50_000, env: str = "mpe2") -> dict[str, TeamResult]:
    """The trained team and its wrong-message ablation (``wrong_goal_ablation``) on the same fresh episodes."""
    policy = agent_policy(agent)
    return {
        "trained team": evaluate_team(policy, episodes, seed, env),
        "trained team, speaker shown a wrong goal": wrong_goal_ablation(policy, episodes, seed, env),
    }
