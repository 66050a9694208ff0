"""Networks: shapes for every supported space, actors, critics, validation, clone and checkpoints."""

import io

import numpy as np
import pytest
import torch
from gymnasium.spaces import Box, Discrete, MultiBinary, MultiDiscrete

from marlkit.networks import (
    DeterministicActor,
    EvolvableCNN,
    EvolvableMLP,
    EvolvableNetwork,
    QCritic,
    StochasticActor,
    ValueCritic,
    network_from_checkpoint,
)
from marlkit.networks.spaces import space_from_config, space_to_config

SMALL = {"latent_dim": 16, "encoder_config": {"hidden_size": [32]}, "head_config": {"hidden_size": [32]}}
SMALL_CNN = {"latent_dim": 16, "encoder_config": {"channel_size": [8, 8], "kernel_size": [3, 3], "stride_size": [2, 1]},
             "head_config": {"hidden_size": [16]}}
B = 5

OBSERVATION_SPACES = {
    "box": Box(-1, 1, (6,)),
    "box_2d": Box(-1, 1, (2, 3)),
    "image_chw": Box(0, 255, (3, 16, 16), np.uint8),
    "image_hwc": Box(0, 255, (16, 16, 3), np.uint8),
    "discrete": Discrete(7),
    "multi_discrete": MultiDiscrete([3, 4]),
    "multi_binary": MultiBinary(5),
}


def batch(space, n=B):
    return torch.as_tensor(np.stack([space.sample() for _ in range(n)]))


def config_for(space):
    return SMALL_CNN if len(space.shape) == 3 else SMALL


@pytest.fixture(autouse=True)
def _seed_and_one_thread():
    """Seeded, and single-threaded: these networks are tiny, and extra threads only contend on a busy CPU."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------------
# spaces
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("space", [*OBSERVATION_SPACES.values(), Discrete(3, start=2),
                                   Box(np.array([-1, 0], np.float32), np.array([1, 5], np.float32))], ids=str)
def test_space_config_round_trip(space):
    assert space_from_config(space_to_config(space)) == space


# ---------------------------------------------------------------------------------------------------
# building blocks
# ---------------------------------------------------------------------------------------------------
def test_mlp_and_cnn_rebuild_from_config():
    mlp = EvolvableMLP(4, 3, hidden_size=[32, 16], activation="Tanh", layer_norm=True)
    assert mlp(torch.randn(B, 4)).shape == (B, 3)
    assert type(mlp)(**mlp.config).state_dict().keys() == mlp.state_dict().keys()
    cnn = EvolvableCNN([3, 16, 16], 8, channel_size=[8, 16], kernel_size=[3, 3], stride_size=[2, 1])
    assert cnn(torch.rand(B, 3, 16, 16)).shape == (B, 8)
    assert type(cnn)(**cnn.config).config == cnn.config


def test_building_blocks_reject_configs_outside_bounds():
    with pytest.raises(ValueError, match="max_mlp_nodes"):
        EvolvableMLP(4, 2, hidden_size=[1024])
    with pytest.raises(ValueError, match="max_hidden_layers"):
        EvolvableMLP(4, 2, hidden_size=[32] * 5)
    with pytest.raises(ValueError, match="does not fit"):
        EvolvableCNN([3, 8, 8], 2, channel_size=[8], kernel_size=[9], stride_size=[1], max_kernel_size=9)
    with pytest.raises(ValueError, match="same length"):
        EvolvableCNN([3, 8, 8], 2, channel_size=[8, 8], kernel_size=[3], stride_size=[1])


# ---------------------------------------------------------------------------------------------------
# EvolvableNetwork: one encoder per observation kind
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", OBSERVATION_SPACES)
def test_network_output_shape_for_every_observation_space(name):
    space = OBSERVATION_SPACES[name]
    net = EvolvableNetwork(space, 4, **config_for(space))
    assert isinstance(net.encoder, EvolvableCNN if name.startswith("image") else EvolvableMLP)
    out = net(batch(space))
    assert out.shape == (B, 4) and out.dtype == torch.float32


def test_channels_last_image_is_transposed_and_scaled():
    chw, hwc = Box(0, 255, (3, 16, 16), np.uint8), Box(0, 255, (16, 16, 3), np.uint8)
    net_chw = EvolvableNetwork(chw, 4, **SMALL_CNN)
    net_hwc = EvolvableNetwork(hwc, 4, **SMALL_CNN)
    net_hwc.load_state_dict(net_chw.state_dict())
    images = batch(chw)
    torch.testing.assert_close(net_hwc(images.permute(0, 2, 3, 1)), net_chw(images))
    # uint8 pixels are divided by 255 before the CNN
    torch.testing.assert_close(net_chw(images), net_chw.head(net_chw.encoder(images.float() / 255)))


def test_discrete_observations_are_one_hot():
    net = EvolvableNetwork(Discrete(4, start=1), 2, **SMALL)
    obs = torch.tensor([1, 4])
    torch.testing.assert_close(net(obs), net.head(net.encoder(torch.eye(4)[[0, 3]])))
    torch.testing.assert_close(net(obs[:, None]), net(obs))  # (B, 1) is accepted too
    md = EvolvableNetwork(MultiDiscrete([2, 3]), 2, **SMALL)
    one_hots = torch.tensor([[1, 0, 0, 0, 1.0], [0, 1, 0, 1, 0]])
    torch.testing.assert_close(md(torch.tensor([[0, 2], [1, 1]])), md.head(md.encoder(one_hots)))


@pytest.mark.parametrize(("space", "bad", "expected"), [
    (Box(-1, 1, (6,)), torch.zeros(B, 7), r"\(batch, 6\).*got \(5, 7\)"),
    (Box(-1, 1, (6,)), torch.zeros(6), r"\(batch, 6\).*got \(6,\)"),
    (Box(0, 255, (3, 16, 16), np.uint8), torch.zeros(B, 16, 16, 3, dtype=torch.uint8),
     r"\(batch, 3, 16, 16\).*got \(5, 16, 16, 3\)"),
    (Discrete(4), torch.zeros(B, 2, dtype=torch.long), r"\(batch,\) or \(batch, 1\).*got \(5, 2\)"),
])
def test_wrong_observation_shape_raises_value_error_naming_both_shapes(space, bad, expected):
    net = EvolvableNetwork(space, 2, **config_for(space))
    with pytest.raises(ValueError, match=expected):
        net(bad)


# ---------------------------------------------------------------------------------------------------
# DeterministicActor
# ---------------------------------------------------------------------------------------------------
def test_deterministic_actor_box_actions_lie_within_bounds():
    space = Box(np.array([-2, 0, 10], np.float32), np.array([2, 1, 11], np.float32))
    actor = DeterministicActor(Box(-1, 1, (4,)), space, SMALL)
    actions = actor(torch.randn(256, 4) * 100)  # large inputs saturate tanh
    assert actions.shape == (256, 3)
    assert (actions >= torch.as_tensor(space.low)).all() and (actions <= torch.as_tensor(space.high)).all()
    assert actor.to_env_action(actions) is actions


def test_deterministic_actor_discrete_is_differentiable_one_hot():
    actor = DeterministicActor(Box(-1, 1, (4,)), Discrete(5), SMALL)
    obs = torch.randn(B, 4)
    actor.train()
    sample = actor(obs)
    assert sample.shape == (B, 5) and torch.equal(sample.sum(-1), torch.ones(B))
    assert set(sample.unique().tolist()) <= {0.0, 1.0}
    (sample * torch.arange(5.0)).sum().backward()  # straight-through: the critic's gradient reaches the actor
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in actor.net.head.output.parameters())
    actor.eval()
    greedy = actor(obs)
    torch.testing.assert_close(greedy, torch.nn.functional.one_hot(actor.logits(obs).argmax(-1), 5).float())
    assert torch.equal(actor.to_env_action(greedy), actor.logits(obs).argmax(-1))


def test_deterministic_actor_respects_action_mask():
    actor = DeterministicActor(Box(-1, 1, (4,)), Discrete(4), SMALL)
    mask = torch.tensor([[0, 1, 0, 0], [1, 0, 0, 1]] * 50, dtype=torch.bool)
    obs = torch.randn(100, 4)
    for mode in (True, False):
        actor.train(mode)
        chosen = actor.to_env_action(actor(obs, action_mask=mask))
        assert mask[torch.arange(100), chosen].all()


# ---------------------------------------------------------------------------------------------------
# StochasticActor
# ---------------------------------------------------------------------------------------------------
ACTION_SPACES = {
    "box": (Box(-1, 1, (3,)), (B, 3)),
    "discrete": (Discrete(4), (B,)),
    "multi_discrete": (MultiDiscrete([3, 2]), (B, 2)),
    "multi_binary": (MultiBinary(4), (B, 4)),
}


@pytest.mark.parametrize("name", ACTION_SPACES)
def test_stochastic_actor_distribution_shapes(name):
    space, action_shape = ACTION_SPACES[name]
    actor = StochasticActor(Box(-1, 1, (6,)), space, SMALL)
    dist = actor(torch.randn(B, 6))
    action = dist.sample()
    assert action.shape == action_shape and dist.mode().shape == action_shape
    assert dist.log_prob(action).shape == (B,) and dist.entropy().shape == (B,)
    assert torch.isfinite(dist.log_prob(action)).all()
    assert space.contains(actor.to_env_action(action)[0].numpy().astype(space.dtype))


def test_stochastic_actor_gaussian_log_std_and_summed_log_prob():
    actor = StochasticActor(Box(-1, 1, (2,)), Box(-1, 1, (3,)), SMALL, action_std_init=-0.5)
    torch.testing.assert_close(actor.log_std.detach(), torch.full((3,), -0.5))
    obs = torch.randn(B, 2)
    dist = actor(obs)
    action = dist.sample()
    mean = actor.net(obs)
    expected = torch.distributions.Normal(mean, np.exp(-0.5)).log_prob(action).sum(-1)
    torch.testing.assert_close(dist.log_prob(action), expected)
    assert torch.equal(dist.mode(), mean)
    assert actor.config["action_std_init"] == -0.5


def test_stochastic_actor_masks_discrete_and_multi_discrete_actions():
    actor = StochasticActor(Box(-1, 1, (2,)), Discrete(3), SMALL)
    mask = torch.tensor([[1, 0, 0], [0, 0, 1]] * 50)
    dist = actor(torch.randn(100, 2), action_mask=mask)
    assert mask[torch.arange(100), dist.sample()].all()
    assert torch.isfinite(dist.entropy()).all() and dist.entropy().max() < 1e-6  # one allowed action each
    multi = StochasticActor(Box(-1, 1, (2,)), MultiDiscrete([2, 3]), SMALL)
    mask = torch.tensor([[0, 1, 1, 0, 0]] * 20)
    assert torch.equal(multi(torch.randn(20, 2), action_mask=mask).sample(), torch.tensor([[1, 0]] * 20))
    with pytest.raises(ValueError, match="action masks"):
        StochasticActor(Box(-1, 1, (2,)), Box(-1, 1, (2,)), SMALL)(torch.randn(2, 2), torch.ones(2, 2))


# ---------------------------------------------------------------------------------------------------
# critics
# ---------------------------------------------------------------------------------------------------
def test_q_critic_speaker_listener_shapes():
    critic = QCritic([Box(-1, 1, (3,)), Box(-1, 1, (11,))], [Box(0, 1, (3,)), Box(0, 1, (5,))], SMALL)
    q = critic([torch.randn(B, 3), torch.randn(B, 11)], [torch.rand(B, 3), torch.rand(B, 5)])
    assert q.shape == (B,)
    assert len(critic.net.encoders) == 2 and critic.net.head.num_inputs == 2 * 16 + 8
    with pytest.raises(ValueError, match=r"\(batch, 5\).*got \(5, 4\)"):
        critic([torch.randn(B, 3), torch.randn(B, 11)], [torch.rand(B, 3), torch.rand(B, 4)])


def test_q_critic_mixes_images_and_vectors_and_one_hot_discrete_actions():
    image, vector = Box(0, 255, (16, 16, 3), np.uint8), Box(-1, 1, (4,))
    # the vector agent's MLP config cannot fit the image: that encoder falls back to the default CNN
    critic = QCritic([image, vector], [Discrete(3), Box(-1, 1, (2,))], SMALL)
    assert isinstance(critic.net.encoders[0], EvolvableCNN) and isinstance(critic.net.encoders[1], EvolvableMLP)
    obs = [batch(image), torch.randn(B, 4)]
    indices, actions = torch.tensor([0, 1, 2, 1, 0]), torch.rand(B, 2)
    q_index = critic(obs, [indices, actions])
    assert q_index.shape == (B,)
    torch.testing.assert_close(q_index, critic(obs, [torch.eye(3)[indices], actions]))


def test_value_critic_shape():
    critic = ValueCritic(Discrete(5), SMALL)
    assert critic(torch.arange(5)).shape == (5,)


# ---------------------------------------------------------------------------------------------------
# clone and checkpoints
# ---------------------------------------------------------------------------------------------------
def all_networks():
    vec, img = Box(-1, 1, (6,)), Box(0, 255, (3, 16, 16), np.uint8)
    return [
        EvolvableMLP(6, 2, hidden_size=[32], layer_norm=True),
        EvolvableCNN([3, 16, 16], 4, channel_size=[8], kernel_size=[3], stride_size=[2]),
        EvolvableNetwork(img, 3, **SMALL_CNN),
        DeterministicActor(vec, Box(-2, 2, (2,)), SMALL),
        DeterministicActor(img, Discrete(6), SMALL_CNN),
        StochasticActor(vec, Box(-1, 1, (2,)), SMALL, action_std_init=-1.0),
        StochasticActor(Discrete(4), MultiDiscrete([2, 3]), SMALL),
        QCritic([vec, img], [Box(-1, 1, (2,)), Discrete(6)], SMALL),
        ValueCritic(img, SMALL_CNN),
    ]


@pytest.mark.parametrize("net", all_networks(), ids=lambda n: type(n).__name__)
def test_checkpoint_round_trip_with_weights_only(net):
    rng = np.random.default_rng(0)
    for method in rng.choice(net.mutation_methods, size=5):
        net.mutate(str(method), rng)
    buffer = io.BytesIO()
    torch.save(net.checkpoint(), buffer)
    buffer.seek(0)
    loaded = network_from_checkpoint(torch.load(buffer, weights_only=True))
    assert type(loaded) is type(net) and loaded.config == net.config
    for key, value in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    # the ARCHITECTURE.md form {"config", "state_dict"} loads with an explicit class
    rebuilt = type(net).from_checkpoint({"config": net.config, "state_dict": net.state_dict()})
    assert rebuilt.config == net.config


@pytest.mark.parametrize("net", all_networks(), ids=lambda n: type(n).__name__)
def test_clone_is_identical_and_independent(net):
    twin = net.clone()
    assert twin.config == net.config and twin is not net
    for (key, a), b in zip(net.state_dict().items(), twin.state_dict().values()):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr(), key
    before = {k: v.clone() for k, v in net.state_dict().items()}
    config = net.config
    with torch.no_grad():
        for p in twin.parameters():
            p.add_(1.0)
    rng = np.random.default_rng(1)
    for method in twin.mutation_methods:
        twin.mutate(method, rng)
    assert net.config == config
    for key, value in net.state_dict().items():
        assert torch.equal(before[key], value), key


def test_space_invaders_cnn_on_4x84x84_uint8():
    obs_space, action_space = Box(0, 255, (4, 84, 84), np.uint8), Discrete(6)
    actor = DeterministicActor(obs_space, action_space)
    assert actor.net.encoder.channel_size == [32, 64, 64]  # the "Nature" default for Atari-sized images
    obs = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    assert actor(obs).shape == (2, 6)
    assert StochasticActor(obs_space, action_space)(obs).sample().shape == (2,)
    hwc = DeterministicActor(Box(0, 255, (84, 84, 4), np.uint8), action_space)
    assert hwc(obs.permute(0, 2, 3, 1)).shape == (2, 6)
