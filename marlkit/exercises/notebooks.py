"""The solutions version of a course notebook: every exercise stub replaced by its reference solution.

A stub cell is a code cell with a ``# YOUR CODE HERE`` marker in a function it defines; the function's
name is its key in ``EXERCISES``. The solution cell holds the reference from
``marlkit.exercises.solutions`` with the imports and private helpers it needs, so it runs on its own.
The outputs of a replaced cell and of its check cell are cleared: they showed the stub's result.
"""

from __future__ import annotations

import ast
import copy
import inspect
import textwrap
from collections.abc import Callable

import nbformat

from marlkit.exercises import EXERCISES, solutions

STUB_MARKER = "# YOUR CODE HERE"

def stub_functions(source: str, where: str = "a cell") -> list[str]:
    """Names of the functions ``source`` defines with a ``# YOUR CODE HERE`` marker in their body."""
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        raise ValueError(f"{where}: a {STUB_MARKER!r} cell that is not plain Python: {err}") from err
    lines = source.splitlines()
    # comments are not in the AST: look for the marker in the lines each top-level function spans
    return [node.name for node in tree.body
            if isinstance(node, ast.FunctionDef)
            and any(STUB_MARKER in line for line in lines[node.lineno - 1:node.end_lineno])]


def _imports_for(used: set[str]) -> list[str]:
    """The import statements of ``solutions`` (in its order) cut down to the names in ``used``."""
    lines = []
    for node in ast.parse(inspect.getsource(solutions)).body:
        if not isinstance(node, ast.Import | ast.ImportFrom) or getattr(node, "module", None) == "__future__":
            continue
        kept = [a for a in node.names if (a.asname or a.name.split(".")[0]) in used]
        if kept:
            names = ", ".join(a.name + (f" as {a.asname}" if a.asname else "") for a in kept)
            is_from = isinstance(node, ast.ImportFrom)
            lines.append(f"from {node.module} import {names}" if is_from else f"import {names}")
    return lines


def solution_source(name: str) -> str:
    """A cell that defines ``name``'s reference solution and runs on its own.

    It starts with the imports the solution needs: those of ``marlkit.exercises.solutions`` that it uses,
    and the module's own functions it calls (a private helper, or another exercise's solution, as
    ``select_parents`` calls ``tournament_winner``), imported from it. Then the solution itself.
    """
    source = inspect.getsource(EXERCISES[name].solution).strip("\n")
    used = {node.id for node in ast.walk(ast.parse(textwrap.dedent(source))) if isinstance(node, ast.Name)}
    lines = _imports_for(used)
    own = sorted(n for n in used - {name} if inspect.isfunction(getattr(solutions, n, None))
                 and getattr(solutions, n).__module__ == solutions.__name__)
    if own:
        lines.append(f"from {solutions.__name__} import {', '.join(own)}")
    return "\n".join(lines) + "\n\n\n" + source if lines else source


def _calls(source: str, check: Callable) -> bool:
    """Whether a cell calls ``check`` (the exercise's check cell)."""
    return f"{check.__name__}(" in source


def solutions_notebook(nb: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """A copy of ``nb`` with every exercise stub replaced by its reference solution.

    The outputs of a replaced cell and of the check cell that follows it are cleared. ``name`` (the
    notebook's file name) is used in errors: a stub whose function is not in ``EXERCISES`` raises
    ``ValueError``, since it would stay unsolved in the solutions version.
    """
    nb = copy.deepcopy(nb)
    cells = nb.cells
    for index, cell in enumerate(cells):
        if cell.cell_type != "code" or STUB_MARKER not in cell.source:
            continue
        where = f"{name} cell {index}"
        functions = stub_functions(cell.source, where)
        if not functions:
            raise ValueError(f"{where}: a {STUB_MARKER!r} cell that defines no exercise function")
        unknown = [f for f in functions if f not in EXERCISES]
        if unknown:
            raise ValueError(f"{where}: the stub of {', '.join(unknown)} has no reference solution: add "
                             f"{'it' if len(unknown) == 1 else 'them'} to marlkit.exercises.EXERCISES")
        cell.source = "\n\n\n".join(solution_source(f) for f in functions)
        to_clear = [cell]
        for function in functions:
            check = EXERCISES[function].check
            later = [c for c in cells[index + 1:] if c.cell_type == "code" and _calls(c.source, check)]
            to_clear += later[:1]  # the first cell after the stub that calls its check
        for cleared in to_clear:
            cleared.outputs = []
            cleared.execution_count = None
    return nb
