"""net_config: from what a user writes (the guide's YAML) to one complete config per network.

A network config has five keys::

    latent_dim: 32              # encoder output size = head input size (mutable)
    min_latent_dim: 8           # bounds for latent mutations
    max_latent_dim: 128
    encoder_config: {...}       # EvolvableMLP keys for vector observations, EvolvableCNN keys for images
    head_config: {...}          # EvolvableMLP keys

`resolve_net_config` accepts the three forms of the guide ("Configuring Network Architectures"):

* single-level: the five keys above, used for every agent;
* nested per agent id: ``{"bob_0": {...}, "bob_1": {...}, ...}``;
* nested per group id: ``{"bob": {...}, "fred": {...}}`` where ``group_id("bob_1") == "bob"``.

Agent and group entries may be mixed; an agent's own entry replaces its group's entry (entries are
not merged). With ``share_parameters=True`` (IPPO: one network per group) the result is keyed by group,
and a group's network is configured by its group entry, or by per-agent entries when they cannot
disagree: the entry of a group's only member (the guide's IPPO example configures ``speaker_0`` and
``listener_0``, groups of one), or entries for every member that resolve to the same config. Per-agent
entries that would give one shared network two architectures (``bob_0`` and ``bob_1`` different, or
``bob_0`` alone while ``bob_1`` falls back to ``bob``/defaults) are refused. Agents that no entry
mentions get defaults chosen from their observation space (an MLP for vectors, a CNN for images).
Every key is checked, so a typo such as ``hiden_size`` fails loudly instead of silently falling back
to a default.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence

from gymnasium import spaces

from marlkit.networks.cnn import conv_output_shape
from marlkit.networks.evolvable import ACTIVATIONS
from marlkit.networks.spaces import encoder_kind, image_shape

NETWORK_DEFAULTS = {"latent_dim": 32, "min_latent_dim": 8, "max_latent_dim": 128}
NETWORK_KEYS = ("latent_dim", "min_latent_dim", "max_latent_dim", "encoder_config", "head_config")

MLP_DEFAULTS = {
    "hidden_size": [64],
    "activation": "ReLU",
    "output_activation": None,
    "min_hidden_layers": 1,
    "max_hidden_layers": 4,
    "min_mlp_nodes": 16,
    "max_mlp_nodes": 512,
    "layer_norm": False,
}
CNN_DEFAULTS = {
    "channel_size": [32, 64, 64],
    "kernel_size": [8, 4, 3],
    "stride_size": [4, 2, 1],
    "activation": "ReLU",
    "output_activation": None,
    "min_hidden_layers": 1,
    "max_hidden_layers": 6,
    "min_channel_size": 8,
    "max_channel_size": 256,
    "min_kernel_size": 1,
    "max_kernel_size": 8,
}
# The DQN "Nature" CNN for Atari-sized images, smaller stacks for smaller images: the first that fits.
CNN_PRESETS = (
    {"channel_size": [32, 64, 64], "kernel_size": [8, 4, 3], "stride_size": [4, 2, 1]},
    {"channel_size": [16, 32], "kernel_size": [3, 3], "stride_size": [1, 1]},
    {"channel_size": [16], "kernel_size": [1], "stride_size": [1]},
)
CNN_ARCHITECTURE_KEYS = ("channel_size", "kernel_size", "stride_size")
DERIVED_KEYS = ("num_inputs", "num_outputs", "input_shape")  # set from the spaces, never by the user


# --------------------------------------------------------------------------------------------------
# agent ids and groups
# --------------------------------------------------------------------------------------------------
def group_id(agent_id: str) -> str:
    """"bob_1" -> "bob"; an id without an ``_<int>`` suffix is its own group ("adversary" -> "adversary")."""
    match = re.fullmatch(r"(.+)_\d+", agent_id)
    return match.group(1) if match else agent_id


def group_agents(agent_ids: Sequence[str]) -> dict[str, list[str]]:
    """{"bob": ["bob_0", "bob_1"], "fred": [...]}, groups and members in first-seen order."""
    groups: dict[str, list[str]] = {}
    for agent in agent_ids:
        groups.setdefault(group_id(agent), []).append(agent)
    return groups


# --------------------------------------------------------------------------------------------------
# one network's config: check every key, fill the defaults
# --------------------------------------------------------------------------------------------------
def default_cnn_architecture(space: spaces.Space) -> dict:
    """channel/kernel/stride sizes of the first preset whose kernels fit the image."""
    for preset in CNN_PRESETS:
        if conv_output_shape(image_shape(space), **preset) is not None:
            return copy.deepcopy(preset)
    raise ValueError(f"image space {space} is too small for any default CNN; pass an encoder_config")


def _check_keys(config: dict, allowed: dict, section: str, where: str) -> None:
    if not isinstance(config, dict):
        raise ValueError(f"{section} in {where} must be a dict, got {type(config).__name__}: {config!r}")
    for key in config:
        if key in DERIVED_KEYS:
            raise ValueError(f"{section} key {key!r} in {where} is set from the spaces and latent_dim; remove it")
        if key not in allowed:
            raise ValueError(f"unknown {section} key {key!r} in {where}; expected one of {list(allowed)}")


def _check_values(config: dict, section: str, where: str) -> None:
    for key in ("hidden_size", *CNN_ARCHITECTURE_KEYS):
        if key in config:
            sizes = config[key]
            if not isinstance(sizes, (list, tuple)) or not all(isinstance(s, int) and s > 0 for s in sizes):
                raise ValueError(f"{section} key {key!r} in {where} must be a list of positive ints, got {sizes!r}")
    for key in ("activation", "output_activation"):
        name = config.get(key)
        if name is not None and name not in ACTIVATIONS:
            raise ValueError(f"{section} key {key!r} in {where} is {name!r}; expected one of {sorted(ACTIVATIONS)}"
                             + (" or None" if key == "output_activation" else ""))


def complete_encoder_config(space: spaces.Space, encoder_config: dict | None, where: str = "net_config") -> dict:
    """Check an encoder_config against the observation space and fill every missing key."""
    config = {} if encoder_config is None else encoder_config
    _check_keys(config, {**MLP_DEFAULTS, **CNN_DEFAULTS}, "encoder_config", where)
    kind = encoder_kind(space)
    if kind == "cnn":
        wrong = [k for k in config if k not in CNN_DEFAULTS]
        if wrong:
            raise ValueError(f"encoder_config in {where} has MLP key(s) {wrong}, but the observation space {space} "
                             f"is an image, which needs a CNN encoder_config ({', '.join(CNN_ARCHITECTURE_KEYS)})")
        given = [k for k in CNN_ARCHITECTURE_KEYS if k in config]
        if given and len(given) != len(CNN_ARCHITECTURE_KEYS):
            missing = [k for k in CNN_ARCHITECTURE_KEYS if k not in config]
            raise ValueError(f"encoder_config in {where} sets {given} but not {missing}; "
                             f"give all of {list(CNN_ARCHITECTURE_KEYS)} (one entry per conv layer)")
        defaults = {**CNN_DEFAULTS, **default_cnn_architecture(space)}
    else:
        wrong = [k for k in config if k not in MLP_DEFAULTS]
        if wrong:
            raise ValueError(f"encoder_config in {where} has CNN key(s) {wrong}, but the observation space {space} "
                             f"is a vector, which needs an MLP encoder_config (hidden_size)")
        defaults = MLP_DEFAULTS
    _check_values(config, "encoder_config", where)
    complete = {**copy.deepcopy(defaults), **copy.deepcopy(config)}
    if "output_activation" not in config:
        complete["output_activation"] = complete["activation"]  # the latent is a hidden layer, not an output
    return complete


def complete_head_config(head_config: dict | None, where: str = "net_config") -> dict:
    """Check a head_config (EvolvableMLP keys) and fill every missing key."""
    config = {} if head_config is None else head_config
    _check_keys(config, MLP_DEFAULTS, "head_config", where)
    _check_values(config, "head_config", where)
    return {**copy.deepcopy(MLP_DEFAULTS), **copy.deepcopy(config)}


def encoder_config_fits(space: spaces.Space, encoder_config: dict | None) -> bool:
    """Whether encoder_config has only keys the space's encoder kind (MLP or CNN) understands."""
    allowed = CNN_DEFAULTS if encoder_kind(space) == "cnn" else MLP_DEFAULTS
    return encoder_config is None or all(key in allowed for key in encoder_config)


def check_net_config(net_config: dict | None, where: str = "net_config") -> dict:
    """Check the top-level keys of a single-network config (not the encoder/head contents)."""
    config = {} if net_config is None else net_config
    _check_keys(config, dict.fromkeys(NETWORK_KEYS), "net_config", where)
    for key in NETWORK_DEFAULTS:
        if key in config and not (isinstance(config[key], int) and config[key] > 0):
            raise ValueError(f"net_config key {key!r} in {where} must be a positive int, got {config[key]!r}")
    return config


def complete_net_config(space: spaces.Space, net_config: dict | None, where: str = "net_config") -> dict:
    """A complete single-network config (all five keys) for one observation space."""
    config = check_net_config(net_config, where)
    return {
        **{key: config.get(key, default) for key, default in NETWORK_DEFAULTS.items()},
        "encoder_config": complete_encoder_config(space, config.get("encoder_config"), where),
        "head_config": complete_head_config(config.get("head_config"), where),
    }


# --------------------------------------------------------------------------------------------------
# the multi-agent forms
# --------------------------------------------------------------------------------------------------
def resolve_net_config(
    net_config: dict | None,
    agent_ids: Sequence[str],
    observation_spaces: Sequence[spaces.Space],
    share_parameters: bool = False,
) -> dict[str, dict]:
    """One complete network config per agent id, or per group id when ``share_parameters=True``.

    Raises ValueError (naming the key and what was expected) for unknown keys, keys that are neither
    an agent nor a group, per-agent keys that could disagree within a group that shares parameters,
    groups whose agents have different observation spaces when sharing, and encoder configs of the
    wrong kind for a space.
    """
    agent_ids = list(agent_ids)
    if len(agent_ids) != len(observation_spaces):
        raise ValueError(f"got {len(agent_ids)} agent_ids but {len(observation_spaces)} observation_spaces")
    space_of = dict(zip(agent_ids, observation_spaces))
    groups = group_agents(agent_ids)
    net_config = {} if net_config is None else net_config
    if not isinstance(net_config, dict):
        raise ValueError(f"net_config must be a dict (or None), got {type(net_config).__name__}")

    if share_parameters:
        for group, members in groups.items():
            different = [a for a in members if space_of[a] != space_of[members[0]]]
            if different:
                raise ValueError(
                    f"parameters are shared within group '{group}', but its agents have different observation "
                    f"spaces: {members[0]} has {space_of[members[0]]}, {different[0]} has {space_of[different[0]]}; "
                    f"give them different group ids or do not share parameters")

    single_level = any(key in NETWORK_KEYS for key in net_config)
    if single_level:
        entries = {}  # every agent uses net_config itself
    else:
        entries = net_config
        for key, entry in entries.items():
            if key not in space_of and key not in groups:
                raise ValueError(
                    f"net_config key {key!r} is neither an agent id {agent_ids} nor a group id {list(groups)}; "
                    f"a single-level net_config uses the keys {list(NETWORK_KEYS)}")
            if not isinstance(entry, dict):
                raise ValueError(f"net_config entry {key!r} must be a dict, got {type(entry).__name__}: {entry!r}")

    def entry_for(agent: str) -> dict:
        if single_level:
            return net_config
        return entries.get(agent, entries.get(group_id(agent), {}))

    if share_parameters:
        return {group: shared_group_config(group, members, entries, entry_for, space_of[members[0]])
                for group, members in groups.items()}
    resolved = {
        agent: complete_net_config(space_of[agent], entry_for(agent), f"net_config for agent '{agent}'")
        for agent in agent_ids
    }
    check_unused_group_entries(entries, groups, space_of)
    return resolved


def shared_group_config(group: str, members: Sequence[str], entries: dict, entry_for, space: spaces.Space) -> dict:
    """The one config of a group whose members share a network (``resolve_net_config(share_parameters=True)``).

    Per-agent entries are fine when they cannot disagree: every member has one and all resolve to the same
    config (a group of one always does). Otherwise the shared network would need two architectures at once.
    """
    per_agent = [agent for agent in members if agent in entries and agent != group]
    if not per_agent:
        return complete_net_config(space, entry_for(members[0]), f"net_config for group '{group}'")
    configs = {agent: complete_net_config(space, entries[agent], f"net_config for agent '{agent}'")
               for agent in per_agent}
    if len(per_agent) < len(members) or any(config != configs[per_agent[0]] for config in configs.values()):
        raise ValueError(
            f"net_config key {per_agent[0]!r} is per-agent, but IPPO shares parameters within group "
            f"'{group}'; configure '{group}' instead")
    if group in entries:  # every member overrides it: unused, but a typo in it should still fail
        complete_net_config(space, entries[group], f"net_config for group '{group}'")
    return configs[per_agent[0]]


def check_unused_group_entries(entries: dict, groups: dict[str, list[str]], space_of: dict) -> None:
    """A group entry that every member overrides is unused, but a typo in it should still fail."""
    for key, entry in entries.items():
        if key in groups and key not in space_of and all(a in entries for a in groups[key]):
            complete_net_config(space_of[groups[key][0]], entry, f"net_config for group '{key}'")
