"""What every exercise check shares: call the student's function safely, compare, diagnose, report.

A check never lets the student's code crash the notebook: a stub (``raise NotImplementedError`` or
``return None``) reports "not implemented yet", an exception reports its type and message, and a
wrong result reports *what* is wrong. Each exercise lists its common mistakes as small functions that
compute the wrong answer on purpose; when the student's result equals one of them, the check prints
that mistake's explanation instead of a bare "wrong value".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

PASS, FAIL = "✓", "✗"


class NotImplementedYet(Exception):
    """The student's function is still the stub."""


class Mistake(Exception):
    """A wrong answer; the message says what is wrong and, where it can, why."""


def run_check(name: str, check: Callable[[], str], raise_on_fail: bool = False) -> bool:
    """Run ``check`` (which returns a success note or raises), print the verdict and return it.

    With ``raise_on_fail`` a failure raises ``AssertionError`` with the printed message instead (tests).
    """
    try:
        note = check()
    except NotImplementedYet as err:
        message = f"{FAIL} {name}: not implemented yet" + (f" ({err})" if str(err) else "")
    except Mistake as err:
        message = f"{FAIL} {name}: {err}"
    else:
        print(f"{PASS} {name}: {note}")
        return True
    if raise_on_fail:
        raise AssertionError(message)
    print(message)
    return False


def call(fn: Callable, *args: Any, explain: Callable[[Exception], str | None] | None = None) -> Any:
    """``fn(*args)``, turning the student's exceptions into check outcomes.

    ``explain(err)`` may return a specific message for an exception it recognises (e.g. a KeyError
    that means "return {} for a missing agent").
    """
    try:
        return fn(*args)
    except NotImplementedError as err:
        raise NotImplementedYet() from err
    except Exception as err:  # the student's code may raise anything; report it, never crash
        specific = explain(err) if explain is not None else None
        raise Mistake(specific or f"your function raised {type(err).__name__}: {err}") from err


def not_none(result: Any, first: bool, what: str = "a result") -> Any:
    """A stub returns None: on the first case that means "not implemented", later it is a mistake."""
    if result is None:
        if first:
            raise NotImplementedYet("it returned None")
        raise Mistake(f"your function returned None; it should return {what}")
    return result


def equal(a: Any, b: Any) -> bool:
    """``a == b`` that never raises: a student's result may hold arrays, whose ``==`` is elementwise."""
    try:
        return bool(a == b)
    except Exception:  # any failure to compare means "not the same"
        return False


# --------------------------------------------------------------------------------------------------
# arrays
# --------------------------------------------------------------------------------------------------
def as_array(value: Any, what: str) -> np.ndarray:
    """A float64 numpy copy of a tensor, array, list or number (detached from autograd)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise Mistake(f"{what} should be an array of numbers, got {type(value).__name__}: {value!r}") from err


def fmt(value: Any) -> str:
    """Short, stable text of an array or number for feedback messages."""
    array = as_array(value, "value")
    return np.array2string(array, precision=4, suppress_small=True, separator=", ")


def same(got: np.ndarray, expected: np.ndarray, atol: float = 1e-5) -> bool:
    """Same shape and values (NaN never matches)."""
    return got.shape == expected.shape and bool(np.allclose(got, expected, rtol=1e-5, atol=atol))


def check_shape(got: np.ndarray, expected: np.ndarray, what: str, case: str) -> None:
    if got.shape != expected.shape:
        raise Mistake(f"{what} has shape {got.shape}, expected {expected.shape}\n  case: {case}")


def first_difference(got: np.ndarray, expected: np.ndarray) -> str:
    """ "entry [2, 1] is 0.5, expected 0.25" for the first entry that differs."""
    wrong = ~np.isclose(got, expected, rtol=1e-5, atol=1e-5)
    index = tuple(int(i) for i in np.argwhere(wrong)[0])
    where = f" [{', '.join(map(str, index))}]" if index else ""
    return f"entry{where} is {got[index]:.6g}, expected {expected[index]:.6g}"


def diagnose(
    got: np.ndarray,
    mistakes: Sequence[tuple[Callable[..., Any], str]],
    inputs: dict[str, Any],
) -> str | None:
    """The message of the first common mistake whose (wrong) answer equals ``got`` on these inputs."""
    for wrong_answer, message in mistakes:
        if same(got, as_array(wrong_answer(**inputs), "a common mistake")):
            return message
    return None


def wrong_array(
    got: np.ndarray,
    expected: np.ndarray,
    mistakes: Sequence[tuple[Callable[..., Any], str]],
    inputs: dict[str, Any],
    case: str,
) -> Mistake:
    """The Mistake to raise for a wrong array: a diagnosed common mistake, else the first difference."""
    message = diagnose(got, mistakes, inputs) or first_difference(got, expected)
    shown = ", ".join(f"{k}={v if isinstance(v, float) else fmt(v)}" for k, v in inputs.items())
    return Mistake(f"{message}\n  case: {case}\n  inputs: {shown}\n  got:      {fmt(got)}\n  expected: {fmt(expected)}")
