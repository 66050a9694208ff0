"""net_config resolution: the guide's bob/fred example in all three forms, and every error case."""

import inspect

import numpy as np
import pytest
import yaml
from gymnasium.spaces import Box, Discrete

from marlkit.networks import DeterministicActor, StochasticActor, group_agents, group_id, resolve_net_config
from marlkit.networks.cnn import EvolvableCNN
from marlkit.networks.config import CNN_DEFAULTS, MLP_DEFAULTS, NETWORK_DEFAULTS
from marlkit.networks.mlp import EvolvableMLP

# "Configuring Network Architectures" in the guide, verbatim
AGENT_IDS = ["bob_0", "bob_1", "fred_0", "fred_1"]
OBSERVATION_SPACES = [
    Box(low=-1, high=1, shape=(16,)),  # bob_0
    Box(low=-1, high=1, shape=(16,)),  # bob_1
    Box(low=-1, high=1, shape=(32,)),  # fred_0
    Box(low=-1, high=1, shape=(32,)),  # fred_1
]
ACTION_SPACES = [Discrete(2), Discrete(2), Discrete(2), Discrete(2)]

PER_AGENT_YAML = """
bob_0:
    latent_dim: 32
    encoder_config:
        hidden_size: [32]
        activation: ReLU
    head_config:
        hidden_size: [32]
bob_1:
    latent_dim: 32
    encoder_config:
        hidden_size: [64, 64]
        activation: ReLU
    head_config:
        hidden_size: [32]
fred_0:
    latent_dim: 32
    encoder_config:
        hidden_size: [64, 64]
        activation: ReLU
    head_config:
        hidden_size: [32]
fred_1:
    latent_dim: 32
    encoder_config:
        hidden_size: [64, 64]
        activation: ReLU
    head_config:
        hidden_size: [32]
"""

PER_GROUP_YAML = """
bob:
    latent_dim: 32
    encoder_config:
        hidden_size: [32]
        activation: ReLU
    head_config:
        hidden_size: [32]
fred:
    latent_dim: 32
    encoder_config:
        hidden_size: [64, 64]
        activation: ReLU
    head_config:
        hidden_size: [32]
"""

SINGLE_LEVEL_YAML = """
latent_dim: 32
encoder_config:
    hidden_size: [32]
    activation: ReLU
head_config:
    hidden_size: [32]
"""

IMAGE = Box(0, 255, (4, 84, 84), np.uint8)


def hidden_sizes(resolved):
    return {key: config["encoder_config"]["hidden_size"] for key, config in resolved.items()}


# ---------------------------------------------------------------------------------------------------
# the three forms of the guide
# ---------------------------------------------------------------------------------------------------
def test_per_agent_yaml():
    resolved = resolve_net_config(yaml.safe_load(PER_AGENT_YAML), AGENT_IDS, OBSERVATION_SPACES)
    assert hidden_sizes(resolved) == {"bob_0": [32], "bob_1": [64, 64], "fred_0": [64, 64], "fred_1": [64, 64]}
    assert all(c["latent_dim"] == 32 and c["head_config"]["hidden_size"] == [32] for c in resolved.values())


def test_per_group_yaml():
    resolved = resolve_net_config(yaml.safe_load(PER_GROUP_YAML), AGENT_IDS, OBSERVATION_SPACES)
    assert hidden_sizes(resolved) == {"bob_0": [32], "bob_1": [32], "fred_0": [64, 64], "fred_1": [64, 64]}
    shared = resolve_net_config(yaml.safe_load(PER_GROUP_YAML), AGENT_IDS, OBSERVATION_SPACES, share_parameters=True)
    assert hidden_sizes(shared) == {"bob": [32], "fred": [64, 64]}


def test_single_level_yaml():
    resolved = resolve_net_config(yaml.safe_load(SINGLE_LEVEL_YAML), AGENT_IDS, OBSERVATION_SPACES)
    assert hidden_sizes(resolved) == dict.fromkeys(AGENT_IDS, [32])
    shared = resolve_net_config(yaml.safe_load(SINGLE_LEVEL_YAML), AGENT_IDS, OBSERVATION_SPACES,
                                share_parameters=True)
    assert hidden_sizes(shared) == {"bob": [32], "fred": [32]}


def test_resolved_configs_are_complete_and_build_networks():
    resolved = resolve_net_config(yaml.safe_load(PER_AGENT_YAML), AGENT_IDS, OBSERVATION_SPACES)
    for agent, obs_space, action_space in zip(AGENT_IDS, OBSERVATION_SPACES, ACTION_SPACES):
        config = resolved[agent]
        assert set(config) == {*NETWORK_DEFAULTS, "encoder_config", "head_config"}
        assert set(config["encoder_config"]) == set(MLP_DEFAULTS) and set(config["head_config"]) == set(MLP_DEFAULTS)
        actor = DeterministicActor(obs_space, action_space, config)
        assert actor.net.encoder.hidden_size == config["encoder_config"]["hidden_size"]
        StochasticActor(obs_space, action_space, config)
    resolved["bob_0"]["encoder_config"]["hidden_size"].append(99)  # no aliasing between agents
    assert resolved["bob_1"]["encoder_config"]["hidden_size"] == [64, 64]


@pytest.mark.parametrize(("cls", "defaults"), [(EvolvableMLP, MLP_DEFAULTS), (EvolvableCNN, CNN_DEFAULTS)])
def test_config_defaults_match_the_constructors(cls, defaults):
    parameters = inspect.signature(cls).parameters
    for key, value in defaults.items():
        default = parameters[key].default
        assert (list(default) if isinstance(default, tuple) else default) == value, key


def test_speaker_listener_net_config_from_the_guide():
    net_config = {
        "speaker_0": {"encoder_config": {"hidden_size": [32, 32], "activation": "ReLU"},
                      "head_config": {"hidden_size": [32]}},
        "listener_0": {"encoder_config": {"hidden_size": [32, 32], "activation": "ReLU"},
                       "head_config": {"hidden_size": [32]}},
    }
    resolved = resolve_net_config(net_config, ["speaker_0", "listener_0"], [Box(-1, 1, (3,)), Box(-1, 1, (11,))])
    assert hidden_sizes(resolved) == {"speaker_0": [32, 32], "listener_0": [32, 32]}
    assert resolved["speaker_0"]["latent_dim"] == NETWORK_DEFAULTS["latent_dim"]


def test_agent_entries_take_precedence_over_group_entries():
    net_config = {"bob": {"encoder_config": {"hidden_size": [32]}}, "bob_1": {"encoder_config": {"hidden_size": [128]}}}
    resolved = resolve_net_config(net_config, AGENT_IDS, OBSERVATION_SPACES)
    assert hidden_sizes(resolved) == {"bob_0": [32], "bob_1": [128], "fred_0": [64], "fred_1": [64]}


def test_missing_agents_get_a_default_for_their_space():
    resolved = resolve_net_config({"bob": {"latent_dim": 16}}, ["bob_0", "eve_0"], [Box(-1, 1, (4,)), IMAGE])
    assert resolved["bob_0"]["latent_dim"] == 16 and resolved["bob_0"]["encoder_config"] == {
        **MLP_DEFAULTS, "output_activation": MLP_DEFAULTS["activation"]}
    assert resolved["eve_0"]["encoder_config"]["channel_size"] == CNN_DEFAULTS["channel_size"]
    small = resolve_net_config(None, ["eve"], [Box(0, 255, (3, 10, 10), np.uint8)])
    assert small["eve"]["encoder_config"]["kernel_size"] == [3, 3]  # the Nature CNN does not fit 10x10


def test_group_helpers():
    assert group_id("bob_1") == "bob" and group_id("red_team_12") == "red_team"
    assert group_id("adversary") == "adversary" and group_id("agent_x") == "agent_x" and group_id("_3") == "_3"
    assert group_agents(["bob_0", "fred_0", "bob_1", "solo"]) == {
        "bob": ["bob_0", "bob_1"], "fred": ["fred_0"], "solo": ["solo"]}


def test_an_agent_without_suffix_is_its_own_group_when_sharing():
    resolved = resolve_net_config({"solo": {"latent_dim": 16}}, ["solo", "bob_0"], OBSERVATION_SPACES[:2],
                                  share_parameters=True)
    assert set(resolved) == {"solo", "bob"} and resolved["solo"]["latent_dim"] == 16


# ---------------------------------------------------------------------------------------------------
# every error names the key and what was expected
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("net_config", "match"), [
    ({"bob": {"encoder_config": {"hiden_size": [32]}}},
     r"unknown encoder_config key 'hiden_size' in net_config for agent 'bob_0'; expected one of \['hidden_size'"),
    ({"latent_dim": 32, "encoder_confg": {"hidden_size": [32]}},
     r"unknown net_config key 'encoder_confg'.*expected one of \['latent_dim'"),
    ({"bob": {"head_config": {"hidden_size": [32], "activaton": "ReLU"}}}, r"unknown head_config key 'activaton'"),
    ({"alice": {"latent_dim": 32}}, r"net_config key 'alice' is neither an agent id \['bob_0'.*nor a group id"),
    ({"hiden_size": [32]}, r"'hiden_size' is neither an agent id.*single-level net_config uses the keys"),
    ({"bob": {"encoder_config": {"channel_size": [8], "kernel_size": [3], "stride_size": [1]}}},
     r"CNN key\(s\) \['channel_size'.*is a vector, which needs an MLP encoder_config"),
    ({"bob": {"encoder_config": {"hidden_size": "32"}}}, r"'hidden_size'.*must be a list of positive ints, got '32'"),
    ({"bob": {"encoder_config": {"activation": "Relu"}}}, r"'activation'.*is 'Relu'; expected one of"),
    ({"bob": {"latent_dim": "32"}}, r"'latent_dim'.*must be a positive int"),
    ({"bob": {"encoder_config": {"num_inputs": 16}}}, r"'num_inputs'.*is set from the spaces"),
    ({"bob": [32]}, r"net_config entry 'bob' must be a dict"),
])
def test_invalid_net_configs_raise_value_errors(net_config, match):
    with pytest.raises(ValueError, match=match):
        resolve_net_config(net_config, AGENT_IDS, OBSERVATION_SPACES)


def test_per_agent_key_when_sharing_parameters():
    with pytest.raises(ValueError, match="net_config key 'bob_0' is per-agent, but IPPO shares parameters within "
                                         "group 'bob'; configure 'bob' instead"):
        resolve_net_config(yaml.safe_load(PER_AGENT_YAML), AGENT_IDS, OBSERVATION_SPACES, share_parameters=True)


def test_per_agent_keys_that_cannot_disagree_are_accepted_when_sharing_parameters():
    # the guide's IPPO example: per-agent keys, each naming the only member of its group
    entry = {"encoder_config": {"hidden_size": [32, 32], "activation": "ReLU"}, "head_config": {"hidden_size": [32]}}
    shared = resolve_net_config({"speaker_0": entry, "listener_0": {**entry, "latent_dim": 16}},
                                ["speaker_0", "listener_0"], [Box(-1, 1, (3,)), Box(-1, 1, (11,))],
                                share_parameters=True)
    assert set(shared) == {"speaker", "listener"}
    assert shared["speaker"] == resolve_net_config({"speaker": entry}, ["speaker_0"], [Box(-1, 1, (3,))],
                                                   share_parameters=True)["speaker"]
    assert (shared["speaker"]["latent_dim"], shared["listener"]["latent_dim"]) == (32, 16)
    # every member of a group gets the same config (written differently, identical once completed)
    config = yaml.safe_load(PER_AGENT_YAML)
    config["bob_1"] = {"encoder_config": {"hidden_size": [32]}, "head_config": {"hidden_size": [32]}}
    shared = resolve_net_config(config, AGENT_IDS, OBSERVATION_SPACES, share_parameters=True)
    assert shared == resolve_net_config(yaml.safe_load(PER_GROUP_YAML), AGENT_IDS, OBSERVATION_SPACES,
                                        share_parameters=True)
    # a group entry that both members override is unused, but a typo in it still fails
    with pytest.raises(ValueError, match="unknown encoder_config key 'hiden_size' in net_config for group 'bob'"):
        resolve_net_config({**config, "bob": {"encoder_config": {"hiden_size": [8]}}}, AGENT_IDS,
                           OBSERVATION_SPACES, share_parameters=True)


@pytest.mark.parametrize("net_config", [
    {"bob_0": {"latent_dim": 16}},  # bob_1 would get the defaults
    {"bob_0": {"latent_dim": 16}, "bob": {"latent_dim": 16}},  # bob_1 would get bob's entry: equal, still ambiguous
    {"bob_0": {"latent_dim": 16}, "bob_1": {"latent_dim": 24}},
])
def test_per_agent_keys_that_disagree_are_refused_when_sharing_parameters(net_config):
    with pytest.raises(ValueError) as err:
        resolve_net_config(net_config, AGENT_IDS, OBSERVATION_SPACES, share_parameters=True)
    assert str(err.value) == ("net_config key 'bob_0' is per-agent, but IPPO shares parameters within group 'bob'; "
                              "configure 'bob' instead")
    # without sharing, each agent simply gets its own network
    assert resolve_net_config(net_config, AGENT_IDS, OBSERVATION_SPACES)["bob_0"]["latent_dim"] == 16


def test_group_with_different_spaces_cannot_share_parameters():
    spaces = [OBSERVATION_SPACES[0], OBSERVATION_SPACES[2], *OBSERVATION_SPACES[2:]]
    with pytest.raises(ValueError, match=r"shared within group 'bob', but its agents have different observation "
                                         r"spaces: bob_0 has Box.*\(16,\).*bob_1 has Box.*\(32,\)"):
        resolve_net_config(yaml.safe_load(PER_GROUP_YAML), AGENT_IDS, spaces, share_parameters=True)
    # without sharing, each agent simply gets its own network
    assert resolve_net_config(yaml.safe_load(PER_GROUP_YAML), AGENT_IDS, spaces)["bob_1"]["latent_dim"] == 32


def test_mlp_config_for_an_image_space():
    with pytest.raises(ValueError, match=r"for agent 'eve_0' has MLP key\(s\) \['hidden_size'\].*is an image, which "
                                         r"needs a CNN encoder_config \(channel_size, kernel_size, stride_size\)"):
        resolve_net_config(yaml.safe_load(SINGLE_LEVEL_YAML), ["bob_0", "eve_0"], [OBSERVATION_SPACES[0], IMAGE])
    with pytest.raises(ValueError, match=r"sets \['channel_size'\] but not \['kernel_size', 'stride_size'\]"):
        resolve_net_config({"encoder_config": {"channel_size": [16]}}, ["eve_0"], [IMAGE])


def test_unused_group_entry_is_still_checked():
    net_config = {"bob": {"encoder_config": {"hiden_size": [8]}}, "bob_0": {}, "bob_1": {}}
    with pytest.raises(ValueError, match="unknown encoder_config key 'hiden_size' in net_config for group 'bob'"):
        resolve_net_config(net_config, AGENT_IDS, OBSERVATION_SPACES)


def test_mismatched_lengths():
    with pytest.raises(ValueError, match="got 4 agent_ids but 2 observation_spaces"):
        resolve_net_config(None, AGENT_IDS, OBSERVATION_SPACES[:2])
