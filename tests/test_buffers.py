import numpy as np
import pytest
import torch

from marlkit.buffers import MultiAgentReplayBuffer

AGENTS = ["speaker_0", "listener_0"]
FIELDS = ["state", "action", "reward", "next_state", "done"]


def vector_transition(num_envs: int, t: int):
    """Transition whose values encode the step ``t`` and env index so samples can be traced back."""
    env_index = np.arange(num_envs)[:, None]
    obs = {a: np.full((num_envs, 3 + i), t, dtype=np.float32) + env_index for i, a in enumerate(AGENTS)}
    act = {a: np.full((num_envs, 2), t, dtype=np.float32) for a in AGENTS}
    rew = {a: np.full(num_envs, float(t), dtype=np.float32) for a in AGENTS}
    nxt = {a: v + 1 for a, v in obs.items()}
    done = {a: np.zeros(num_envs, dtype=np.float32) for a in AGENTS}
    return obs, act, rew, nxt, done


def test_vectorised_save_and_sample_keeps_fields_aligned():
    buf = MultiAgentReplayBuffer(100, FIELDS, AGENTS, seed=0)
    for t in range(5):
        buf.save_to_memory(*vector_transition(4, t), is_vectorised=True)
    assert len(buf) == 20 and buf.counter == 20
    state, action, reward, next_state, done = buf.sample(64)
    for a in AGENTS:
        assert state[a].shape[0] == 64 and state[a].dtype == torch.float32
        # next_state is state + 1 and the reward holds the step of the same transition.
        torch.testing.assert_close(next_state[a], state[a] + 1)
        torch.testing.assert_close(action[a][:, 0], reward[a])
    assert state["speaker_0"].shape == (64, 3) and state["listener_0"].shape == (64, 4)


def test_single_transition_and_circular_overwrite():
    buf = MultiAgentReplayBuffer(3, ["obs", "reward"], AGENTS, seed=0)
    for t in range(5):
        buf.save_to_memory({a: np.array([t, t], dtype=np.float64) for a in AGENTS}, {a: float(t) for a in AGENTS})
    assert len(buf) == 3 and buf.counter == 5
    (obs, rew) = buf.sample(200)
    # Only the three newest transitions (t = 2, 3, 4) survive, float64 stored as float32.
    assert set(rew["speaker_0"].tolist()) == {2.0, 3.0, 4.0}
    assert obs["listener_0"].dtype == torch.float32


def test_wraparound_with_vectorised_batches():
    buf = MultiAgentReplayBuffer(10, ["x"], ["a"], seed=1)
    for t in range(4):  # 4 batches of 4 = 16 transitions into 10 slots
        buf.save_to_memory({"a": np.arange(4) + 4 * t}, is_vectorised=True)
    (x,) = buf.sample(500)
    assert set(x["a"].tolist()) == set(range(6, 16))


def test_uint8_images_stay_uint8():
    buf = MultiAgentReplayBuffer(50, ["obs"], AGENTS, seed=0)
    img = {a: np.random.default_rng(0).integers(0, 255, (2, 4, 84, 84), dtype=np.uint8) for a in AGENTS}
    buf.save_to_memory(img, is_vectorised=True)
    (obs,) = buf.sample(8)
    assert obs["speaker_0"].dtype == torch.uint8
    assert buf.nbytes == 2 * 50 * 4 * 84 * 84


def test_space_invaders_sized_buffer_fits_in_uint8():
    # 100,000 transitions, 2 agents, obs and next_obs of 4x84x84 uint8: ~11.3 GB reserved, not ~45 GB.
    buf = MultiAgentReplayBuffer(100_000, ["obs", "action", "reward", "next_obs", "done"], ["first_0", "second_0"])
    obs = {a: np.zeros((1, 4, 84, 84), np.uint8) for a in buf.agent_ids}
    scal = {a: np.zeros(1, np.float32) for a in buf.agent_ids}
    act = {a: np.zeros(1, np.int64) for a in buf.agent_ids}
    buf.save_to_memory(obs, act, scal, obs, scal, is_vectorised=True)
    image_bytes = 2 * 2 * 100_000 * 4 * 84 * 84
    assert image_bytes <= buf.nbytes < image_bytes * 1.01
    assert buf.nbytes < 12e9


def test_sampling_is_seeded():
    def run(seed):
        buf = MultiAgentReplayBuffer(100, FIELDS, AGENTS, seed=seed)
        for t in range(10):
            buf.save_to_memory(*vector_transition(2, t), is_vectorised=True)
        return buf.sample(16)[2]["speaker_0"]

    torch.testing.assert_close(run(3), run(3))
    assert not torch.equal(run(3), run(4))


def test_nan_placeholders_are_stored_unchanged():
    buf = MultiAgentReplayBuffer(10, ["reward"], AGENTS)
    buf.save_to_memory({"speaker_0": np.array([np.nan, 1.0]), "listener_0": np.array([0.0, 2.0])}, is_vectorised=True)
    assert torch.isnan(buf.sample_from_indices(np.array([0]))[0]["speaker_0"]).all()


@pytest.mark.parametrize(
    "fields, message",
    [
        (({"speaker_0": np.zeros(2)},), "no entry for agent"),
        (([np.zeros(2), np.zeros(2)],), "must be a dict keyed by agent id"),
        (({"speaker_0": np.zeros(2), "listener_0": np.zeros(2)}, {"speaker_0": 0, "listener_0": 0}), "got 2 fields"),
    ],
)
def test_bad_input_names_the_problem(fields, message):
    buf = MultiAgentReplayBuffer(10, ["obs"], AGENTS)
    with pytest.raises((ValueError, TypeError), match=message):
        buf.save_to_memory(*fields, is_vectorised=True)


def test_shape_change_and_empty_sample_errors():
    buf = MultiAgentReplayBuffer(10, ["obs"], AGENTS)
    with pytest.raises(ValueError, match="empty"):
        buf.sample(2)
    buf.save_to_memory({a: np.zeros((2, 3)) for a in AGENTS}, is_vectorised=True)
    with pytest.raises(ValueError, match="listener_0.*shape"):
        buf.save_to_memory({"speaker_0": np.zeros((2, 3)), "listener_0": np.zeros((2, 5))}, is_vectorised=True)
    with pytest.raises(ValueError, match="memory_size"):
        MultiAgentReplayBuffer(0, ["obs"], AGENTS)
