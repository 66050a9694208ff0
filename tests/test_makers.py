"""Environment makers: speaker-listener spaces, and Space Invaders preprocessing done right."""

import warnings

import numpy as np
import pytest
from gymnasium.spaces import Box, Discrete
from pettingzoo.test import parallel_api_test

from marlkit.envs.makers import ChannelsFirst, find_space_invaders_rom, make_space_invaders, make_speaker_listener

# --------------------------------------------------------------------------------------------------
# Simple Speaker Listener
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "continuous, speaker_action, listener_action",
    [
        (True, Box(0.0, 1.0, (3,), np.float32), Box(0.0, 1.0, (5,), np.float32)),
        (False, Discrete(3), Discrete(5)),
    ],
)
def test_speaker_listener_spaces(continuous, speaker_action, listener_action):
    env = make_speaker_listener(continuous_actions=continuous)
    assert env.possible_agents == ["speaker_0", "listener_0"]
    assert env.observation_space("speaker_0").shape == (3,)
    assert env.observation_space("listener_0").shape == (11,)
    assert env.action_space("speaker_0") == speaker_action
    assert env.action_space("listener_0") == listener_action
    obs, _ = env.reset(seed=0)
    assert obs["speaker_0"].shape == (3,) and obs["listener_0"].shape == (11,)


def test_speaker_listener_max_cycles_and_factory():
    make_env = lambda: make_speaker_listener(max_cycles=7)  # noqa: E731  (the factory form vector envs use)
    env = make_env()
    env.reset(seed=1)
    steps = 0
    while env.agents:
        _, _, terminations, truncations, _ = env.step({a: env.action_space(a).sample() for a in env.agents})
        steps += 1
    assert steps == 7
    assert all(truncations.values()) and not any(terminations.values())


def test_speaker_listener_is_seeded():
    first = make_speaker_listener()
    second = make_speaker_listener()
    obs_a, _ = first.reset(seed=3)
    obs_b, _ = second.reset(seed=3)
    for agent in first.possible_agents:
        np.testing.assert_array_equal(obs_a[agent], obs_b[agent])


# --------------------------------------------------------------------------------------------------
# Space Invaders
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make_env",
    [
        lambda: make_speaker_listener(),
        lambda: make_speaker_listener(continuous_actions=False),
        lambda: make_space_invaders(max_cycles=30),
    ],
    ids=["speaker_listener-continuous", "speaker_listener-discrete", "space_invaders"],
)
def test_made_envs_pass_the_parallel_api_test(make_env):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the API test reports soft failures as warnings
        parallel_api_test(make_env(), num_cycles=40)


FIRE = 1  # in the minimal action set of Space Invaders


def test_space_invaders_observation_is_channels_first_uint8():
    env = make_space_invaders(max_cycles=5)
    assert env.possible_agents == ["first_0", "second_0"]
    space = env.observation_space("first_0")
    assert space.shape == (4, 84, 84) and space.dtype == np.uint8
    assert env.action_space("first_0") == Discrete(6)
    obs, _ = env.reset(seed=0)
    for agent in env.possible_agents:
        assert obs[agent].shape == (4, 84, 84) and obs[agent].dtype == np.uint8
        assert space.contains(obs[agent])


def test_space_invaders_channel_k_is_the_kth_stacked_frame():
    """Channel k at step t must be the single processed frame of step t - 3 + k (zeros before the start)."""
    stacked_env = make_space_invaders(max_cycles=20)
    single_env = make_space_invaders(max_cycles=20, frame_stack=1)  # same pipeline, one frame per obs
    stacked, _ = stacked_env.reset(seed=7)
    single, _ = single_env.reset(seed=7)
    frames = [np.zeros((84, 84), np.uint8)] * 3 + [single["first_0"][0]]
    rng = np.random.default_rng(0)
    order_was_visible = False  # a stack whose oldest and newest frames differ would catch a reversed order
    for step in range(12):
        order_was_visible |= not np.array_equal(stacked["first_0"][0], stacked["first_0"][3])
        for k in range(4):
            np.testing.assert_array_equal(stacked["first_0"][k], frames[-4 + k], err_msg=f"step {step}, k {k}")
        actions = {a: int(rng.integers(6)) for a in stacked_env.agents}
        stacked, *_ = stacked_env.step(actions)
        single, *_ = single_env.step(actions)
        frames.append(single["first_0"][0])
    assert order_was_visible


def test_space_invaders_rewards_are_clipped():
    def rewards_while_firing(clip: bool) -> np.ndarray:
        env = make_space_invaders(max_cycles=130, clip_rewards=clip)
        env.reset(seed=0)
        seen = []
        while env.agents:
            _, rewards, *_ = env.step({a: FIRE for a in env.agents})
            seen.extend(rewards.values())
        return np.asarray(seen, np.float64)

    clipped = rewards_while_firing(True)
    raw = rewards_while_firing(False)
    assert clipped.min() >= -1.0 and clipped.max() <= 1.0
    assert raw.max() > 1.0  # there were large rewards to clip ...
    np.testing.assert_array_equal(clipped, np.clip(raw, -1.0, 1.0))  # ... and clipping is all that changed


def test_space_invaders_max_cycles_counts_agent_steps():
    env = make_space_invaders(max_cycles=6)
    env.reset(seed=0)
    steps = 0
    while env.agents:
        _, _, _, truncations, _ = env.step({a: 0 for a in env.agents})
        steps += 1
    assert steps == 6 and all(truncations.values())


@pytest.mark.parametrize("frame_stack", [4, 1])
def test_space_invaders_observations_are_not_aliased(frame_stack):
    """supersuit's frame stack updates one buffer in place; our transposed copy must not change later."""
    env = make_space_invaders(max_cycles=10, frame_stack=frame_stack)
    obs, _ = env.reset(seed=0)
    kept = obs["first_0"]
    snapshot = kept.copy()
    for _ in range(3):
        env.step({a: FIRE for a in env.agents})
    np.testing.assert_array_equal(kept, snapshot)


def test_missing_rom_error_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="space_invaders.bin") as error:
        make_space_invaders(rom_dir=tmp_path)
    assert str(tmp_path) in str(error.value)


def test_default_rom_folder_holds_space_invaders():
    assert (find_space_invaders_rom() / "space_invaders.bin").is_file()


def test_channels_first_transposes_rather_than_reshapes():
    """A tiny (H, W, C) env whose pixel values encode their position shows every element lands right."""
    from pettingzoo import ParallelEnv

    class Tiny(ParallelEnv):
        metadata = {"name": "tiny"}
        possible_agents = ["a_0"]

        def __init__(self):
            self.agents = []
            self.image = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)  # (H, W, C)

        def observation_space(self, agent):
            return Box(0, 255, (2, 3, 4), np.uint8)

        def action_space(self, agent):
            return Discrete(1)

        def reset(self, seed=None, options=None):
            self.agents = ["a_0"]
            return {"a_0": self.image}, {"a_0": {}}

    env = ChannelsFirst(Tiny())
    obs, _ = env.reset()
    assert env.observation_space("a_0").shape == (4, 2, 3)
    for c in range(4):
        np.testing.assert_array_equal(obs["a_0"][c], Tiny().image[:, :, c])
