"""Architecture mutations: bounds, kept weights, exact replay on twins, function-preserving growth."""

import numpy as np
import pytest
import torch
from gymnasium.spaces import Box, Discrete, MultiDiscrete

from marlkit.networks import (
    DeterministicActor,
    EvolvableCNN,
    EvolvableMLP,
    EvolvableNetwork,
    QCritic,
    StochasticActor,
    ValueCritic,
)

VEC = Box(-1, 1, (6,))
IMG = Box(0, 255, (3, 16, 16), np.uint8)
SMALL = {"latent_dim": 16, "encoder_config": {"hidden_size": [32]}, "head_config": {"hidden_size": [32]}}
SMALL_CNN = {"latent_dim": 16, "encoder_config": {"channel_size": [8, 8], "kernel_size": [3, 3], "stride_size": [2, 1]},
             "head_config": {"hidden_size": [16]}}


@pytest.fixture(autouse=True)
def _seed_and_one_thread():
    """Seeded, and single-threaded: these networks are tiny, and extra threads only contend on a busy CPU."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def randomise_norms(net):
    """LayerNorm starts at gain 1 / bias 0; move them so the tests cover the general case."""
    with torch.no_grad():
        for name, p in net.named_parameters():
            if ".norms." in f".{name}":
                p.copy_(torch.rand_like(p) + 0.5 if name.endswith("weight") else torch.randn_like(p))


def mlp(**kwargs):
    defaults = {"num_inputs": 5, "num_outputs": 3, "hidden_size": [32, 48]}
    return EvolvableMLP(**{**defaults, **kwargs})


def cnn(**kwargs):
    defaults = {"input_shape": [3, 16, 16], "num_outputs": 4, "channel_size": [8, 16], "kernel_size": [3, 3],
                "stride_size": [2, 1]}
    return EvolvableCNN(**{**defaults, **kwargs})


def call(net, inputs):
    return net(*inputs)


def inputs_for(net, n=8):
    """A batch of valid inputs for any of the networks under test (as a tuple of positional args)."""
    if isinstance(net, EvolvableMLP):
        return (torch.randn(n, net.num_inputs),)
    if isinstance(net, EvolvableCNN):
        return (torch.rand(n, *net.input_shape),)
    if isinstance(net, QCritic):
        obs = [torch.as_tensor(np.stack([s.sample() for _ in range(n)])) for s in net.observation_spaces]
        actions = [torch.as_tensor(np.stack([s.sample() for _ in range(n)])) for s in net.action_spaces]
        return obs, actions
    space = net.observation_space if hasattr(net, "observation_space") else net.observation_spaces[0]
    return (torch.as_tensor(np.stack([space.sample() for _ in range(n)])),)


def outputs(net, inputs):
    out = call(net, inputs)
    if not isinstance(out, torch.Tensor):  # StochasticActor: compare the distributions' logits
        out = torch.cat([d.logits for d in out.dists], dim=-1) if hasattr(out, "dists") else out.dist.logits
    return out


# ---------------------------------------------------------------------------------------------------
# growth keeps the function
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [
    {"activation": "ReLU"},
    {"activation": "Tanh"},
    {"activation": "ReLU", "layer_norm": True},
    {"activation": "GELU", "layer_norm": True},
], ids=str)
def test_mlp_add_node_keeps_outputs(kwargs):
    net = mlp(**kwargs)
    randomise_norms(net)
    x = torch.randn(64, 5) * 3
    before = net(x)
    rng = np.random.default_rng(0)
    for _ in range(6):
        record = net.add_node(rng)
        assert record["method"] == "add_node" and "noop" not in record
        torch.testing.assert_close(net(x), before, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("activation", ["ReLU", "ReLU6", "Hardtanh"])
def test_mlp_add_layer_keeps_outputs_for_idempotent_activations(activation):
    net = mlp(activation=activation, max_hidden_layers=6)
    x = torch.randn(64, 5) * 3
    before = net(x)
    rng = np.random.default_rng(0)
    for _ in range(4):
        assert "noop" not in net.add_layer(rng)
        torch.testing.assert_close(net(x), before, atol=1e-5, rtol=1e-5)
    assert len(net.hidden_size) == 6


def test_cnn_add_channel_and_add_layer_keep_outputs():
    net = cnn(max_hidden_layers=4)
    x = torch.rand(16, 3, 16, 16)
    before = net(x)
    rng = np.random.default_rng(0)
    layers = set()
    for method in ["add_channel"] * 6 + ["add_layer"] * 2 + ["add_channel"] * 4:
        record = net.mutate(method, rng)
        layers.add(record.get("layer"))
        torch.testing.assert_close(net(x), before, atol=1e-5, rtol=1e-5)
    assert {0, 1} <= layers  # the last conv (which feeds the output layer) grew too


@pytest.mark.parametrize("method", ["latent.add_node", "encoder_0.add_node", "encoder_1.add_channel",
                                    "encoder_0.add_layer", "encoder_1.add_layer", "head.add_node", "head.add_layer"])
def test_network_growth_keeps_outputs(method):
    # add_layer is exact without layer_norm only (see mlp.py); add_node is exact either way
    layer_norm = not method.endswith("add_layer")
    critic = QCritic([VEC, IMG], [Box(-1, 1, (2,)), Discrete(3)],
                     {**SMALL, "encoder_config": {"hidden_size": [32], "layer_norm": layer_norm}})
    randomise_norms(critic)
    inputs = inputs_for(critic, 32)
    before = critic(*inputs)
    rng = np.random.default_rng(0)
    for _ in range(3):
        critic.mutate(method, rng)
        torch.testing.assert_close(critic(*inputs), before, atol=1e-5, rtol=1e-5)


def test_layer_norm_add_node_rescales_instead_of_copying():
    """With layer_norm the kept rows are the old rows times c = sqrt((n + k) / n) (see mlp.py)."""
    net = mlp(hidden_size=[32], layer_norm=True)
    old_weight, old_gain = net.hidden[0].weight.detach().clone(), net.norms[0].weight.detach().clone()
    k = net.mutate("add_node", np.random.default_rng(3))["num_nodes"]
    c = np.sqrt((32 + k) / 32)
    torch.testing.assert_close(net.hidden[0].weight[:32], old_weight * c)
    torch.testing.assert_close(net.norms[0].weight[:32], old_gain / c)


# ---------------------------------------------------------------------------------------------------
# weights survive mutations
# ---------------------------------------------------------------------------------------------------
def assert_overlap_equal(before: dict, after: dict, skip=()):
    """Every tensor whose name survived holds the old values in the slice both shapes share."""
    for name, old in before.items():
        if name in after and not any(s in name for s in skip):
            new = after[name]
            index = tuple(slice(0, min(a, b)) for a, b in zip(old.shape, new.shape))
            assert torch.equal(new[index], old[index]), name


@pytest.mark.parametrize(("make", "method"), [
    (mlp, "add_node"), (mlp, "remove_node"), (mlp, "change_activation"),
    (cnn, "add_channel"), (cnn, "remove_channel"), (cnn, "change_kernel"),
    (lambda: EvolvableNetwork(VEC, 3, **SMALL), "latent.add_node"),
    (lambda: EvolvableNetwork(IMG, 3, **SMALL_CNN), "latent.remove_node"),
    (lambda: EvolvableNetwork(IMG, 3, **{**SMALL_CNN, "encoder_config": {
        "channel_size": [16, 32], "kernel_size": [3, 3], "stride_size": [2, 1]}}), "encoder.remove_channel"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_resizing_mutations_keep_the_overlapping_weights(make, method):
    rng = np.random.default_rng(0)
    for _ in range(3):
        net = make()
        before = {k: v.clone() for k, v in net.state_dict().items()}
        record = net.mutate(method, rng)
        assert "noop" not in record
        assert_overlap_equal(before, net.state_dict())


def test_add_and_remove_layer_keep_the_other_layers():
    net = mlp(hidden_size=[32, 48, 16])
    old = [layer.weight.detach().clone() for layer in net.hidden]
    old_out = net.output.weight.detach().clone()
    record = net.mutate("add_layer", np.random.default_rng(0))
    i = record["index"]
    new = [layer.weight for layer in net.hidden]
    assert all(torch.equal(a, b) for a, b in zip(old[:i] + old[i:], new[:i] + new[i + 1:]))
    assert torch.equal(new[i], torch.eye(new[i].shape[0])) and torch.equal(net.output.weight, old_out)

    net = mlp(hidden_size=[32, 48, 16])
    old = [layer.weight.detach().clone() for layer in net.hidden] + [net.output.weight.detach().clone()]
    record = net.mutate("remove_layer", np.random.default_rng(1))
    i = record["index"]
    new = [layer.weight for layer in net.hidden] + [net.output.weight]
    assert all(torch.equal(a, b) for a, b in zip(old[:i], new[:i]))
    assert all(torch.equal(a, b) for a, b in zip(old[i + 2:], new[i + 1:]))
    assert_overlap_equal({"w": old[i + 1]}, {"w": new[i]})  # the layer after the removed one

    net = cnn(channel_size=[8, 16, 8], kernel_size=[3, 3, 3], stride_size=[1, 1, 1])
    old = [conv.weight.detach().clone() for conv in net.convs]
    i = net.mutate("remove_layer", np.random.default_rng(2))["index"]
    assert all(torch.equal(a, b) for a, b in zip(old[:i], [c.weight for c in net.convs][:i]))


# ---------------------------------------------------------------------------------------------------
# bounds
# ---------------------------------------------------------------------------------------------------
def test_mutations_at_a_bound_return_a_noop_record_and_change_nothing():
    rng = np.random.default_rng(0)
    cases = [
        (mlp(hidden_size=[32], max_hidden_layers=1), "add_layer", "max_hidden_layers=1"),
        (mlp(hidden_size=[32], min_hidden_layers=1), "remove_layer", "min_hidden_layers=1"),
        (mlp(hidden_size=[64, 64], max_mlp_nodes=64), "add_node", "max_mlp_nodes=64"),
        (mlp(hidden_size=[16, 16]), "remove_node", "min_mlp_nodes=16"),
        (cnn(max_hidden_layers=2), "add_layer", "max_hidden_layers=2"),
        (cnn(channel_size=[8, 8]), "remove_channel", "min_channel_size=8"),
        (cnn(channel_size=[8], kernel_size=[3], stride_size=[1], min_kernel_size=3, max_kernel_size=3),
         "change_kernel", "no kernel"),
        (EvolvableNetwork(VEC, 2, **{**SMALL, "latent_dim": 8}), "latent.remove_node", "min_latent_dim=8"),
    ]
    for net, method, reason in cases:
        config, state = net.config, {k: v.clone() for k, v in net.state_dict().items()}
        record = net.mutate(method, rng)
        assert record["method"] == method.split(".")[-1] and reason in record["noop"]
        assert net.config == config
        assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())


def test_sizes_are_clipped_to_the_bounds():
    rng = np.random.default_rng(0)
    net = mlp(hidden_size=[60], max_mlp_nodes=64)
    assert net.mutate("add_node", rng)["num_nodes"] == 4 and net.hidden_size == [64]
    net = mlp(hidden_size=[20], min_mlp_nodes=16)
    assert net.mutate("remove_node", rng)["num_nodes"] == 4 and net.hidden_size == [16]
    net = cnn(channel_size=[8, 250])
    assert net.mutate("add_channel", rng) and max(net.channel_size) <= 256


def test_change_kernel_never_breaks_the_image_size():
    net = cnn(input_shape=[3, 8, 8], channel_size=[8, 8], kernel_size=[3, 3], stride_size=[2, 1])
    rng = np.random.default_rng(0)
    for _ in range(30):
        net.mutate("change_kernel", rng)
        assert net(torch.rand(2, 3, 8, 8)).shape == (2, 4)


# ---------------------------------------------------------------------------------------------------
# replay on twins
# ---------------------------------------------------------------------------------------------------
def all_methods(net) -> list[str]:
    """Every sub-module x method of a network (bare names for MLP/CNN)."""
    return getattr(net, "qualified_mutation_methods", net.mutation_methods)


def twin_cases():
    return [
        mlp(layer_norm=True),
        cnn(),
        DeterministicActor(VEC, Box(-1, 1, (2,)), SMALL),
        StochasticActor(IMG, Discrete(4), SMALL_CNN),
        QCritic([VEC, IMG], [Box(-1, 1, (2,)), Discrete(3)], SMALL),
        ValueCritic(Discrete(5), SMALL),
    ]


@pytest.mark.parametrize("net", twin_cases(), ids=lambda n: type(n).__name__)
def test_apply_mutation_replays_identically_on_a_twin(net):
    rng = np.random.default_rng(0)
    target = net.clone()  # e.g. the target network
    other = type(net)(**net.config)  # same architecture, different weights
    inputs = inputs_for(net)
    for method in all_methods(net) + net.mutation_methods:
        record = net.mutate(method, rng)
        target.apply_mutation(record)
        other.apply_mutation(record)
        assert target.config == net.config == other.config, method
        for key, value in net.state_dict().items():  # the seed in the record makes even new weights equal
            assert torch.equal(target.state_dict()[key], value), (method, key)
        other.load_state_dict(net.state_dict())  # a soft/hard target update works after the mutation
        net.eval(), other.eval()
        torch.testing.assert_close(outputs(other, inputs), outputs(net, inputs))


def test_bare_method_names_pick_a_sub_module_that_is_not_at_a_bound():
    net = EvolvableNetwork(VEC, 2, latent_dim=16, encoder_config={"hidden_size": [32], "max_hidden_layers": 1},
                           head_config={"hidden_size": [32], "max_hidden_layers": 3})
    assert net.mutation_methods == ["add_layer", "remove_layer", "add_node", "remove_node", "change_activation"]
    assert "latent.add_node" in net.qualified_mutation_methods and "encoder.add_layer" in net.qualified_mutation_methods
    rng = np.random.default_rng(0)
    assert [net.mutate("add_layer", rng)["module"] for _ in range(2)] == ["head", "head"]  # the encoder is full
    record = net.mutate("add_layer", rng)
    assert record["module"] in ("encoder", "head") and "noop" in record  # now everything is full
    modules = {net.mutate("add_node", rng)["module"] for _ in range(30)}
    assert modules == {"encoder", "latent", "head"}
    with pytest.raises(ValueError, match="unknown mutation 'add_channel'"):
        net.mutate("add_channel", rng)
    with pytest.raises(ValueError, match="unknown sub-module 'tail'"):
        net.mutate("tail.add_node", rng)


def test_replaying_a_record_on_a_different_architecture_fails_loudly():
    record = mlp(hidden_size=[32, 32, 32], max_hidden_layers=4).mutate("remove_node", np.random.default_rng(5))
    record["layer"] = 2
    with pytest.raises(ValueError, match="does not exist"):
        mlp(hidden_size=[32]).apply_mutation(record)
    with pytest.raises(ValueError, match="unknown mutation"):
        mlp().mutate("add_channel", np.random.default_rng(0))


def test_mutations_use_only_the_given_rng():
    net = QCritic([VEC, IMG], [Box(-1, 1, (2,)), Discrete(3)], SMALL)
    state = torch.get_rng_state()
    records = [net.mutate(m, np.random.default_rng(7)) for m in all_methods(net) + net.mutation_methods]
    assert torch.equal(torch.get_rng_state(), state)  # torch's global generator untouched
    replay = QCritic([VEC, IMG], [Box(-1, 1, (2,)), Discrete(3)], SMALL)
    assert [replay.mutate(m, np.random.default_rng(7)) for m in all_methods(net) + net.mutation_methods] == records


# ---------------------------------------------------------------------------------------------------
# a long random walk
# ---------------------------------------------------------------------------------------------------
def within_bounds(config: dict) -> bool:
    """Check every MLP/CNN config nested anywhere in a network config."""
    if "hidden_size" in config:
        h = config["hidden_size"]
        return (config["min_hidden_layers"] <= len(h) <= config["max_hidden_layers"]
                and all(config["min_mlp_nodes"] <= n <= config["max_mlp_nodes"] for n in h))
    if "channel_size" in config:
        c, k = config["channel_size"], config["kernel_size"]
        return (config["min_hidden_layers"] <= len(c) <= config["max_hidden_layers"]
                and all(config["min_channel_size"] <= n <= config["max_channel_size"] for n in c)
                and all(config["min_kernel_size"] <= n <= config["max_kernel_size"] for n in k))
    ok = True
    if "latent_dim" in config:
        ok = config["min_latent_dim"] <= config["latent_dim"] <= config["max_latent_dim"]
    for value in config.values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, dict):
                ok = ok and within_bounds(item)
    return ok


@pytest.mark.parametrize("make", [
    lambda: DeterministicActor(VEC, Box(-1, 1, (2,)), {**SMALL, "encoder_config": {"hidden_size": [32],
                                                                                   "layer_norm": True}}),
    lambda: StochasticActor(Box(0, 255, (12, 12, 3), np.uint8), MultiDiscrete([2, 3]), SMALL_CNN),
    lambda: QCritic([VEC, Box(0, 255, (3, 8, 8), np.uint8)], [Box(-1, 1, (2,)), Discrete(3)], SMALL),
], ids=["deterministic_mlp", "stochastic_cnn", "q_critic"])
def test_200_random_mutations_keep_a_working_network(make):
    net = make()
    target = net.clone()
    rng = np.random.default_rng(42)
    inputs = inputs_for(net, 4)
    for _ in range(200):
        record = net.mutate(str(rng.choice(net.mutation_methods)), rng)
        target.apply_mutation(record)
        assert within_bounds(net.config["net_config"]), record
        out = outputs(net, inputs)
        assert torch.isfinite(out).all(), record
    # still trainable, still rebuildable, still in step with its target network
    loss = outputs(net, inputs).float().sum()
    loss.backward()
    optimizer_params = [p for p in net.parameters() if p.grad is not None]
    assert optimizer_params
    assert target.config == net.config
    rebuilt = type(net)(**net.config)
    rebuilt.load_state_dict(net.state_dict())
    torch.testing.assert_close(outputs(rebuilt.eval(), inputs), outputs(net.eval(), inputs))
