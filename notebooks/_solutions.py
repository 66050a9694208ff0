"""Write the solutions version of the course notebooks, for teachers (``make solutions``).

    .venv/bin/python notebooks/_solutions.py              # every notebooks/NN_*.ipynb -> notebooks/solutions/
    .venv/bin/python notebooks/_solutions.py --out DIR    # somewhere else

Each copy has every ``# YOUR CODE HERE`` stub replaced by its reference solution from
``marlkit.exercises.solutions`` (see ``marlkit.exercises.notebooks``); the stub's cell and its check cell
lose their stored outputs, every other cell keeps the full run's. Nothing is executed. The output folder
is git-ignored: the solutions are not handed out with the course.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

from marlkit.exercises.notebooks import solutions_notebook

NOTEBOOKS = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=NOTEBOOKS / "solutions", help="output folder")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        nb = solutions_notebook(nbformat.read(path, as_version=4), path.name)
        nbformat.validate(nb)
        nbformat.write(nb, args.out / path.name)
        print(f"wrote {args.out / path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
