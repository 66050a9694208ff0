"""Build the marlkit book: ``python book/build.py`` (what ``make book`` runs) -> ``book/_build/html``.

Jupyter Book 1 only sees pages inside ``book/`` and reads a fixed ``_toc.yml``, while the course's
chapters live in ``notebooks/`` and the API reference must follow ``marlkit.__all__``. So this script
first generates the parts that move, then runs Jupyter Book once:

* ``chapters/``       a fresh copy of ``notebooks/NN_*.ipynb`` with their stored outputs (nothing is
                      executed); the ``chapters/*`` glob in ``_toc.yml`` lists them in file-name order,
                      so a new ``notebooks/NN_name.ipynb`` needs no edit anywhere;
* ``api/``            one page per marlkit subpackage with autodoc directives for the public names it
                      defines, plus an overview table; found by the ``api/*`` glob;
* ``_offline/``       MathJax from the jupyter-server-mathjax package, so formulas render offline.

All three are git-ignored and rewritten on every build. Every Sphinx warning fails the build (a
broken cross-reference or link, a missing image, a toc problem, malformed Markdown in a notebook) and is
listed at the end, except reStructuredText layout slips inside docstrings, which are listed but kept
(see ``is_docstring_markup``).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
import shutil
import subprocess
import sys
from pathlib import Path

BOOK = Path(__file__).resolve().parent
ROOT = BOOK.parent

# Files a notebook may reference by relative path (figures next to the notebooks) and that must
# travel with it into chapters/.
ASSET_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".svg"}


# ---------------------------------------------------------------------------------------------------
# Chapters: notebooks/*.ipynb -> book/chapters/
# ---------------------------------------------------------------------------------------------------
def copy_chapters(notebooks: Path, chapters: Path) -> list[str]:
    """Mirror the chapter notebooks ``NN_name.ipynb`` (and image files beside them) into ``chapters/``.

    Only numbered notebooks are chapters (as for notebooks/_execute.py), so a scratch ``Untitled.ipynb``
    never reaches the book.

    The folder is emptied first so a renamed or deleted notebook leaves no stale page behind.
    ``copy2`` keeps modification times, which is what Sphinx compares to decide what to re-read.
    Returns the copied notebook names.
    """
    if chapters.exists():
        shutil.rmtree(chapters)
    chapters.mkdir(parents=True)
    names = []
    for source in sorted(notebooks.rglob("*")):
        relative = source.relative_to(notebooks)
        if any(part.startswith(".") for part in relative.parts) or not source.is_file():
            continue  # .ipynb_checkpoints/ and other hidden files
        is_chapter = source.suffix == ".ipynb" and len(relative.parts) == 1 and source.name[0].isdigit()
        if is_chapter or source.suffix.lower() in ASSET_SUFFIXES:
            (chapters / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, chapters / relative)
            names += [source.name] if is_chapter else []
    return names


# ---------------------------------------------------------------------------------------------------
# API reference: marlkit.__all__ -> book/api/*.rst
# ---------------------------------------------------------------------------------------------------
def public_api() -> list[str]:
    """Dotted paths of the names to document: ``marlkit.__all__`` as ``["marlkit.MADDPG", ...]``."""
    return [f"marlkit.{name}" for name in importlib.import_module("marlkit").__all__]


def resolve(path: str):
    """The object a dotted path names: ``resolve("marlkit.hpo.RLParameter")`` -> the class."""
    module_name, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module_name), name)


def subpackage_of(obj) -> str:
    """``"marlkit.hpo"`` for a name defined in ``marlkit/hpo/tournament.py``: the API page it goes on."""
    module = getattr(obj, "__module__", None) or ""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "marlkit" and len(parts) > 1 else "marlkit"


def autodoc_directive(path: str, obj) -> str:
    if inspect.isclass(obj):
        return f".. autoclass:: {path}\n   :members:\n   :show-inheritance:\n"
    if callable(obj):
        return f".. autofunction:: {path}\n"
    return f".. autodata:: {path}\n"


def rst_title(text: str, underline: str = "=") -> str:
    return f"{text}\n{underline * len(text)}\n"


def write_api_pages(api: Path, paths: list[str]) -> list[str]:
    """Write ``api/index.rst`` (overview table) and one ``api/<subpackage>.rst`` per subpackage."""
    if api.exists():
        shutil.rmtree(api)
    api.mkdir(parents=True)

    groups: dict[str, list[tuple[str, object]]] = {}
    for path in paths:
        obj = resolve(path)
        groups.setdefault(subpackage_of(obj), []).append((path, obj))

    index = [
        rst_title("API reference"),
        "Every name of ``marlkit.__all__``, so everything here imports as ``from marlkit import ...``. "
        "The reference is generated from the docstrings each time the book is built. The table gives each "
        "name with the first line of its docstring; the pages that follow hold the full documentation, "
        "one page per subpackage.\n",
        ".. autosummary::\n   :nosignatures:\n\n" + "".join(f"   {path}\n" for path in paths),
    ]
    (api / "index.rst").write_text("\n".join(index))

    for package, members in sorted(groups.items()):
        # automodule without :members: shows the subpackage's docstring as the page's introduction.
        page = [rst_title(f"``{package}``"), f".. automodule:: {package}\n"]
        page += [autodoc_directive(path, obj) for path, obj in members]
        (api / f"{package.removeprefix('marlkit.')}.rst").write_text("\n".join(page))
    return sorted(groups)


# ---------------------------------------------------------------------------------------------------
# MathJax, served from the book itself
# ---------------------------------------------------------------------------------------------------
def copy_mathjax(offline: Path) -> None:
    """Copy MathJax 2 (shipped inside the jupyter-server-mathjax wheel) to ``_offline/mathjax``.

    Sphinx would otherwise load MathJax from a CDN, and a classroom without internet would see raw
    LaTeX. ``mathjax_path`` in ``_config.yml`` points at this copy.
    """
    import jupyter_server_mathjax

    target = offline / "mathjax"
    if not target.exists():
        shutil.copytree(Path(jupyter_server_mathjax.__file__).parent / "static", target)


# ---------------------------------------------------------------------------------------------------
# Warnings
# ---------------------------------------------------------------------------------------------------
ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")
WARNING_LINE = re.compile(r": (WARNING|ERROR|SEVERE|CRITICAL): ")


def is_docstring_markup(warning: str) -> bool:
    """A reStructuredText layout complaint about a docstring, e.g. ``Unexpected indentation``.

    marlkit's docstrings are written for readers of the source (plain-text argument lists, shape
    tables), not as reStructuredText; the few layout slips docutils finds there still render as
    readable text. Such messages carry the location ``...py:docstring of marlkit.X`` and, unlike
    Sphinx's own warnings (``[ref.ref]``, ``[myst.xref_missing]``, ...), no ``[type.subtype]`` tag.
    """
    return "docstring of" in warning and not warning.rstrip().endswith("]")


def run_jupyter_book() -> tuple[int, list[str]]:
    """Run Jupyter Book (output streamed through); return its exit code and its warning lines."""
    # A build from scratch: every page's warnings are reported, and the pages of a deleted or renamed
    # notebook do not linger in the output.
    shutil.rmtree(BOOK / "_build", ignore_errors=True)
    jupyter_book = shutil.which("jupyter-book", path=Path(sys.executable).parent) or "jupyter-book"
    command = [jupyter_book, "build", str(BOOK)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    warnings = []
    for line in process.stdout:
        print(line, end="")
        plain = ANSI_COLOUR.sub("", line).strip()
        if WARNING_LINE.search(plain):
            warnings.append(plain)
    return process.wait(), warnings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebooks", type=Path, default=ROOT / "notebooks", help="folder of chapter notebooks")
    args = parser.parse_args(argv)

    chapters = copy_chapters(args.notebooks, BOOK / "chapters")
    print(f"book: {len(chapters)} chapter(s) from {args.notebooks}: {', '.join(chapters) or '-'}")
    paths = public_api()
    packages = write_api_pages(BOOK / "api", paths)
    print(f"book: API reference of {len(paths)} public name(s) on {len(packages)} page(s)")
    copy_mathjax(BOOK / "_offline")

    returncode, warnings = run_jupyter_book()
    docstring_markup = [w for w in warnings if is_docstring_markup(w)]
    errors = [w for w in warnings if not is_docstring_markup(w)]
    if docstring_markup:
        print(f"\nbook: {len(docstring_markup)} reStructuredText layout warning(s) in docstrings (shown as text):")
        print("\n".join(f"  {w}" for w in docstring_markup))
    if errors:
        # Broken references, missing images, toc problems, malformed notebook Markdown: the book is wrong.
        print(f"\nbook: FAILED, {len(errors)} warning(s) are errors:")
        print("\n".join(f"  {w}" for w in errors))
        return 1
    if returncode == 0:
        print(f"\nbook: built {BOOK.relative_to(ROOT)}/_build/html/index.html")
    return returncode


if __name__ == "__main__":
    sys.exit(main())
