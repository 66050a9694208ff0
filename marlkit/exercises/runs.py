"""Exercises on complete training runs: the early-stopping rule and what a replay buffer of observations costs."""

from __future__ import annotations

from collections.abc import Callable
from numbers import Real
from types import SimpleNamespace

import numpy as np

from marlkit.buffers import MultiAgentReplayBuffer
from marlkit.exercises.checking import Mistake, call, equal, not_none, run_check
from marlkit.training.evolution import target_reached

# --------------------------------------------------------------------------------------------------
# early stopping: has every member reached the target?
# --------------------------------------------------------------------------------------------------
ALL_MEMBERS_REACHED_STUB = '''\
def all_members_reached(fitness_histories, target, window=3):
    """The early-stopping rule of train_multi_agent_off_policy.

    fitness_histories: list with one list of floats per member, oldest first (each agent's `fitness`)
    target:            float, or None for no early stopping
    window:            int, how many of each member's latest evaluations to average

    Returns True when every member has at least one evaluation and the mean of its last `window`
    evaluations is >= target; False otherwise, and always False when target is None.
    """
    # YOUR CODE HERE
    raise NotImplementedError
'''

# (what the case catches, fitness_histories, target, window): each description names the mistake it catches,
# so it is the feedback when the answer is wrong
ALL_MEMBERS_REACHED_CASES = [
    ("every member's mean is above the target", [[-40.0, -20.0, -25.0], [-31.0, -29.0, -28.0]], -30.0, 3),
    ("one member is below: not reached", [[-10.0, -12.0, -11.0], [-50.0, -45.0, -40.0]], -30.0, 3),
    ("a mean exactly at the target counts", [[-10.0], [-35.0, -25.0]], -30.0, 3),
    ("only the last `window` evaluations count", [[-100.0, -20.0, -20.0, -20.0]], -30.0, 3),
    ("the mean of the window, not the last value", [[-40.0, -31.0, -20.0]], -30.0, 3),
    ("a member never evaluated", [[], [-10.0]], -30.0, 3),
    ("target None: never stop early", [[-1.0]], None, 3),
    ("window 1", [[-50.0, -29.0], [-31.0, -30.0]], -30.0, 1),
]


def check_all_members_reached(fn: Callable, raise_on_fail: bool = False) -> bool:
    """Check ``all_members_reached(fitness_histories, target, window)`` against marlkit's ``target_reached``."""

    def check() -> str:
        for i, (what, histories, target, window) in enumerate(ALL_MEMBERS_REACHED_CASES):
            # target_reached reads each member's `fitness`: a namespace is all the "agent" it needs
            expected = target_reached([SimpleNamespace(fitness=h) for h in histories], target, window)
            result = call(fn, [list(h) for h in histories], target, window,
                          explain=lambda err, what=what: f"{what}: raised {type(err).__name__}: {err}")
            result = not_none(result, first=i == 0, what="True or False")
            try:
                reached = bool(result)
            except Exception as err:  # e.g. an array of several booleans: its truth value is ambiguous
                raise Mistake(f"return True or False, got {type(result).__name__}: {result!r}\n  case: {what}") from err
            if reached != expected:
                raise Mistake(f"{what}\n  fitness_histories={histories}, target={target}, window={window}\n"
                              f"  expected {expected}, got {result}")
        return f"all {len(ALL_MEMBERS_REACHED_CASES)} cases agree with marlkit's target_reached"

    return run_check("all_members_reached", check, raise_on_fail)


# --------------------------------------------------------------------------------------------------
# the memory a replay buffer reserves for observations
# --------------------------------------------------------------------------------------------------
OBSERVATION_NBYTES_STUB = '''\
def observation_nbytes(memory_size, num_agents, obs_shape, dtype):
    """Bytes a replay buffer reserves for the observations of its transitions.

    memory_size: int, transitions the buffer holds
    num_agents:  int, agents per transition
    obs_shape:   tuple of ints, one agent's observation, e.g. (4, 84, 84)
    dtype:       numpy dtype of the observations, e.g. np.uint8 (use np.dtype(dtype).itemsize)

    Every transition stores two observations per agent: `state` and `next_state`.
    Returns an int.
    """
    # YOUR CODE HERE
    raise NotImplementedError
'''

# (memory_size, num_agents, obs_shape, dtype): Space Invaders frames in uint8 and float32, Speaker Listener's
# vector observations, and an odd shape
OBSERVATION_NBYTES_CASES = [
    (1_000, 2, (4, 84, 84), np.uint8),
    (500, 2, (4, 84, 84), np.float32),
    (64, 3, (11,), np.float32),
    (10, 1, (2, 3, 5), np.uint8),
]


def _reserved_nbytes(memory_size: int, num_agents: int, obs_shape: tuple[int, ...], dtype: type) -> int:
    """What a real MultiAgentReplayBuffer of ``state`` and ``next_state`` reserves (the check's answer)."""
    agents = [f"agent_{i}" for i in range(num_agents)]
    buffer = MultiAgentReplayBuffer(memory_size, ["state", "next_state"], agents)
    one = {a: np.zeros((1, *obs_shape), dtype=dtype) for a in agents}
    buffer.save_to_memory(one, one, is_vectorised=True)  # the first save allocates the arrays
    return buffer.nbytes


def _nbytes_hint(got: object, expected: int, dtype: type) -> str:
    """A hint for two common mistakes, recognised by how far the answer is off."""
    if not isinstance(got, Real):
        return ""
    if 2 * got == expected:
        return " (half: did you count next_state?)"
    if got * np.dtype(dtype).itemsize == expected:
        return " (did you forget the bytes per element?)"
    return ""


def check_observation_nbytes(fn: Callable, raise_on_fail: bool = False) -> bool:
    """Check ``observation_nbytes(memory_size, num_agents, obs_shape, dtype)`` against real replay buffers."""

    def check() -> str:
        for i, (memory_size, num_agents, obs_shape, dtype) in enumerate(OBSERVATION_NBYTES_CASES):
            case = f"memory_size={memory_size}, num_agents={num_agents}, obs_shape={obs_shape}, dtype={np.dtype(dtype)}"
            result = call(fn, memory_size, num_agents, obs_shape, dtype,
                          explain=lambda err, case=case: f"{case}: raised {type(err).__name__}: {err}")
            got = not_none(result, first=i == 0, what="a number of bytes (an int)")
            expected = _reserved_nbytes(memory_size, num_agents, obs_shape, dtype)
            if not equal(got, expected):
                hint = _nbytes_hint(got, expected, dtype)
                raise Mistake(f"{case}\n  expected {expected:,} bytes, got {got}{hint}")
        return f"all {len(OBSERVATION_NBYTES_CASES)} cases match the bytes MultiAgentReplayBuffer reserves"

    return run_check("observation_nbytes", check, raise_on_fail)
