"""Run course notebooks in full mode and store them clean, with their outputs.

    .venv/bin/python notebooks/_execute.py                      # every notebooks/NN_*.ipynb
    .venv/bin/python notebooks/_execute.py notebooks/03_*.ipynb # some of them
    .venv/bin/python notebooks/_execute.py --quick ...          # a quick-mode run (to try; do not commit it)

The outputs stored in ``notebooks/*.ipynb`` come from the *full* run (``MARLKIT_QUICK`` unset): they are
what the book shows. CI re-runs every notebook in quick mode (``MARLKIT_QUICK=1``) with nbval and
compares each cell's output with the stored one, except in cells tagged ``nbval-ignore-output`` (see the
Makefile's ``test`` target and ``tests/test_notebooks.py``).

After the run, the notebook is cleaned so that a diff shows only real changes and no output leaks the
machine it ran on:

* notebook metadata: only ``kernelspec`` (python3) and a version-free ``language_info``;
* cell metadata: only ``tags`` (and ``collapsed``/``jupyter``/``scrolled`` display hints);
  nbclient's per-cell ``execution`` timings are dropped;
* execution counts: 1, 2, 3, ... over the code cells, in order;
* widget outputs keep their ``text/plain`` form only and the notebook's widget state is dropped (the book
  is static; widget cells print a text summary as well);
* the run fails if an output holds an error or a path of this machine (``/home/...``, the repository path).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent
ROOT = NOTEBOOKS.parent
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
LANGUAGE_INFO = {
    "codemirror_mode": {"name": "ipython", "version": 3},
    "file_extension": ".py",
    "mimetype": "text/x-python",
    "name": "python",
    "nbconvert_exporter": "python",
    "pygments_lexer": "ipython3",
}
KEPT_CELL_METADATA = ("tags", "collapsed", "scrolled", "jupyter")
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def clean(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Strip run-specific metadata, renumber execution counts, reduce widget outputs to text."""
    nb.metadata = nbformat.from_dict({"kernelspec": KERNELSPEC, "language_info": LANGUAGE_INFO})
    count = 0
    for cell in nb.cells:
        cell.metadata = nbformat.from_dict({k: v for k, v in cell.metadata.items() if k in KEPT_CELL_METADATA})
        if cell.cell_type != "code":
            continue
        count += 1
        cell.execution_count = count
        outputs = []
        for output in cell.outputs:
            if output.output_type in ("display_data", "execute_result"):
                data = output.get("data", {})
                if WIDGET_MIME in data:
                    data.pop(WIDGET_MIME)
                    if not data:
                        continue
                if output.output_type == "execute_result":
                    output.execution_count = count
            outputs.append(output)
        cell.outputs = outputs
    return nb


def problems(nb: nbformat.NotebookNode) -> list[str]:
    """Error outputs and machine paths in outputs (an empty list means the notebook is fit to commit)."""
    found = []
    machine = {str(ROOT), str(Path.home()), "/home/", "/Users/", "/tmp/", "site-packages"}
    for i, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                found.append(f"cell {i}: {output.ename}: {output.evalue}")
            text = str(output.get("text", "")) + str(output.get("data", {}).get("text/plain", ""))
            for marker in machine:
                if marker and marker in text:
                    found.append(f"cell {i}: output mentions {marker!r}")
    return found


def execute(path: Path, quick: bool = False, timeout: int = 1200) -> float:
    """Run ``path`` top to bottom in its own folder (full mode unless ``quick``), clean it, save it."""
    nb = nbformat.read(path, as_version=4)
    if quick:
        os.environ["MARLKIT_QUICK"] = "1"
    else:
        os.environ.pop("MARLKIT_QUICK", None)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        record_timing=False,
    )
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    nb = clean(nb)
    found = problems(nb)
    if found:
        raise RuntimeError(f"{path.name} is not fit to store:\n  " + "\n  ".join(found))
    nbformat.validate(nb)
    nbformat.write(nb, path)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/[0-9]*.ipynb")
    parser.add_argument("--quick", action="store_true", help="run with MARLKIT_QUICK=1 (not for committing)")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted(NOTEBOOKS.glob("[0-9]*.ipynb"))
    for path in paths:
        seconds = execute(path.resolve(), quick=args.quick)
        print(f"{path.name}: {seconds:.1f} s ({'quick' if args.quick else 'full'} mode)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
