"""Classroom exercises in the Spinning Up style: a statement, a ``# YOUR CODE HERE`` stub, a check.

In a notebook::

    from marlkit.exercises import check_soft_update

    def soft_update(target_params, source_params, tau):
        # YOUR CODE HERE
        raise NotImplementedError

    check_soft_update(soft_update)   # prints "✗ soft_update: not implemented yet", returns False

A check runs the function on several cases against the reference in ``marlkit.exercises.solutions``
and prints "✓ ..." or what is wrong (for example "tau is applied the wrong way round"). It never
raises, so a notebook full of stubs still runs from top to bottom; ``raise_on_fail=True`` turns a
failure into an ``AssertionError`` (for tests and autograders).

``EXERCISES[name]`` is ``Exercise(check, stub, solution)``: the check function, the stub's source
(with the problem statement as its docstring) and the reference solution. Every stub in the course
notebooks is one of them; ``marlkit.exercises.notebooks.solutions_notebook`` turns a notebook into its
solutions version (``make solutions``).
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from typing import NamedTuple

from marlkit.exercises import solutions
from marlkit.exercises.gae import GAE_STUB, check_gae
from marlkit.exercises.net_config import (
    MY_GROUP_AGENTS_STUB,
    RESOLVE_FOR_AGENT_STUB,
    check_group_agents,
    check_resolve_for_agent,
)
from marlkit.exercises.runs import (
    ALL_MEMBERS_REACHED_STUB,
    OBSERVATION_NBYTES_STUB,
    check_all_members_reached,
    check_observation_nbytes,
)
from marlkit.exercises.selection import (
    SELECT_PARENTS_STUB,
    TOURNAMENT_WINNER_STUB,
    check_select_parents,
    check_tournament_winner,
)
from marlkit.exercises.targets import (
    CRITIC_TARGET_STUB,
    SOFT_UPDATE_STUB,
    TD3_TARGET_STUB,
    check_critic_target,
    check_soft_update,
    check_td3_target,
)


class Exercise(NamedTuple):
    """One exercise: ``check(fn, raise_on_fail=False) -> bool``, the stub's source, the reference solution."""

    check: Callable[..., bool]
    stub: str
    solution: Callable

    @property
    def statement(self) -> str:
        """The problem statement: the stub's docstring."""
        return ast.get_docstring(ast.parse(self.stub).body[0]) or ""


# In the order of the chapters, keyed by the name of the function the student writes (the stub's name).
EXERCISES: dict[str, Exercise] = {
    "my_group_agents": Exercise(check_group_agents, MY_GROUP_AGENTS_STUB, solutions.my_group_agents),
    "resolve_for_agent": Exercise(check_resolve_for_agent, RESOLVE_FOR_AGENT_STUB, solutions.resolve_for_agent),
    "soft_update": Exercise(check_soft_update, SOFT_UPDATE_STUB, solutions.soft_update),
    "critic_target": Exercise(check_critic_target, CRITIC_TARGET_STUB, solutions.critic_target),
    "td3_target": Exercise(check_td3_target, TD3_TARGET_STUB, solutions.td3_target),
    "gae": Exercise(check_gae, GAE_STUB, solutions.gae),
    "tournament_winner": Exercise(check_tournament_winner, TOURNAMENT_WINNER_STUB, solutions.tournament_winner),
    "select_parents": Exercise(check_select_parents, SELECT_PARENTS_STUB, solutions.select_parents),
    "all_members_reached": Exercise(check_all_members_reached, ALL_MEMBERS_REACHED_STUB, solutions.all_members_reached),
    "observation_nbytes": Exercise(check_observation_nbytes, OBSERVATION_NBYTES_STUB, solutions.observation_nbytes),
}

__all__ = [
    "EXERCISES",
    "Exercise",
    "check_all_members_reached",
    "check_critic_target",
    "check_gae",
    "check_group_agents",
    "check_observation_nbytes",
    "check_resolve_for_agent",
    "check_select_parents",
    "check_soft_update",
    "check_td3_target",
    "check_tournament_winner",
    "solutions",
]
