"""Exercises on tournament selection: one tournament, then a whole generation's parents with elitism."""

from __future__ import annotations

import math
from collections.abc import Callable

from marlkit.exercises.checking import Mistake, call, not_none, run_check
from marlkit.exercises.solutions import select_parents as reference_select_parents
from marlkit.exercises.solutions import tournament_winner as reference_winner

NAN = math.nan

# --------------------------------------------------------------------------------------------------
# one tournament
# --------------------------------------------------------------------------------------------------
TOURNAMENT_WINNER_STUB = '''\
def tournament_winner(fitnesses, contestants):
    """The winner of one tournament.

    fitnesses:   list of floats, fitnesses[i] is the score of population member i (higher is
                 better; nan marks a diverged agent, which must lose every tournament)
    contestants: list of population indices drawn for this tournament, e.g. [3, 0]

    Returns the population index (an int, one of `contestants`) of the contestant with the highest
    fitness. Ties go to the contestant drawn first (earliest in `contestants`).
    """
    # YOUR CODE HERE
    raise NotImplementedError
'''

# (fitnesses, contestants, description)
TOURNAMENT_CASES = [
    ([1.0, -3.0, 4.0, -10.0, 2.0, 5.0], [0, 3, 4], "three contestants; the best member (5) is not among them"),
    ([1.0, -3.0, 4.0, -10.0, 2.0, 5.0], [2, 1], "two contestants"),
    ([-5.0, -2.0, -9.0], [0, 1, 2], "every fitness negative"),
    ([2.0, 2.0, 0.0, 2.0], [3, 0, 1], "a three-way tie, member 3 drawn first"),
    ([NAN, -1.0, -2.0], [0, 2], "member 0 diverged (nan fitness)"),
]


def _score(f: float) -> float:
    return -math.inf if math.isnan(f) else f


# Common mistakes: each returns the wrong winner a student's code would give. The more specific ones
# come first: on a case where two mistakes give the same answer, the first one listed explains it.
TOURNAMENT_MISTAKES = [
    (lambda fit, con: next((i for i in con if math.isnan(fit[i])), None),
     "a diverged agent (nan fitness) won: every comparison with nan is False, so treat nan as -inf"),
    (lambda fit, con: reference_winner(fit, con[::-1]),
     "ties go to the contestant drawn first (earliest in `contestants`); yours went to the one drawn last"),
    (lambda fit, con: reference_winner(fit, sorted(con)),
     "ties go to the contestant drawn first (earliest in `contestants`), not to the smallest index"),
    (lambda fit, con: con.index(reference_winner(fit, con)),
     "you returned the winner's position in `contestants`, not its index in the population "
     "(return contestants[k], not k)"),
    (lambda fit, con: min(con, key=lambda i: (_score(fit[i]), con.index(i))),
     "you picked the lowest fitness: higher fitness is better"),
    (lambda fit, con: reference_winner(fit, list(range(len(fit)))),
     "you returned the best member of the whole population, but only the contestants compete"),
]


def _winner_of(fn: Callable, fitnesses: list[float], contestants: list[int], first: bool) -> int:
    result = not_none(call(fn, list(fitnesses), list(contestants)), first=first, what="a population index (int)")
    if isinstance(result, bool) or not isinstance(result, int) and not hasattr(result, "__index__"):
        raise Mistake(f"return a population index (an int), got {type(result).__name__}: {result!r}")
    return int(result)


def check_tournament_winner(fn: Callable, raise_on_fail: bool = False) -> bool:
    """Check ``tournament_winner(fitnesses, contestants)`` (see ``TOURNAMENT_WINNER_STUB``)."""

    def check() -> str:
        for i, (fitnesses, contestants, name) in enumerate(TOURNAMENT_CASES):
            got = _winner_of(fn, fitnesses, contestants, first=i == 0)
            expected = reference_winner(fitnesses, contestants)
            if got != expected:
                message = next((m for wrong, m in TOURNAMENT_MISTAKES if wrong(fitnesses, contestants) == got),
                               f"the winner is member {expected} (fitness {fitnesses[expected]})")
                raise Mistake(f"{message}\n  case: {name}\n  fitnesses={fitnesses}, contestants={contestants}\n"
                              f"  got: {got}\n  expected: {expected}")
        return f"correct on {len(TOURNAMENT_CASES)} tournaments (negative fitness, ties, a diverged agent)"

    return run_check("tournament_winner", check, raise_on_fail)


# --------------------------------------------------------------------------------------------------
# a generation's parents
# --------------------------------------------------------------------------------------------------
SELECT_PARENTS_STUB = '''\
def select_parents(fitnesses, draws, elitism):
    """The parents of the next generation, one per member (the population keeps its size).

    fitnesses: list of floats, one per member of the current population (nan: diverged, always loses)
    draws:     list of contestant lists, one per tournament, in the order they were drawn
               (there are len(fitnesses) of them; TournamentSelection draws them at random)
    elitism:   if True, the first parent is the elite (the best member overall) and only
               len(fitnesses) - 1 tournaments are needed: the extra draw is ignored

    Returns a list of len(fitnesses) population indices: [elite] (if elitism) + tournament winners,
    in order. Use your tournament_winner.
    """
    # YOUR CODE HERE
    raise NotImplementedError
'''

DRAWS = [[0, 2], [3, 0], [1, 2], [2, 3]]
SELECT_CASES = [
    ([1.0, 5.0, 3.0, 2.0], DRAWS, True, "4 members, elitism"),
    ([1.0, 5.0, 3.0, 2.0], DRAWS, False, "4 members, no elitism"),
    ([-4.0, NAN, -1.0, -6.0, -2.0], [[1, 0], [3, 4], [1, 3], [2, 0], [4, 1]], True,
     "5 members, negative fitness, member 1 diverged (nan), elitism"),
]


def _select_mistakes(fitnesses: list[float], draws: list[list[int]], elitism: bool) -> list[tuple[list[int], str]]:
    """The wrong parent lists typical mistakes give, with their explanations."""
    winners = [reference_winner(fitnesses, c) for c in draws]
    elite = reference_winner(fitnesses, list(range(len(fitnesses))))
    worst = min(range(len(fitnesses)), key=lambda i: _score(fitnesses[i]))
    n = len(fitnesses)
    if not elitism:
        return [([elite, *winners[: n - 1]], "elitism=False: there is no elite, every parent is a tournament winner")]
    return [
        (winners, "the elite is missing: with elitism=True the first parent is the best member overall"),
        ([elite, *winners], f"the population grew to {n + 1}: the elite takes one of the {n} places, so only "
                            f"{n - 1} tournaments are run (ignore the last draw)"),
        ([*winners[: n - 1], elite], "the elite must be the *first* parent (the library keeps it as member 0)"),
        ([worst, *winners[: n - 1]], "your elite is the worst member: the elite is the member with the highest "
                                     "fitness"),
        ([elite, *winners[1:]], "you skipped the first draw: with elitism the tournaments use draws[0], draws[1], "
                                "... and the *last* draw is the one left over"),
        ([elite] * n, "every parent is the elite: each tournament's winner comes from its own contestants"),
    ]


def check_select_parents(fn: Callable, raise_on_fail: bool = False) -> bool:
    """Check ``select_parents(fitnesses, draws, elitism)`` (see ``SELECT_PARENTS_STUB``)."""

    def check() -> str:
        for i, (fitnesses, draws, elitism, name) in enumerate(SELECT_CASES):
            result = not_none(call(fn, list(fitnesses), [list(d) for d in draws], elitism), first=i == 0,
                              what="a list of population indices")
            try:
                got = [int(x) for x in result]
            except (TypeError, ValueError) as err:
                raise Mistake(f"return a list of population indices (ints), got {result!r}") from err
            expected = reference_select_parents(fitnesses, draws, elitism)
            if got != expected:
                mistakes = _select_mistakes(fitnesses, draws, elitism)
                message = next((m for wrong, m in mistakes if wrong == got), None)
                if message is None and len(got) != len(expected):
                    message = f"the new population must keep the old size, {len(expected)}; yours has {len(got)}"
                if message is None:
                    k = next(j for j, (a, b) in enumerate(zip(got, expected)) if a != b)
                    source = "the elite" if elitism and k == 0 else f"the winner of draws[{k - int(elitism)}]"
                    message = f"parent {k} should be {source}, member {expected[k]}; yours is {got[k]}"
                raise Mistake(f"{message}\n  case: {name}\n  fitnesses={fitnesses}, draws={draws}, "
                              f"elitism={elitism}\n  got: {got}\n  expected: {expected}")
        return f"correct on {len(SELECT_CASES)} generations (with and without elitism, a diverged agent)"

    return run_check("select_parents", check, raise_on_fail)
