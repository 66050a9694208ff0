"""marlkit.evaluation: fresh-episode scores, the scripted baselines and the wrong-message ablation."""

import numpy as np
import pytest

from marlkit.envs.speaker_listener import LANDMARK_COLORS
from marlkit.evaluation import (
    SUCCESS_RADIUS,
    evaluate_team,
    goal_index,
    random_team,
    scripted_team,
    shown_wrong_goal,
    still_team,
    wrong_goal_ablation,
)


def test_mpe2_and_the_batched_env_give_the_same_episodes():
    on_mpe2 = evaluate_team(scripted_team(True), episodes=12, seed=7, env="mpe2", batch=5)
    batched = evaluate_team(scripted_team(True), episodes=12, seed=7, env="batched", batch=5)
    assert len(on_mpe2.returns) == 12  # 5 + 5 + the first 2 of the last batch
    np.testing.assert_allclose(on_mpe2.returns, batched.returns, atol=1e-4)
    np.testing.assert_allclose(on_mpe2.final_distance, batched.final_distance, atol=1e-5)
    np.testing.assert_array_equal(on_mpe2.goal, batched.goal)


def test_baselines_are_ordered_as_their_knowledge():
    told = evaluate_team(scripted_team(True), 300, env="batched")
    centre = evaluate_team(scripted_team(False), 300, env="batched")
    still = evaluate_team(still_team, 300, env="batched")
    rand = evaluate_team(random_team(0), 300, env="batched")
    assert told.mean > centre.mean + 10 > still.mean + 10  # told the goal >> centre >> not moving
    assert rand.mean < centre.mean - 20
    assert told.success_rate > 0.95 and centre.success_rate < 0.1  # touching the goal needs the goal
    assert 0 < told.stderr < 1 and np.all(told.final_distance[told.final_distance < SUCCESS_RADIUS] >= 0)


def test_the_wrong_goal_ablation_misleads_only_a_listener_that_listens():
    obs = {"speaker_0": LANDMARK_COLORS.astype(np.float32), "listener_0": np.zeros((3, 11), np.float32)}
    seen = {}
    shown_wrong_goal(lambda o: seen.update(o) or still_team(o), shift=1)(obs)
    np.testing.assert_array_equal(goal_index(seen["speaker_0"]), [1, 2, 0])  # never the true goal
    # the scripted listener told the goal reads the speaker's observation: the ablation sends it astray
    told = evaluate_team(scripted_team(True), 200, env="batched")
    misled = wrong_goal_ablation(scripted_team(True), 200, seed=50_000, env="batched")
    assert misled.mean < told.mean - 30 and misled.success_rate < 0.05
    # the centre listener ignores the speaker: the ablation changes nothing
    centre = evaluate_team(scripted_team(False), 200, env="batched")
    np.testing.assert_allclose(wrong_goal_ablation(scripted_team(False), 200, 50_000, "batched").returns,
                               centre.returns)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="env must be 'mpe2' or 'batched', got 'pong'"):
        evaluate_team(still_team, 10, env="pong")
    with pytest.raises(ValueError, match="episodes and batch must be positive, got 0"):
        evaluate_team(still_team, 0)
