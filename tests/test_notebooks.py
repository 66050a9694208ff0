"""The course notebooks are committed clean and follow the course conventions (STYLE.md).

These checks read the stored ``notebooks/NN_*.ipynb`` files; they run nothing. Running the notebooks is
nbval's job: ``make test`` executes every notebook in quick mode and compares each cell's output with
the stored one (cells tagged ``nbval-ignore-output`` excepted)::

    MARLKIT_QUICK=1 .venv/bin/python -m pytest --nbval --nbval-current-env \\
        --nbval-sanitize-with notebooks/nbval_sanitize.cfg notebooks/

To (re)store a notebook's outputs after editing it: ``.venv/bin/python notebooks/_execute.py notebooks/NN_*.ipynb``
(a full run, then the clean-up these tests expect).
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
ALLOWED_NOTEBOOK_METADATA = {"kernelspec", "language_info"}
ALLOWED_CELL_METADATA = {"tags", "collapsed", "scrolled", "jupyter"}
# Outputs must not reveal the machine that ran the notebook.
MACHINE_MARKERS = [str(ROOT), str(Path.home()), "/home/", "/Users/", "site-packages"]
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def ids(paths):
    return [p.name for p in paths]


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks/NN_*.ipynb found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_notebook_is_stored_clean(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert set(nb.metadata) <= ALLOWED_NOTEBOOK_METADATA, (
        f"{path.name}: notebook metadata {sorted(set(nb.metadata) - ALLOWED_NOTEBOOK_METADATA)} should be stripped "
        "(widget state, execution info); run notebooks/_execute.py")
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", f"{path.name}: kernelspec must be python3"
    assert "version" not in nb.metadata.get("language_info", {}), (
        f"{path.name}: language_info.version is machine-specific")

    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    counts = [c.execution_count for c in code_cells]
    assert counts == list(range(1, len(code_cells) + 1)), (
        f"{path.name}: execution counts {counts} should be 1..{len(code_cells)}: store the outputs of one full "
        "top-to-bottom run (notebooks/_execute.py)")
    for i, cell in enumerate(nb.cells):
        extra = set(cell.metadata) - ALLOWED_CELL_METADATA
        assert not extra, f"{path.name} cell {i}: cell metadata {sorted(extra)} should be stripped"
        for output in cell.get("outputs", []):
            assert output.output_type != "error", f"{path.name} cell {i} stores an error: {output.get('ename')}"
            assert not (output.output_type == "stream" and output.name == "stderr"), (
                f"{path.name} cell {i} stores stderr output (a warning?): {output.text[:200]!r}")
            data = output.get("data", {})
            assert WIDGET_MIME not in data, f"{path.name} cell {i}: widget views refer to state that is not stored"
            text = str(output.get("text", "")) + str(data.get("text/plain", ""))
            for marker in MACHINE_MARKERS:
                assert marker not in text, f"{path.name} cell {i}: output mentions {marker!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_notebook_follows_course_conventions(path):
    nb = nbformat.read(path, as_version=4)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), (
        f"{path.name}: the first cell is the chapter title (a '# ' heading)")
    assert re.search(r"learning goals", first.source, re.IGNORECASE), (
        f"{path.name}: the first cell states the learning goals")

    # the one knob: a parameters cell near the top reads MARLKIT_QUICK
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    knob = [c for c in code_cells[:3] if 'os.environ.get("MARLKIT_QUICK"' in c.source]
    assert knob, f"{path.name}: one of the first code cells should read os.environ.get(\"MARLKIT_QUICK\", ...)"
    assert "parameters" in knob[0].metadata.get("tags", []), f"{path.name}: tag the knob's cell 'parameters'"
