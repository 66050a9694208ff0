"""Exercise: generalised advantage estimation (GAE), the advantage IPPO's policy gradient uses."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from marlkit.exercises.checking import as_array, call, check_shape, not_none, run_check, same, wrong_array
from marlkit.exercises.solutions import gae as reference_gae

GAE_STUB = '''\
def gae(rewards, values, next_values, terminations, truncations, gamma, lam):
    """GAE(lambda) advantages of a rollout of T steps (one column per sub-env).

    rewards:      (T,) or (T, N) float array, r_t
    values:       same shape, V(s_t) of the observation the agent acted on at step t
    next_values:  same shape, V(s'_t) of the observation step t led to (where an episode ended:
                  its final observation, not the first observation of the next episode)
    terminations: same shape, 1.0 where the episode terminated at step t (a true end: no future)
    truncations:  same shape, 1.0 where a time limit cut the episode at step t (it had a future)
    gamma, lam:   discount factor and GAE lambda

        delta_t = r_t + gamma * (1 - terminated_t) * V(s'_t) - V(s_t)
        A_t     = delta_t + gamma * lam * (1 - done_t) * A_{t+1}     done_t = terminated_t or truncated_t

    with A_{t+1} = 0 after the last step. Returns the advantages A, same shape as rewards
    (the critic's returns are A + values).
    """
    # YOUR CODE HERE
    raise NotImplementedError
'''


def _gae_variant(rewards, values, next_values, terminations, truncations, gamma, lam, *,
                 stop_bootstrap="term", cut="done", decay=None, forward=False, shift_values=False):
    """GAE with one ingredient changed, to recognise a student's mistake (the defaults give the right answer)."""
    done = np.maximum(terminations, truncations)
    none = np.zeros_like(rewards)
    stop = {"term": terminations, "done": done, "none": none}[stop_bootstrap]
    keep = 1.0 - {"term": terminations, "done": done, "none": none}[cut]
    if shift_values:  # bootstrapping from values[t + 1], as if the rollout were one long episode
        next_values = np.concatenate([values[1:], next_values[-1:]])
    deltas = rewards + gamma * (1.0 - stop) * next_values - values
    decay = gamma * lam if decay is None else decay
    advantages = np.zeros_like(deltas)
    carried = np.zeros_like(deltas[0])
    steps = range(len(deltas)) if forward else reversed(range(len(deltas)))
    for t in steps:
        carried = deltas[t] + decay * keep[t] * carried
        advantages[t] = carried
    return advantages


# Common mistakes: each computes a wrong answer, so a student's result can be recognised. Where two give the
# same answer on a case (with no termination, cutting at terminations only = never cutting), the more
# specific one comes first.
GAE_MISTAKES = [
    (lambda **x: _gae_variant(**x, stop_bootstrap="none"),
     "your TD error bootstraps through terminal states: where terminations[t] = 1 there is no next state, so "
     "delta_t = r_t - V(s_t); multiply gamma * V(s'_t) by (1 - terminated_t)"),
    (lambda **x: _gae_variant(**x, stop_bootstrap="done"),
     "you stopped bootstrapping at a truncation: a time limit does not end the task, so delta_t still adds "
     "gamma * V(s'_t) there (that is why next_values holds the final observation's value); only "
     "terminations remove it"),
    (lambda **x: _gae_variant(**x, cut="term"),
     "after a truncation the next row belongs to a new episode: cut the recursion with "
     "done_t = terminated_t or truncated_t, not with terminations alone"),
    (lambda **x: _gae_variant(**x, cut="none"),
     "advantages leak across episode boundaries: multiply gamma * lam * A_{t+1} by (1 - done_t) so the "
     "recursion stops where an episode ends"),
    (lambda **x: _gae_variant(**x, decay=x["gamma"]),
     "the recursion is missing lam: A_t = delta_t + gamma * lam * (1 - done_t) * A_{t+1}"),
    (lambda **x: _gae_variant(**x, decay=x["lam"]),
     "the recursion is missing gamma: A_t = delta_t + gamma * lam * (1 - done_t) * A_{t+1}"),
    (lambda **x: _gae_variant(**x, decay=0.0),
     "you returned the TD errors delta_t: add the discounted advantage of the next step, "
     "gamma * lam * (1 - done_t) * A_{t+1}"),
    (lambda **x: _gae_variant(**x, forward=True),
     "your recursion runs forward in time: A_t sums the *future* TD errors, so loop t from T - 1 down to 0"),
    (lambda **x: _gae_variant(**x, shift_values=True),
     "you bootstrapped from values[t + 1]: use next_values[t], the value of the observation step t really led "
     "to (after an episode ends, values[t + 1] belongs to the next episode)"),
    (lambda **x: _gae_variant(**x) + x["values"],
     "you returned the returns A + V(s_t); return the advantages A"),
]


def _gae_cases() -> list[tuple[str, dict]]:
    rng = np.random.default_rng(7)
    zeros = np.zeros(4)
    end = np.array([0.0, 1.0, 0.0, 0.0])  # the episode ends at t = 1
    mixed_term, mixed_trunc = np.zeros((6, 3)), np.zeros((6, 3))
    mixed_term[2, 0] = mixed_term[1, 2] = 1.0  # column 0: terminated at t=2; column 2: at t=1 ...
    mixed_trunc[3, 1] = mixed_trunc[4, 2] = 1.0  # ... column 1: truncated at t=3; column 2: at t=4
    return [
        ("3 steps, no episode end, all values 0, gamma=lam=0.5", {
            "rewards": np.ones(3), "values": np.zeros(3), "next_values": np.zeros(3),
            "terminations": np.zeros(3), "truncations": np.zeros(3), "gamma": 0.5, "lam": 0.5}),
        ("4 steps, the episode terminates at t=1", {
            "rewards": np.array([1.0, 2.0, 0.0, -1.0]), "values": np.array([0.5, 1.0, 2.0, 0.5]),
            "next_values": np.array([1.0, 4.0, 0.5, 3.0]), "terminations": end, "truncations": zeros,
            "gamma": 0.9, "lam": 0.8}),
        ("4 steps, a time limit truncates the episode at t=1 (next_values[1] is V(final observation))", {
            "rewards": np.array([1.0, 2.0, 0.0, -1.0]), "values": np.array([0.5, 1.0, 2.0, 0.5]),
            "next_values": np.array([1.0, 4.0, 0.5, 3.0]), "terminations": zeros, "truncations": end,
            "gamma": 0.9, "lam": 0.8}),
        ("6 steps x 3 sub-envs, terminations and truncations, gamma=0.99, lam=0.95", {
            "rewards": rng.normal(size=(6, 3)), "values": rng.normal(size=(6, 3)),
            "next_values": rng.normal(size=(6, 3)), "terminations": mixed_term, "truncations": mixed_trunc,
            "gamma": 0.99, "lam": 0.95}),
    ]


def check_gae(fn: Callable, raise_on_fail: bool = False) -> bool:
    """Check ``gae(rewards, values, next_values, terminations, truncations, gamma, lam)`` (see ``GAE_STUB``)."""

    def check() -> str:
        cases = _gae_cases()
        for i, (name, inputs) in enumerate(cases):
            # give the student copies, so a function that writes into its inputs cannot change the reference
            args = [v.copy() if isinstance(v, np.ndarray) else v for v in inputs.values()]
            result = not_none(call(fn, *args), first=i == 0, what="the advantages, same shape as rewards")
            got, expected = as_array(result, "the advantages"), reference_gae(**inputs)
            check_shape(got, expected, "your advantages", name)
            if not same(got, expected):
                raise wrong_array(got, expected, GAE_MISTAKES, inputs, name)
        return f"correct on {len(cases)} cases (terminations, truncations, one and several sub-envs)"

    return run_check("gae", check, raise_on_fail)
