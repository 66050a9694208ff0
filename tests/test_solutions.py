"""The solutions version of the course notebooks (``make solutions``): every ``# YOUR CODE HERE`` stub of
every ``notebooks/NN_*.ipynb`` is an exercise of ``marlkit.exercises``, and its replacement passes the check.

No notebook is run: only the exercise cells themselves are executed, each in a fresh namespace.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from nbformat.v4 import new_code_cell, new_notebook

from marlkit.exercises import EXERCISES
from marlkit.exercises.notebooks import STUB_MARKER, solutions_notebook, stub_functions

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@cache
def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def stub_cells(nb: nbformat.NotebookNode) -> list[tuple[int, list[str]]]:
    """(cell index, functions the stub defines) of every stub cell."""
    return [(i, stub_functions(cell.source)) for i, cell in enumerate(nb.cells)
            if cell.cell_type == "code" and STUB_MARKER in cell.source]


def run_cell(source: str) -> dict:
    """The namespace ``source`` leaves, run from scratch (with only numpy and torch imported)."""
    namespace = {"np": np, "torch": torch}
    exec(compile(source, "<cell>", "exec"), namespace)
    return namespace


def ids(paths):
    return [p.name for p in paths]


WITH_EXERCISES = [path for path in NOTEBOOKS if stub_cells(read(path))]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_every_stub_is_an_exercise(path):
    for index, functions in stub_cells(read(path)):
        assert functions, f"{path.name} cell {index}: a {STUB_MARKER!r} cell that defines no function"
        for name in functions:
            assert name in EXERCISES, f"{path.name} cell {index}: {name} is not in marlkit.exercises.EXERCISES"
        # the notebook shows the official stub, statement included
        assert read(path).cells[index].source == "\n\n\n".join(EXERCISES[f].stub.rstrip("\n") for f in functions)


def test_every_exercise_is_in_a_notebook():
    in_notebooks = {name for path in NOTEBOOKS for _, functions in stub_cells(read(path)) for name in functions}
    assert set(EXERCISES) == in_notebooks


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_the_solutions_version_has_no_stub_left(path):
    nb = read(path)
    solved = solutions_notebook(nb, path.name)
    nbformat.validate(solved)
    assert not any(STUB_MARKER in cell.source for cell in solved.cells if cell.cell_type == "code")
    assert len(solved.cells) == len(nb.cells)
    stubs = {index for index, _ in stub_cells(nb)}
    for index, (before, after) in enumerate(zip(nb.cells, solved.cells)):
        assert after.cell_type == before.cell_type
        if index not in stubs:
            assert after.source == before.source, f"{path.name} cell {index}: only stub cells change"
    assert read(path) is nb and all(STUB_MARKER in nb.cells[i].source for i in stubs), "the original is unchanged"


@pytest.mark.parametrize("path", WITH_EXERCISES, ids=ids(WITH_EXERCISES))
def test_solution_cells_pass_their_checks_and_stubs_fail(path, capsys):
    nb = read(path)
    solved = solutions_notebook(nb, path.name)
    for index, functions in stub_cells(nb):
        solution_namespace, stub_namespace = run_cell(solved.cells[index].source), run_cell(nb.cells[index].source)
        assert solved.cells[index].outputs == [] and solved.cells[index].execution_count is None
        for name in functions:
            check = EXERCISES[name].check
            assert check(solution_namespace[name], raise_on_fail=True), f"{path.name} cell {index}: {name}"
            assert check(stub_namespace[name]) is False
            assert f"✗ {name}: not implemented yet" in capsys.readouterr().out
            # the check cell that follows no longer shows the stub's "not implemented yet"
            check_cells = [c for c in solved.cells[index + 1:]
                           if c.cell_type == "code" and f"{check.__name__}({name})" in c.source]
            assert check_cells and check_cells[0].outputs == [], f"{path.name}: no check cell after the {name} stub"


def test_a_stub_without_a_solution_is_a_clear_error():
    nb = new_notebook(cells=[new_code_cell("import os"),
                             new_code_cell(f"def mystery(x):\n    {STUB_MARKER}\n    raise NotImplementedError")])
    with pytest.raises(ValueError, match=r"99_test.ipynb cell 1: the stub of mystery has no reference solution"):
        solutions_notebook(nb, "99_test.ipynb")


def test_the_script_writes_every_notebook(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("_solutions", ROOT / "notebooks" / "_solutions.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ids(NOTEBOOKS)
    for path in tmp_path.iterdir():
        assert not any(STUB_MARKER in cell.source for cell in read(path).cells if cell.cell_type == "code")
    # the default output folder is not committed
    assert "notebooks/solutions/" in (ROOT / ".gitignore").read_text().splitlines()
