"""Exercise checks: every reference passes, stubs say "not implemented yet" without raising, and typical
wrong answers get their specific feedback. The references also agree with the library code they mirror."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch
from gymnasium.spaces import Box, Discrete

from marlkit.exercises import EXERCISES, solutions
from marlkit.networks import group_id, resolve_net_config
from marlkit.networks.config import NETWORK_KEYS, complete_net_config


def stub_function(name):
    namespace = {}
    exec(EXERCISES[name].stub, namespace)
    return namespace[name]


def feedback(name, fn):
    """The AssertionError message the check raises for ``fn``."""
    with pytest.raises(AssertionError) as info:
        EXERCISES[name].check(fn, raise_on_fail=True)
    return str(info.value)


# --------------------------------------------------------------------------------------------------
# every exercise
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(EXERCISES))
def test_reference_solution_passes(name, capsys):
    assert EXERCISES[name].check(EXERCISES[name].solution) is True
    assert capsys.readouterr().out.startswith(f"✓ {name}:")
    assert EXERCISES[name].check(EXERCISES[name].solution, raise_on_fail=True) is True


@pytest.mark.parametrize("name", list(EXERCISES))
def test_stub_is_not_implemented_and_never_raises(name, capsys):
    stub = stub_function(name)
    assert "# YOUR CODE HERE" in EXERCISES[name].stub
    # the notebook shows the same signature as the reference solution
    assert list(inspect.signature(stub).parameters) == list(inspect.signature(EXERCISES[name].solution).parameters)
    assert EXERCISES[name].statement  # the docstring is the problem statement
    for fn in (stub, lambda *args: None):  # raises NotImplementedError / returns None
        assert EXERCISES[name].check(fn) is False
        assert f"✗ {name}: not implemented yet" in capsys.readouterr().out
    assert "not implemented yet" in feedback(name, stub)


@pytest.mark.parametrize("name", list(EXERCISES))
def test_a_crashing_answer_is_reported_not_raised(name, capsys):
    def crashes(*args):
        raise ZeroDivisionError("oops")

    assert EXERCISES[name].check(crashes) is False
    assert "raised ZeroDivisionError: oops" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------------
# soft update
# --------------------------------------------------------------------------------------------------
def soft_update_swapped(targets, sources, tau):
    with torch.no_grad():
        for t, s in zip(targets, sources):
            t.copy_((1 - tau) * s + tau * t)


def soft_update_hard(targets, sources, tau):
    with torch.no_grad():
        for t, s in zip(targets, sources):
            t.copy_(s)


def soft_update_rebinds(targets, sources, tau):
    for t, s in zip(targets, sources):
        t = tau * s + (1 - tau) * t  # noqa: F841  (the mistake: rebinding the loop variable)


def soft_update_returns_new(targets, sources, tau):
    return [tau * s + (1 - tau) * t for t, s in zip(targets, sources)]


def soft_update_no_grad_guard(targets, sources, tau):
    for t, s in zip(targets, sources):
        t.mul_(1 - tau).add_(tau * s)


def soft_update_first_only(targets, sources, tau):
    with torch.no_grad():
        for t, s in zip(targets, sources):
            t.lerp_(s, tau)
            return


def soft_update_replaces_list(targets, sources, tau):
    for i, (t, s) in enumerate(zip(targets, sources)):
        targets[i] = (tau * s + (1 - tau) * t).detach()


@pytest.mark.parametrize("fn, message", [
    (soft_update_swapped, "tau is applied the wrong way round: the target moved 99% of the way to the source, "
                          "but with tau=0.01 it should move 1%"),
    (soft_update_hard, "the target was copied from the source (a hard update)"),
    (soft_update_rebinds, "not implemented yet (target_params is unchanged; if you wrote it, note that `t = ...`"),
    (soft_update_returns_new, "you returned new tensors, but target_params is unchanged"),
    (soft_update_no_grad_guard, "do the update inside `with torch.no_grad():`"),
    (soft_update_first_only, "only 1 of 2 target tensors changed"),
    (soft_update_replaces_list, "you replaced entries of the target_params list"),
])
def test_soft_update_mistakes(fn, message):
    assert message in feedback("soft_update", fn)


def test_soft_update_matches_the_library():
    """The reference equals MultiAgentAlgorithm.soft_update_targets (torch._foreach_lerp_)."""
    from marlkit.algorithms.maddpg import MADDPG

    agent = MADDPG([Box(-1, 1, (4,))], [Discrete(3)], ["a_0"], tau=0.1, seed=0)
    with torch.no_grad():
        for p in agent.actors["a_0"].parameters():
            p.add_(1.0)  # make the trained network differ from its target
    targets = [p.detach().clone() for p in agent.actor_targets["a_0"].parameters()]
    solutions.soft_update(targets, [p.detach() for p in agent.actors["a_0"].parameters()], agent.tau)
    agent.soft_update_targets()
    for mine, library in zip(targets, agent.actor_targets["a_0"].parameters()):
        torch.testing.assert_close(mine, library.detach())


# --------------------------------------------------------------------------------------------------
# critic target
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fn, message", [
    (lambda r, d, q, g: (r + g * q).detach(), "your target ignores `done`: for a terminal transition (done = 1)"),
    (lambda r, d, q, g: (r + g * d * q).detach(), "the bootstrap is masked the wrong way round"),
    (lambda r, d, q, g: (r + (1 - d) * q).detach(), "your target does not discount"),
    (lambda r, d, q, g: (g * (r + (1 - d) * q)).detach(), "gamma multiplies the reward too"),
    (lambda r, d, q, g: r + g * (1 - d) * q, "carries a gradient (y.requires_grad is True)"),
    (lambda r, d, q, g: (r + g * (1 - d) * q).detach().unsqueeze(-1), "y has shape (4, 1), expected (4,)"),
])
def test_critic_target_mistakes(fn, message):
    assert message in feedback("critic_target", fn)


def test_critic_target_by_hand():
    y = solutions.critic_target(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0]), torch.tensor([10.0, 10.0]), 0.9)
    torch.testing.assert_close(y, torch.tensor([10.0, 2.0]))  # 1 + 0.9 * 10, and terminal: y = r


# --------------------------------------------------------------------------------------------------
# GAE
# --------------------------------------------------------------------------------------------------
def test_gae_reference_by_hand():
    zeros = np.zeros(3)
    # no episode end, V = 0, r = 1, gamma = lam = 0.5: delta = 1; A2 = 1, A1 = 1 + 0.25, A0 = 1 + 0.25 * 1.25
    np.testing.assert_allclose(solutions.gae(np.ones(3), zeros, zeros, zeros, zeros, 0.5, 0.5), [1.3125, 1.25, 1.0])
    r, v, nv = np.array([1.0, 2.0, 0.0]), np.array([0.5, 1.0, 2.0]), np.array([1.0, 4.0, 3.0])
    end = np.array([0.0, 1.0, 0.0])
    # terminated at t=1: delta = [1 + .9 - .5, 2 - 1, 0 + 2.7 - 2] = [1.4, 1.0, 0.7]; the recursion stops at t=1
    np.testing.assert_allclose(solutions.gae(r, v, nv, end, zeros, 0.9, 0.5), [1.4 + 0.45 * 1.0, 1.0, 0.7])
    # truncated at t=1: bootstrap from V(final obs) = 4, so delta_1 = 2 + 3.6 - 1 = 4.6; still cut after t=1
    np.testing.assert_allclose(solutions.gae(r, v, nv, zeros, end, 0.9, 0.5), [1.4 + 0.45 * 4.6, 4.6, 0.7])
    # lam = 1, no ends: A_t = discounted rewards-to-go + gamma^k bootstrap - V(s_t)
    no_end = np.zeros(2)
    advantages = solutions.gae(np.ones(2), no_end, np.array([0.0, 2.0]), no_end, no_end, 0.5, 1.0)
    np.testing.assert_allclose(advantages, [1 + 0.5 * (1 + 0.5 * 2), 1 + 0.5 * 2])


def test_gae_reference_matches_rollout_compute_gae():
    from marlkit.algorithms.rollout import compute_gae

    rng = np.random.default_rng(3)
    shape = (7, 4)
    r, v, nv = rng.normal(size=shape), rng.normal(size=shape), rng.normal(size=shape)
    term, trunc = rng.random(shape) < 0.15, rng.random(shape) < 0.15
    mine = solutions.gae(r, v, nv, term.astype(float), trunc.astype(float), 0.97, 0.9)
    t = lambda a: torch.as_tensor(a)  # noqa: E731
    library = compute_gae(t(r), t(v), t(nv), t(term), t(trunc), torch.ones(shape, dtype=torch.bool), 0.97, 0.9)
    np.testing.assert_allclose(mine, library.numpy(), rtol=1e-6)


def gae_with(**changes):
    from marlkit.exercises.gae import _gae_variant

    return lambda *args: _gae_variant(*args, **changes)


@pytest.mark.parametrize("fn, message", [
    (gae_with(stop_bootstrap="none"), "your TD error bootstraps through terminal states"),
    (gae_with(stop_bootstrap="done"), "you stopped bootstrapping at a truncation"),
    (gae_with(cut="none"), "advantages leak across episode boundaries"),
    (gae_with(cut="term"), "after a truncation the next row belongs to a new episode"),
    (gae_with(forward=True), "your recursion runs forward in time"),
    (gae_with(decay=0.0), "you returned the TD errors delta_t"),
    (gae_with(shift_values=True), "you bootstrapped from values[t + 1]"),
    (lambda r, v, nv, te, tr, g, lam: solutions.gae(r, v, nv, te, tr, g, lam) + v, "you returned the returns"),
    (lambda r, v, nv, te, tr, g, lam: solutions.gae(r, v, nv, te, tr, g, lam)[:, None], "shape (3, 1), expected (3,)"),
])
def test_gae_mistakes(fn, message):
    assert message in feedback("gae", fn)


def test_gae_lambda_missing_is_named():
    # a hand-written recursion without lam (gamma only)
    def no_lam(r, v, nv, te, tr, g, lam):
        return solutions.gae(r, v, nv, te, tr, g, 1.0)

    assert "the recursion is missing lam" in feedback("gae", no_lam)


def test_gae_accepts_torch_outputs():
    def torch_gae(*args):
        return torch.as_tensor(solutions.gae(*args))

    assert EXERCISES["gae"].check(torch_gae, raise_on_fail=True)


# --------------------------------------------------------------------------------------------------
# tournament selection
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fn, message", [
    (lambda f, c: int(np.argmax([f[i] for i in c])), "you returned the winner's position in `contestants`"),
    (lambda f, c: min(c, key=lambda i: f[i]), "you picked the lowest fitness"),
    (lambda f, c: int(np.argmax(f)), "only the contestants compete"),
    (lambda f, c: max(c, key=lambda i: f[i]), "a diverged agent (nan fitness) won"),  # max keeps the nan
    (lambda f, c: max(sorted(c), key=lambda i: -math.inf if math.isnan(f[i]) else f[i]), "not to the smallest index"),
    (lambda f, c: max(c[::-1], key=lambda i: -math.inf if math.isnan(f[i]) else f[i]), "yours went to the one drawn"),
    (lambda f, c: float(solutions.tournament_winner(f, c)), "return a population index (an int), got float"),
])
def test_tournament_winner_mistakes(fn, message):
    assert message in feedback("tournament_winner", fn)


def test_tournament_winner_agrees_with_tournament_selection():
    """Same winner as TournamentSelection._tournament for the same draw (nan loses, ties to the first)."""
    from marlkit.hpo.tournament import TournamentSelection

    selection = TournamentSelection(3, False, 5, 1, rand_seed=0)
    rng = np.random.default_rng(1)
    for _ in range(50):
        fitnesses = list(rng.integers(-3, 3, size=5).astype(float))
        fitnesses[int(rng.integers(5))] = math.nan
        scores = np.array([-math.inf if math.isnan(f) else f for f in fitnesses])
        state = selection.rng.bit_generator.state
        contestants = list(selection.rng.choice(5, size=3, replace=False))
        selection.rng.bit_generator.state = state  # replay the same draw inside _tournament
        assert solutions.tournament_winner(fitnesses, contestants) == selection._tournament(scores)


@pytest.mark.parametrize("fn, message", [
    (lambda f, d, e: [solutions.tournament_winner(f, c) for c in d], "the elite is missing"),
    (lambda f, d, e: [int(np.argmax(f))] * e + [solutions.tournament_winner(f, c) for c in d],
     "the population grew to 5: the elite takes one of the 4 places"),
    (lambda f, d, e: [solutions.tournament_winner(f, c) for c in d][: len(f) - e] + [int(np.argmax(f))] * e,
     "the elite must be the *first* parent"),
    (lambda f, d, e: [int(np.argmin(f))] * e + [solutions.tournament_winner(f, c) for c in d][: len(f) - e],
     "your elite is the worst member"),
])
def test_select_parents_mistakes(fn, message):
    assert message in feedback("select_parents", fn)


def test_select_parents_elite_without_elitism_is_named():
    def always_elite(f, d, e):
        return solutions.select_parents(f, d, True)

    assert "elitism=False: there is no elite" in feedback("select_parents", always_elite)


# --------------------------------------------------------------------------------------------------
# resolving net_config
# --------------------------------------------------------------------------------------------------
def resolve_group_first(cfg, agent):
    if any(k in NETWORK_KEYS for k in cfg):
        return cfg
    return cfg.get(group_id(agent), cfg.get(agent, {}))


def resolve_merged(cfg, agent):
    if any(k in NETWORK_KEYS for k in cfg):
        return cfg
    return {**cfg.get(group_id(agent), {}), **cfg.get(agent, {})}


def resolve_split_first(cfg, agent):
    if any(k in NETWORK_KEYS for k in cfg):
        return cfg
    return cfg.get(agent, cfg.get(agent.split("_")[0], {}))


def resolve_key_error(cfg, agent):
    if any(k in NETWORK_KEYS for k in cfg):
        return cfg
    return cfg[agent] if agent in cfg else cfg[group_id(agent)]


def resolve_mutates(cfg, agent):
    entry = solutions.resolve_for_agent(cfg, agent)
    cfg.setdefault("extra", {})
    return entry


@pytest.mark.parametrize("fn, message", [
    (resolve_group_first, "an agent's own entry takes precedence"),
    (resolve_merged, "entries are not merged"),
    (lambda cfg, agent: cfg.get(agent, cfg.get(group_id(agent), {})), "a single-level net_config"),
    (resolve_split_first, "the group of 'blue_team_2' is 'blue_team', not 'blue'"),
    (lambda cfg, agent: solutions.resolve_for_agent({k: v for k, v in cfg.items() if k in NETWORK_KEYS or k == agent},
                                                    agent), "uses its group's entry"),
    (resolve_key_error, "KeyError 'bob': an agent that no entry mentions gets the defaults, so return {}"),
    (lambda cfg, agent: solutions.resolve_for_agent(cfg, agent) or None, "your function returned None"),
    (resolve_mutates, "you modified net_config"),
])
def test_resolve_for_agent_mistakes(fn, message):
    assert message in feedback("resolve_for_agent", fn)


def test_resolve_for_agent_agrees_with_resolve_net_config():
    from marlkit.exercises.net_config import RESOLVE_CASES

    space = Box(-1, 1, (5,))
    for net_config, agent, _ in RESOLVE_CASES:
        agent_ids = [agent]  # plus an agent for every other key, so resolve_net_config accepts the config
        for key in net_config:
            if key not in NETWORK_KEYS and key not in agent_ids and key not in map(group_id, agent_ids):
                agent_ids.append(key if group_id(key) != key else f"{key}_0")
        resolved = resolve_net_config(net_config, agent_ids, [space] * len(agent_ids))
        assert resolved[agent] == complete_net_config(space, solutions.resolve_for_agent(net_config, agent))


# --------------------------------------------------------------------------------------------------
# grouping agent ids (chapter 01)
# --------------------------------------------------------------------------------------------------
def group_agents_by(group_of):
    def grouped(agent_ids):
        groups = {}
        for agent in agent_ids:
            groups.setdefault(group_of(agent), []).append(agent)
        return groups

    return grouped


@pytest.mark.parametrize("fn, message", [
    (lambda ids: {g: sorted(m) for g, m in solutions.my_group_agents(ids).items()}, "do not sort them"),
    (lambda ids: dict(sorted(solutions.my_group_agents(ids).items())),
     "the groups come in the order their first agent appears in agent_ids: ['speaker', 'listener']"),
    (group_agents_by(lambda agent: agent.split("_")[0]), "the group of 'agent_x_3' is 'agent_x', not 'agent'"),
    (group_agents_by(lambda agent: agent.rsplit("_", 1)[0]), "an id without a _<int> suffix is its own group"),
    (lambda ids: {g: m[:1] for g, m in solutions.my_group_agents(ids).items()}, "not only the first one"),
    (lambda ids: {g: len(m) for g, m in solutions.my_group_agents(ids).items()}, "not to how many there are"),
    (lambda ids: list(solutions.my_group_agents(ids).values()), "return a dict {group_id: [agent ids]}, got list"),
    (lambda ids: {g: tuple(m) for g, m in solutions.my_group_agents(ids).items()},
     "for ['bob_0', 'bob_1', 'fred_0', 'fred_1'] expected {'bob': ['bob_0', 'bob_1'], 'fred': ['fred_0', 'fred_1']}"),
    (lambda ids: {g: np.array(m) for g, m in solutions.my_group_agents(ids).items()}, "expected {'bob': ['bob_0'"),
    (lambda ids: solutions.my_group_agents(ids) if len(ids) != 2 else ids[2],
     "raised IndexError: list index out of range\n  agent_ids=['speaker_0', 'listener_0']"),
])
def test_group_agents_mistakes(fn, message):
    assert message in feedback("my_group_agents", fn)


# --------------------------------------------------------------------------------------------------
# MATD3's clipped double-Q target (chapter 05)
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fn, message", [
    (lambda r, d, q1, q2, g: (r + g * (1 - d) * torch.maximum(q1, q2)).detach(), "you took the larger of the two"),
    (lambda r, d, q1, q2, g: (r + g * (1 - d) * (q1 + q2) / 2).detach(), "you averaged the two critics"),
    (lambda r, d, q1, q2, g: (r + g * (1 - d) * q1).detach(), "only the first critic is used"),
    (lambda r, d, q1, q2, g: (r + g * (1 - d) * torch.min(q1, q2).min()).detach(), "minimum over the whole batch"),
    (lambda r, d, q1, q2, g: (r + g * torch.min(q1, q2)).detach(), "your target ignores `done`"),
    (lambda r, d, q1, q2, g: (r + (1 - d) * torch.min(q1, q2)).detach(), "your target does not discount"),
    (lambda r, d, q1, q2, g: r + g * (1 - d) * torch.min(q1, q2), "carries a gradient: compute it under torch.no_grad"),
    (lambda r, d, q1, q2, g: solutions.td3_target(r, d, q1, q2, g)[:, None], "y has shape (4, 1), expected (4,)"),
])
def test_td3_target_mistakes(fn, message):
    assert message in feedback("td3_target", fn)


def test_td3_target_by_hand():
    reward, done = torch.tensor([1.0, 2.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])
    y = solutions.td3_target(reward, done, torch.tensor([10.0, 5.0, -1.0]), torch.tensor([8.0, 9.0, 3.0]), 0.5)
    torch.testing.assert_close(y, torch.tensor([5.0, 2.0, -0.5]))  # the smaller critic per row; terminal: y = r


# --------------------------------------------------------------------------------------------------
# the early-stopping rule (chapter 08)
# --------------------------------------------------------------------------------------------------
def mean_of(history):
    return sum(history) / len(history)  # a plain mean: ZeroDivisionError for a member never evaluated


@pytest.mark.parametrize("fn, message", [
    (lambda h, t, w: t is not None and all(np.mean(x[-w:]) > t for x in h if x),
     "a mean exactly at the target counts\n  fitness_histories=[[-10.0], [-35.0, -25.0]]"),
    (lambda h, t, w: t is not None and all(len(x) > 0 and np.mean(x) >= t for x in h),
     "only the last `window` evaluations count"),
    (lambda h, t, w: t is not None and all(len(x) > 0 and x[-1] >= t for x in h),
     "the mean of the window, not the last value"),
    (lambda h, t, w: t is not None and any(len(x) > 0 and np.mean(x[-w:]) >= t for x in h),
     "one member is below: not reached"),
    (lambda h, t, w: t is not None and all(len(x) == 0 or np.mean(x[-w:]) >= t for x in h),
     "a member never evaluated\n  fitness_histories=[[], [-10.0]], target=-30.0, window=3\n  expected False, got True"),
    (lambda h, t, w: t is not None and all(mean_of(x[-w:]) >= t for x in h),
     "a member never evaluated: raised ZeroDivisionError: division by zero"),
    (lambda h, t, w: all(len(x) > 0 and np.mean(x[-w:]) >= t for x in h), "target None: never stop early: raised"),
    (lambda h, t, w: t is not None and all(len(x) > 0 and np.mean(x[-3:]) >= t for x in h), "window 1"),
    (lambda h, t, w: np.array([len(x) > 0 for x in h]), "return True or False, got ndarray"),
])
def test_all_members_reached_mistakes(fn, message):
    assert message in feedback("all_members_reached", fn)


def test_all_members_reached_agrees_with_target_reached():
    from types import SimpleNamespace

    from marlkit.training.evolution import target_reached

    rng = np.random.default_rng(4)
    for _ in range(200):
        histories = [list(rng.integers(-5, 2, size=rng.integers(0, 5)).astype(float)) for _ in range(3)]
        target, window = rng.choice([None, -2.0, 0.0]), int(rng.integers(1, 4))
        members = [SimpleNamespace(fitness=h) for h in histories]
        assert solutions.all_members_reached(histories, target, window) == target_reached(members, target, window)


# --------------------------------------------------------------------------------------------------
# the bytes of a replay buffer's observations (chapter 09)
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fn, message", [
    (lambda m, n, shape, dtype: m * n * math.prod(shape) * np.dtype(dtype).itemsize,
     "expected 112,896,000 bytes, got 56448000 (half: did you count next_state?)"),
    (lambda m, n, shape, dtype: 2 * m * n * math.prod(shape),
     "dtype=float32\n  expected 225,792,000 bytes, got 56448000 (did you forget the bytes per element?)"),
    (lambda m, n, shape, dtype: 2 * m * math.prod(shape) * np.dtype(dtype).itemsize,
     "memory_size=1000, num_agents=2, obs_shape=(4, 84, 84), dtype=uint8\n  expected 112,896,000 bytes, got 56448000"),
    (lambda m, n, shape, dtype: 2 * m * n * shape[0] * shape[1] * shape[2] * np.dtype(dtype).itemsize,
     "obs_shape=(11,), dtype=float32: raised IndexError: tuple index out of range"),
    (lambda m, n, shape, dtype: str(solutions.observation_nbytes(m, n, shape, dtype)),
     "expected 112,896,000 bytes, got 112896000"),
])
def test_observation_nbytes_mistakes(fn, message):
    assert message in feedback("observation_nbytes", fn)


def test_observation_nbytes_accepts_numpy_and_float_answers():
    def numpy_answer(m, n, shape, dtype):
        return np.int64(solutions.observation_nbytes(m, n, shape, dtype))

    def float_answer(m, n, shape, dtype):
        return float(solutions.observation_nbytes(m, n, shape, dtype))

    assert EXERCISES["observation_nbytes"].check(numpy_answer, raise_on_fail=True)
    assert EXERCISES["observation_nbytes"].check(float_answer, raise_on_fail=True)
