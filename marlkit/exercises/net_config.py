"""Exercises on agent groups: group agent ids by group id, and which net_config entry an agent uses."""

from __future__ import annotations

import copy
from collections.abc import Callable

from marlkit.exercises.checking import Mistake, call, equal, not_none, run_check
from marlkit.exercises.solutions import resolve_for_agent as reference_resolve
from marlkit.networks.config import NETWORK_KEYS, group_agents, group_id

# --------------------------------------------------------------------------------------------------
# grouping agent ids
# --------------------------------------------------------------------------------------------------
MY_GROUP_AGENTS_STUB = '''\
def my_group_agents(agent_ids):
    """Group agent ids by their group id, as marlkit's group_agents does.

    agent_ids: list of agent ids, e.g. ["bob_0", "bob_1", "fred_0"]

    Returns a dict {group_id: [agent ids]}, e.g. {"bob": ["bob_0", "bob_1"], "fred": ["fred_0"]}:
    groups in the order their first agent appears in agent_ids, and each group's agents in their
    order in agent_ids. Use my_group_id from above for an agent's group id ("red_team_12" ->
    "red_team", "agent_x" -> "agent_x").
    """
    # YOUR CODE HERE
    raise NotImplementedError
'''

GROUP_AGENTS_CASES = [
    ["bob_0", "bob_1", "fred_0", "fred_1"],
    ["speaker_0", "listener_0"],
    ["red_1", "blue_0", "red_0", "referee"],
    ["agent_10", "agent_2", "agent_x", "agent_x_3"],
]


def _grouped_by(agent_ids: list[str], group_of: Callable[[str], str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for agent in agent_ids:
        groups.setdefault(group_of(agent), []).append(agent)
    return groups


# Common mistakes: each returns the wrong grouping a student's code would give.
GROUP_AGENTS_MISTAKES = [
    (lambda ids: {g: sorted(members) for g, members in group_agents(ids).items()},
     "each group's agents keep their order in agent_ids: do not sort them"),
    (lambda ids: _grouped_by(ids, lambda agent: agent.split("_")[0]),
     "the group id drops only a trailing _<int>: the group of 'agent_x_3' is 'agent_x', not 'agent' "
     "(use my_group_id)"),
    (lambda ids: _grouped_by(ids, lambda agent: agent.rsplit("_", 1)[0]),
     "an id without a _<int> suffix is its own group: the group of 'agent_x' is 'agent_x' (use my_group_id)"),
    (lambda ids: {g: members[:1] for g, members in group_agents(ids).items()},
     "each group lists all of its agents, not only the first one"),
    (lambda ids: {g: len(members) for g, members in group_agents(ids).items()},
     "each group maps to the list of its agent ids, not to how many there are"),
]


def _explain_group_agents_error(agent_ids: list[str]) -> Callable[[Exception], str]:
    return lambda err: f"your function raised {type(err).__name__}: {err}\n  agent_ids={agent_ids}"


def check_group_agents(fn: Callable, raise_on_fail: bool = False) -> bool:
    """Check ``my_group_agents(agent_ids)`` against marlkit's ``group_agents`` (see ``MY_GROUP_AGENTS_STUB``)."""

    def check() -> str:
        for i, agent_ids in enumerate(GROUP_AGENTS_CASES):
            result = call(fn, list(agent_ids), explain=_explain_group_agents_error(agent_ids))
            got = not_none(result, first=i == 0, what="a dict {group_id: [agent ids]}")
            if not isinstance(got, dict):
                raise Mistake(f"return a dict {{group_id: [agent ids]}}, got {type(got).__name__}: {got!r}")
            expected = group_agents(agent_ids)
            if equal(got, expected) and list(got) == list(expected):
                continue
            if equal(got, expected):  # equal dicts in another order: only the order of the groups is wrong
                message = f"the groups come in the order their first agent appears in agent_ids: {list(expected)}"
            else:
                message = next((m for wrong, m in GROUP_AGENTS_MISTAKES if equal(wrong(agent_ids), got)), None)
            detail = f"for {agent_ids} expected {expected}, got {got}"
            raise Mistake(f"{message}\n  {detail}" if message else detail)
        return f"matches marlkit's group_agents on {len(GROUP_AGENTS_CASES)} lists of agent ids"

    return run_check("my_group_agents", check, raise_on_fail)


# --------------------------------------------------------------------------------------------------
# which net_config entry an agent uses
# --------------------------------------------------------------------------------------------------
RESOLVE_FOR_AGENT_STUB = '''\
def resolve_for_agent(net_config, agent_id):
    """The entry of `net_config` that agent `agent_id` uses (before defaults are filled in).

    net_config: a dict in one of the guide's three forms
                single-level: {"latent_dim": ..., "encoder_config": ..., "head_config": ...}
                per agent:    {"bob_0": {...}, "bob_1": {...}}
                per group:    {"bob": {...}, "fred": {...}}   (agent and group keys may be mixed)
    agent_id:   e.g. "bob_1"; its group id drops a trailing "_<int>" ("bob_1" -> "bob",
                "blue_team_2" -> "blue_team", "adversary" -> "adversary")

    Returns: net_config itself if it is single-level (it has a key such as "latent_dim",
    "encoder_config" or "head_config"); else the agent's own entry; else its group's entry; else {}
    (the agent gets the defaults). An agent's own entry replaces its group's: they are not merged.
    Do not modify net_config. (`from marlkit.networks import group_id` is allowed.)
    """
    # YOUR CODE HERE
    raise NotImplementedError
'''

A = {"latent_dim": 16, "encoder_config": {"hidden_size": [32]}}
B = {"encoder_config": {"hidden_size": [64, 64], "activation": "Tanh"}}
C = {"head_config": {"hidden_size": [8]}}

# (net_config, agent_id, description)
RESOLVE_CASES = [
    ({"bob": A, "fred": B}, "bob_1", "per group: bob_1 uses the 'bob' entry"),
    ({"bob_0": A, "bob_1": C, "fred_0": B}, "bob_1", "per agent"),
    ({"latent_dim": 32, "encoder_config": {"hidden_size": [16]}}, "fred_0", "single-level: one config for everyone"),
    ({"bob": A, "bob_1": C}, "bob_1", "mixed: bob_1 has its own entry and a group entry"),
    ({"bob": A, "bob_1": C}, "bob_0", "mixed: bob_0 has only the group entry"),
    ({"blue_team": B, "blue": C}, "blue_team_2", "a group id with an underscore in it"),
    ({"adversary": C, "agent": A}, "adversary", "an id without a _<int> suffix is its own group"),
    ({"fred": B}, "bob_0", "no entry mentions bob_0"),
]


def _single_level(net_config: dict) -> bool:
    return any(key in NETWORK_KEYS for key in net_config)


def _merged(net_config: dict, agent_id: str) -> dict:
    if _single_level(net_config):
        return net_config
    return {**net_config.get(group_id(agent_id), {}), **net_config.get(agent_id, {})}


def _group_first(net_config: dict, agent_id: str) -> dict:
    if _single_level(net_config):
        return net_config
    return net_config.get(group_id(agent_id), net_config.get(agent_id, {}))


def _no_single_level(net_config: dict, agent_id: str) -> dict:
    return net_config.get(agent_id, net_config.get(group_id(agent_id), {}))


def _group_by_first_underscore(net_config: dict, agent_id: str) -> dict:
    if _single_level(net_config):
        return net_config
    return net_config.get(agent_id, net_config.get(agent_id.split("_")[0], {}))


def _agent_only(net_config: dict, agent_id: str) -> dict:
    return net_config if _single_level(net_config) else net_config.get(agent_id, {})


# Common mistakes: each returns the wrong entry a student's code would give.
RESOLVE_MISTAKES = [
    (_merged, "entries are not merged: an agent's own entry replaces its group's entry completely"),
    (_group_first, "the group entry won over the agent's own entry: an agent's own entry takes precedence"),
    (_no_single_level, "a single-level net_config (keys such as latent_dim, encoder_config, head_config) applies "
                       "to every agent: return net_config itself"),
    (_group_by_first_underscore, "the group id drops only a trailing _<int>: the group of 'blue_team_2' is "
                                 "'blue_team', not 'blue' (use marlkit.networks.group_id)"),
    (_agent_only, "an agent without its own entry uses its group's entry ('bob_1' -> 'bob')"),
]


def _explain_resolve_error(err: Exception) -> str | None:
    if isinstance(err, KeyError):
        return (f"KeyError {err}: an agent that no entry mentions gets the defaults, so return {{}} instead "
                "of looking up a key that may be missing (use dict.get)")
    return None


def check_resolve_for_agent(fn: Callable, raise_on_fail: bool = False) -> bool:
    """Check ``resolve_for_agent(net_config, agent_id)`` (see ``RESOLVE_FOR_AGENT_STUB``)."""

    def check() -> str:
        for i, (net_config, agent_id, name) in enumerate(RESOLVE_CASES):
            given = copy.deepcopy(net_config)
            result = call(fn, given, agent_id, explain=_explain_resolve_error)
            result = not_none(result, first=i == 0, what="a dict ({} when no entry applies)")
            if given != net_config:
                raise Mistake(f"you modified net_config: resolving must leave it as it was\n  case: {name}")
            expected = reference_resolve(net_config, agent_id)
            if result != expected:
                message = next((m for wrong, m in RESOLVE_MISTAKES if wrong(net_config, agent_id) == result),
                               f"{agent_id} should get {expected}")
                raise Mistake(f"{message}\n  case: {name}\n  net_config={net_config}, agent_id={agent_id!r}\n"
                              f"  got: {result}\n  expected: {expected}")
        return f"correct on {len(RESOLVE_CASES)} cases (single-level, per agent, per group, mixed, defaults)"

    return run_check("resolve_for_agent", check, raise_on_fail)
