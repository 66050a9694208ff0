"""Exercises on targets: the soft (Polyak) target update, MADDPG's TD target and MATD3's clipped double-Q."""

from __future__ import annotations

from collections.abc import Callable

import torch

from marlkit.exercises.checking import (
    Mistake,
    NotImplementedYet,
    as_array,
    call,
    check_shape,
    fmt,
    not_none,
    run_check,
    same,
    wrong_array,
)

# --------------------------------------------------------------------------------------------------
# soft target update
# --------------------------------------------------------------------------------------------------
SOFT_UPDATE_STUB = '''\
def soft_update(target_params, source_params, tau):
    """Move every target tensor a fraction tau of the way towards its source tensor, in place.

    target_params: list of tensors, e.g. list(actor_target.parameters())
    source_params: list of tensors of the same shapes, e.g. list(actor.parameters())
    tau:           float in [0, 1]; 0 keeps the target, 1 copies the source

    For every pair (t, s):   t <- tau * s + (1 - tau) * t
    Change the tensors themselves (the target network holds them) and return nothing. Network
    parameters require gradients, so do the update inside `with torch.no_grad():`.
    """
    # YOUR CODE HERE
    raise NotImplementedError
'''


def _soft_update_cases() -> list[tuple[str, list[torch.Tensor], list[torch.Tensor], float]]:
    """(description, targets, sources, tau), freshly built for every check."""
    gen = torch.Generator().manual_seed(0)

    def params(*shapes: tuple[int, ...]) -> list[torch.Tensor]:
        return [torch.nn.Parameter(torch.randn(*shape, generator=gen)) for shape in shapes]

    return [
        ("tau=0.01, target all zeros, source all ones", [torch.zeros(3), torch.zeros(2, 2)],
         [torch.ones(3), torch.ones(2, 2)], 0.01),
        ("tau=0.3, parameters of a Linear(3, 2) layer (requires_grad=True)", params((2, 3), (2,)),
         params((2, 3), (2,)), 0.3),
        ("tau=1.0 (a hard update)", [torch.randn(4, generator=gen)], [torch.randn(4, generator=gen)], 1.0),
    ]


def _explain_soft_update_error(err: Exception) -> str | None:
    if isinstance(err, RuntimeError) and "requires grad" in str(err):
        return ("an in-place change of a parameter that requires grad is refused by autograd: "
                f"do the update inside `with torch.no_grad():` ({err})")
    return None


def _fraction_moved(before: list[torch.Tensor], after: list[torch.Tensor], sources: list[torch.Tensor]) -> float | None:
    """alpha if every target moved the same fraction alpha of the way to its source, else None."""
    gap = torch.cat([(s - t).flatten() for t, s in zip(before, sources)]).double()
    moved = torch.cat([(a - t).flatten() for t, a in zip(before, after)]).double()
    if float(gap.pow(2).sum()) == 0.0:
        return None
    alpha = float((moved * gap).sum() / gap.pow(2).sum())
    return alpha if torch.allclose(moved, alpha * gap, atol=1e-5) else None


def _check_soft_update_case(fn: Callable, case: tuple, first: bool) -> None:
    name, targets, sources, tau = case
    before = [t.detach().clone() for t in targets]
    sources_before = [s.detach().clone() for s in sources]
    passed = list(targets)  # the list the student gets; `targets` keeps the original tensor objects
    result = call(fn, passed, sources, tau, explain=_explain_soft_update_error)
    expected = [tau * s + (1 - tau) * t for t, s in zip(before, sources_before)]
    after = [t.detach() for t in targets]

    if any(p is not t for p, t in zip(passed, targets)) or len(passed) != len(targets):
        raise Mistake("you replaced entries of the target_params list, but the target network still holds the old "
                      f"tensors; change the tensors themselves (t.copy_(...), t.mul_(...).add_(...))\n  case: {name}")
    if any(not torch.equal(s.detach(), s0) for s, s0 in zip(sources, sources_before)):
        raise Mistake(f"you changed source_params: only the target moves towards the source\n  case: {name}")
    changed = [not torch.equal(a, b) for a, b in zip(after, before)]
    if not any(changed):
        if first and result is None:
            raise NotImplementedYet("target_params is unchanged; if you wrote it, note that `t = ...` only rebinds "
                                    "the name t: update the tensor in place")
        hint = "you returned new tensors, but" if result is not None else "after your function"
        raise Mistake(f"{hint} target_params is unchanged: update each target tensor in place, e.g. "
                      f"t.mul_(1 - tau).add_(tau * s) inside torch.no_grad()\n  case: {name}")
    if all(torch.allclose(a, e, atol=1e-6) for a, e in zip(after, expected)):
        return
    if not all(changed):
        raise Mistake(f"only {sum(changed)} of {len(changed)} target tensors changed: update every pair "
                      f"(a `return` inside the loop?)\n  case: {name}")
    alpha = _fraction_moved(before, after, sources_before)
    if alpha is not None and abs(alpha - (1 - tau)) < 1e-4:
        message = (f"tau is applied the wrong way round: the target moved {alpha:.0%} of the way to the source, "
                   f"but with tau={tau} it should move {tau:.0%} (t <- tau * s + (1 - tau) * t)")
    elif alpha is not None and abs(alpha - 1) < 1e-4:
        message = (f"the target was copied from the source (a hard update); with tau={tau} it should move only "
                   f"{tau:.0%} of the way")
    elif alpha is not None:
        message = f"the target moved {alpha:.1%} of the way to the source; with tau={tau} it should move {tau:.0%}"
    else:
        k = next(i for i, (a, e) in enumerate(zip(after, expected)) if not torch.allclose(a, e, atol=1e-6))
        message = (f"target tensor {k} is wrong: got {fmt(after[k])}, expected {fmt(expected[k])} "
                   f"(from target {fmt(before[k])} and source {fmt(sources_before[k])})")
    raise Mistake(f"{message}\n  case: {name}")


def check_soft_update(fn: Callable, raise_on_fail: bool = False) -> bool:
    """Check ``soft_update(target_params, source_params, tau)`` (see ``SOFT_UPDATE_STUB``)."""

    def check() -> str:
        cases = _soft_update_cases()
        for i, case in enumerate(cases):
            _check_soft_update_case(fn, case, first=i == 0)
        return f"correct on {len(cases)} cases (tau = 0.01, 0.3 and 1.0, plain tensors and parameters)"

    return run_check("soft_update", check, raise_on_fail)


# --------------------------------------------------------------------------------------------------
# the critic's TD target
# --------------------------------------------------------------------------------------------------
CRITIC_TARGET_STUB = '''\
def critic_target(reward, done, next_q, gamma):
    """The MADDPG critic's regression target y for a batch of B transitions.

    reward: (B,) float tensor, r_i
    done:   (B,) float tensor, 1.0 where the episode terminated at this transition, else 0.0
    next_q: (B,) float tensor, Q'_i(o', a') from the target critic (it may carry a gradient)
    gamma:  float discount factor

    Returns y (B,) = r + gamma * (1 - done) * Q'(o', a'). y is a fixed label for the critic's
    regression: no gradient may flow through it.
    """
    # YOUR CODE HERE
    raise NotImplementedError
'''

# Common mistakes: each computes the wrong answer, so a student's result can be recognised.
CRITIC_TARGET_MISTAKES = [
    (lambda reward, done, next_q, gamma: reward + gamma * next_q,
     "your target ignores `done`: for a terminal transition (done = 1) there is no next state, so y should "
     "equal r; multiply the bootstrap term by (1 - done)"),
    (lambda reward, done, next_q, gamma: reward + gamma * done * next_q,
     "the bootstrap is masked the wrong way round: (1 - done) keeps Q' for ongoing transitions and removes it "
     "at terminal ones; you multiplied by done"),
    (lambda reward, done, next_q, gamma: reward + (1 - done) * next_q,
     "your target does not discount: multiply Q'(o', a') by gamma"),
    (lambda reward, done, next_q, gamma: gamma * (reward + (1 - done) * next_q),
     "gamma multiplies the reward too: only the future is discounted, y = r + gamma (1 - done) Q'"),
    (lambda reward, done, next_q, gamma: (1 - done) * (reward + gamma * next_q),
     "the reward of a terminal transition is lost: (1 - done) masks only the bootstrap term, not r"),
    (lambda reward, done, next_q, gamma: gamma * (1 - done) * next_q,
     "y is missing the reward: y = r + gamma (1 - done) Q'"),
]


def _critic_target_cases() -> list[tuple[str, dict]]:
    gen = torch.Generator().manual_seed(1)
    critic_out = torch.randn(5, generator=gen).requires_grad_()
    return [
        ("a batch of 4, transitions 1 and 3 terminal", {
            "reward": torch.tensor([1.0, 0.0, -1.0, 2.0]), "done": torch.tensor([0.0, 1.0, 0.0, 1.0]),
            "next_q": torch.tensor([10.0, 10.0, 5.0, -3.0]), "gamma": 0.9}),
        ("a batch of 5, gamma=0.5, next_q straight from a critic (requires_grad=True)", {
            "reward": torch.randn(5, generator=gen), "done": torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0]),
            "next_q": critic_out * 3.0, "gamma": 0.5}),
        ("a batch of 3, no terminal transition, gamma=0.99", {
            "reward": torch.tensor([0.5, -0.5, 0.0]), "done": torch.zeros(3),
            "next_q": torch.tensor([-2.0, 4.0, 1.0]), "gamma": 0.99}),
    ]


def check_critic_target(fn: Callable, raise_on_fail: bool = False) -> bool:
    """Check ``critic_target(reward, done, next_q, gamma)`` (see ``CRITIC_TARGET_STUB``)."""

    def check() -> str:
        cases = _critic_target_cases()
        for i, (name, inputs) in enumerate(cases):
            result = not_none(call(fn, *inputs.values()), first=i == 0, what="the target y (B,)")
            with torch.no_grad():
                expected = as_array(inputs["reward"] + inputs["gamma"] * (1 - inputs["done"]) * inputs["next_q"], "y")
            got = as_array(result, "y")
            check_shape(got, expected, "y", name)
            if not same(got, expected):
                raise wrong_array(got, expected, CRITIC_TARGET_MISTAKES, inputs, name)
            if isinstance(result, torch.Tensor) and result.requires_grad:
                raise Mistake("y has the right values but carries a gradient (y.requires_grad is True): it is a "
                              "fixed regression label, so compute it under torch.no_grad() (or use "
                              f"next_q.detach())\n  case: {name}")
        return f"correct on {len(cases)} cases (terminal and ongoing transitions, no gradient through y)"

    return run_check("critic_target", check, raise_on_fail)


# --------------------------------------------------------------------------------------------------
# MATD3's clipped double-Q target
# --------------------------------------------------------------------------------------------------
TD3_TARGET_STUB = '''\
def td3_target(reward, done, next_q1, next_q2, gamma):
    """MATD3's critic target y for a batch of B transitions (fix 1, clipped double-Q).

    reward:  (B,) float tensor, r_i
    done:    (B,) float tensor, 1.0 where the episode terminated at this transition, else 0.0
    next_q1: (B,) float tensor, Q'_i1(o', a') from the first target critic
    next_q2: (B,) float tensor, Q'_i2(o', a') from the second target critic
    gamma:   float discount factor

    Returns y (B,) = r + gamma * (1 - done) * min(Q'_i1, Q'_i2), row by row. y is a fixed label for
    both critics' regression: no gradient may flow through it.
    """
    # YOUR CODE HERE
    raise NotImplementedError
'''

# Common mistakes: each computes the wrong answer, so a student's result can be recognised.
TD3_TARGET_MISTAKES = [
    (lambda reward, done, next_q1, next_q2, gamma: reward + gamma * (1 - done) * torch.maximum(next_q1, next_q2),
     "you took the larger of the two critics: the point of clipped double-Q is the *minimum*"),
    (lambda reward, done, next_q1, next_q2, gamma: reward + gamma * (1 - done) * (next_q1 + next_q2) / 2,
     "you averaged the two critics: the average keeps (half of) each critic's over-estimate, take the minimum"),
    (lambda reward, done, next_q1, next_q2, gamma: reward + gamma * (1 - done) * next_q1,
     "only the first critic is used: y uses min(Q'_1, Q'_2)"),
    (lambda reward, done, next_q1, next_q2, gamma: reward + gamma * (1 - done) * torch.min(next_q1, next_q2).min(),
     "you took the minimum over the whole batch: compare the two critics row by row (torch.min(q1, q2))"),
    (lambda reward, done, next_q1, next_q2, gamma: reward + gamma * torch.min(next_q1, next_q2),
     "your target ignores `done`: at a terminal transition y = r; multiply the bootstrap term by (1 - done)"),
    (lambda reward, done, next_q1, next_q2, gamma: reward + (1 - done) * torch.min(next_q1, next_q2),
     "your target does not discount: multiply min(Q'_1, Q'_2) by gamma"),
]


def _td3_target_cases() -> list[tuple[str, dict]]:
    gen = torch.Generator().manual_seed(5)
    critic_out = torch.randn(6, generator=gen).requires_grad_()
    return [
        ("a batch of 4, transition 2 terminal", {
            "reward": torch.tensor([1.0, 0.0, -1.0, 2.0]), "done": torch.tensor([0.0, 0.0, 1.0, 0.0]),
            "next_q1": torch.tensor([5.0, -2.0, 3.0, 1.0]), "next_q2": torch.tensor([4.0, -1.0, 6.0, 1.5]),
            "gamma": 0.9}),
        ("a batch of 6, critics straight from a network (requires_grad=True)", {
            "reward": torch.randn(6, generator=gen), "done": torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0, 1.0]),
            "next_q1": critic_out * 2.0, "next_q2": critic_out + 0.5, "gamma": 0.95}),
        ("a batch of 3, no terminal transition, gamma=0.5", {
            "reward": torch.tensor([0.5, -0.5, 0.0]), "done": torch.zeros(3),
            "next_q1": torch.tensor([-2.0, 4.0, 1.0]), "next_q2": torch.tensor([-3.0, 5.0, 1.0]), "gamma": 0.5}),
    ]


def check_td3_target(fn: Callable, raise_on_fail: bool = False) -> bool:
    """Check ``td3_target(reward, done, next_q1, next_q2, gamma)`` (see ``TD3_TARGET_STUB``)."""

    def check() -> str:
        cases = _td3_target_cases()
        for i, (name, inputs) in enumerate(cases):
            result = not_none(call(fn, *inputs.values()), first=i == 0, what="the target y (B,)")
            with torch.no_grad():
                expected = as_array(inputs["reward"] + inputs["gamma"] * (1 - inputs["done"])
                                    * torch.min(inputs["next_q1"], inputs["next_q2"]), "y")
                got = as_array(result, "y")
                check_shape(got, expected, "y", name)
                if not same(got, expected):
                    raise wrong_array(got, expected, TD3_TARGET_MISTAKES, inputs, name)
            if isinstance(result, torch.Tensor) and result.requires_grad:
                raise Mistake("y has the right values but carries a gradient: compute it under torch.no_grad()"
                              f"\n  case: {name}")
        return f"correct on {len(cases)} batches (terminal transitions, no gradient through y)"

    return run_check("td3_target", check, raise_on_fail)
