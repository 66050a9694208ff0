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
import sys
import textwrap
from collections.abc import Callable
from functools import cache

import nbformat

from marlkit.exercises import EXERCISES, solutions

STUB_MARKER = "# YOUR CODE HERE"

# An import a solution needs: (module, name, alias); name None for ``import module [as alias]``.
Import = tuple[str, str | None, str | None]


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


@cache
def _solutions_module_names() -> dict[str, Import | ast.FunctionDef | None]:
    """Every top-level name of ``solutions``: how it is imported, its function definition, or None (a constant)."""
    names: dict[str, Import | ast.FunctionDef | None] = {}
    for node in ast.parse(inspect.getsource(solutions)).body:
        if isinstance(node, ast.Import):
            for alias in node.names:
                names[alias.asname or alias.name.split(".")[0]] = (alias.name, None, alias.asname)
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            for alias in node.names:
                names[alias.asname or alias.name] = (node.module, alias.name, alias.asname)
        elif isinstance(node, ast.FunctionDef):
            names[node.name] = node
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update({t.id: None for t in targets if isinstance(t, ast.Name)})
    return names


def _import_lines(imports: set[Import]) -> str:
    """The import block, sorted as isort does: standard library, third party, marlkit; ``import`` before ``from``."""

    def section(module: str) -> int:
        top = module.split(".")[0]
        return 0 if top in sys.stdlib_module_names else 2 if top == "marlkit" else 1

    def as_part(alias: str | None) -> str:
        return f" as {alias}" if alias else ""

    blocks = []
    for number in range(3):
        mine = [i for i in imports if section(i[0]) == number]
        lines = sorted(f"import {module}{as_part(alias)}" for module, name, alias in mine if name is None)
        for module in sorted({module for module, name, _ in mine if name is not None}):
            names = sorted(f"{name}{as_part(alias)}" for m, name, alias in mine if m == module and name is not None)
            lines.append(f"from {module} import {', '.join(names)}")
        if lines:
            blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _used_names(function: ast.FunctionDef) -> set[str]:
    """Names a function reads (annotations included: a notebook evaluates them when it runs the ``def``)."""
    return {node.id for node in ast.walk(function) if isinstance(node, ast.Name)}


def solution_source(name: str) -> str:
    """A cell that defines ``name``'s reference solution and runs on its own.

    It starts with the imports the solution needs, then the private helpers of ``solutions`` it calls
    (their source, so a teacher sees all of the answer), then the solution itself. Another exercise's
    solution that it calls (``select_parents`` calls ``tournament_winner``) is imported from
    ``marlkit.exercises.solutions``.
    """
    module = _solutions_module_names()
    imports: set[Import] = set()
    helpers: list[str] = []  # private helpers, each before the functions that call it
    seen = {name}

    def collect(function: ast.FunctionDef) -> None:
        for used in sorted(_used_names(function) - seen):
            seen.add(used)
            found = module.get(used, False)
            if isinstance(found, tuple):
                imports.add(found)
            elif isinstance(found, ast.FunctionDef) and used.startswith("_"):
                collect(found)
                helpers.append(inspect.getsource(getattr(solutions, used)))
            elif found is not False:  # a public solution or a constant of the solutions module
                imports.add((solutions.__name__, used, None))

    function = EXERCISES[name].solution
    collect(ast.parse(textwrap.dedent(inspect.getsource(function))).body[0])
    parts = [_import_lines(imports)] if imports else []
    parts += [helper.strip("\n") for helper in helpers] + [inspect.getsource(function).strip("\n")]
    return "\n\n\n".join(parts)


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
