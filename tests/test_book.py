"""The course book (book/), built as ``make book`` builds it and read in a real browser.

One module-scoped fixture builds the site with book/build.py (no notebook is executed; any Sphinx
warning but a layout slip in a docstring fails the build), serves book/_build/html on 127.0.0.1 and
opens every page in headless Chromium, recording what a reader would see. The tests then check:

* every chapter (one per notebooks/NN_*.ipynb) shows the notebook's title, the text of its Markdown
  cells, all its code cells and all its stored figures, and every image on every page has loaded
  (naturalWidth > 0);
* formulas are typeset by the book's own MathJax;
* the API reference documents every public name of marlkit (``marlkit.__all__``);
* every same-site link resolves to a file of the site, and its #anchor to an element of the page;
* no page loads anything from outside the site (the book must work in a classroom without internet)
  and no page raises a JavaScript error.
"""

from __future__ import annotations

import importlib.util
import os
import posixpath
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

import nbformat
import pytest
from browser_utils import launch_chromium, serve_directory

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
HTML = BOOK / "_build" / "html"
# The chapters' source; another folder can be given to try the book on other notebooks.
NOTEBOOKS = Path(os.environ.get("MARLKIT_BOOK_NOTEBOOKS", ROOT / "notebooks"))

# Building (~20 s) and reading ~30 pages (~1 s each) on 2 cores stays well inside this.
pytestmark = pytest.mark.timeout(600)

# Requests that may fail without the page being broken: the favicon the browser asks for on its own,
# and MathJax 2's probes for fonts it can do without (the STIX-Web fonts it uses are shipped).
HARMLESS_FAILURES = ("/favicon.ico", "/mathjax/fonts/HTML-CSS/TeX/")

# Jupyter Book's index.html is a one-line forward to the root page.
REDIRECT = re.compile(r'<meta http-equiv="Refresh" content="0; url=([^"]+)"', re.IGNORECASE)


def harmless(url: str) -> bool:
    return any(part in url for part in HARMLESS_FAILURES)


def load_build_script():
    """book/build.py as a module (book/ is not a package): its public_api() names what to document."""
    spec = importlib.util.spec_from_file_location("book_build", BOOK / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Page:
    """What one page showed in the browser."""

    path: str  # relative to the site root, e.g. "chapters/01_intro.html"
    status: int
    title: str = ""
    text: str = ""  # the article's visible text
    ids: set[str] = field(default_factory=set)
    links: list[str] = field(default_factory=list)  # absolute hrefs
    images: list[dict] = field(default_factory=list)  # {"src", "loaded"}
    code_cells: int = 0
    formulas: int = 0
    typeset_formulas: int = 0
    errors: list[str] = field(default_factory=list)  # uncaught JavaScript exceptions


# JavaScript run in each page after it has loaded: collects everything the tests look at.
READ_PAGE = """async () => {
  // Images: make lazy ones load now, then wait until each has loaded or failed.
  const images = Array.from(document.images);
  images.forEach(img => { img.loading = "eager"; });
  await Promise.all(images.map(img => img.decode().catch(() => null)));
  // Formulas: wait for MathJax's typesetting queue to drain (when the page has formulas at all).
  const formulas = Array.from(document.querySelectorAll("span.math, div.math"));
  if (formulas.length) {
    const started = Date.now();
    while (!(window.MathJax && MathJax.Hub && MathJax.Hub.Queue) && Date.now() - started < 15000) {
      await new Promise(r => setTimeout(r, 50));
    }
    if (window.MathJax && MathJax.Hub) await new Promise(r => MathJax.Hub.Queue(r));
  }
  const article = document.querySelector("article.bd-article") || document.body;
  return {
    title: (article.querySelector("h1") || {}).textContent || "",
    text: article.innerText,
    ids: Array.from(document.querySelectorAll("[id]"), e => e.id)
      .concat(Array.from(document.querySelectorAll("a[name]"), e => e.name)),
    links: Array.from(document.querySelectorAll("a[href]"), a => a.href),
    images: images.map(img => ({src: img.currentSrc || img.src, loaded: img.complete && img.naturalWidth > 0})),
    code_cells: article.querySelectorAll("div.cell_input").length,
    formulas: formulas.length,
    typeset_formulas: formulas.filter(f => f.querySelector(".MathJax, .MathJax_Display, .MathJax_SVG")).length,
  };
}"""


@pytest.fixture(scope="module")
def build():
    """Build the book exactly as ``make book`` does; the build script's output explains any failure."""
    result = subprocess.run(
        [sys.executable, str(BOOK / "build.py"), "--notebooks", str(NOTEBOOKS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, f"book/build.py failed (warnings are errors):\n{log[-6000:]}"
    return load_build_script()


@pytest.fixture(scope="module")
def site(build):
    """Every HTML page of the built site, opened in headless Chromium: {relative path: Page}."""
    paths = sorted(
        p.relative_to(HTML).as_posix()
        for p in HTML.rglob("*.html")
        if not p.relative_to(HTML).parts[0].startswith(("_", "mathjax"))  # theme and MathJax files
    )
    pages, redirects, requests, failed, served, errors = {}, {}, [], [], set(), {path: [] for path in paths}

    def on_response(response) -> None:
        if response.status >= 400:
            failed.append(response.url)
        else:
            served.add(response.url)

    visiting = [""]  # the page being read, for the event handlers below
    with serve_directory(HTML) as base, launch_chromium() as browser:
        page = browser.new_page()
        page.on("request", lambda request: requests.append(request.url))
        page.on("requestfailed", lambda request: failed.append(request.url))
        page.on("response", on_response)
        page.on("pageerror", lambda error: errors[visiting[0]].append(str(error)))
        for path in paths:
            visiting[0] = path
            redirect = REDIRECT.match((HTML / path).read_text(errors="replace"))
            if redirect:  # Jupyter Book's index.html only forwards to the root page
                page.goto(base + path)
                page.wait_for_url(urljoin(base + path, redirect[1]))
                redirects[path] = posixpath.normpath(posixpath.join(posixpath.dirname(path), redirect[1]))
                continue
            response = page.goto(base + path, wait_until="load")
            data = page.evaluate(READ_PAGE)
            # Let requests still in flight (MathJax fetches its font data lazily) finish before the next
            # page; leaving would abort them, and they would be reported as failed.
            page.wait_for_load_state("networkidle")
            data["ids"] = set(data["ids"])
            pages[path] = Page(path=path, status=response.status, errors=errors[path], **data)
    return {
        "base": base,
        "pages": pages,
        "redirects": redirects,
        "requests": requests,
        "failed": failed,
        "served": served,
    }


def plain_phrase(markdown: str) -> str:
    """The longest run of plain words in a Markdown cell, as a reader sees it on the page.

    Formulas, code, links, HTML tags and markup characters are cut out first, as they do not appear
    verbatim in the rendered text.
    """
    for pattern in (r"\$\$.*?\$\$", r"\$.*?\$", r"```.*?```", r"`[^`]*`", r"\]\([^)]*\)", r"<[^>]+>", r"https?://\S+"):
        markdown = re.sub(pattern, "|", markdown, flags=re.DOTALL)
    runs = re.findall(r"[A-Za-z]+(?: [A-Za-z]+)+", " ".join(markdown.split()))
    return max(runs, key=len, default="")


def chapter_notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("[0-9]*.ipynb"))


def test_every_page_loads_with_content(site):
    pages = site["pages"]
    assert {"intro.html", "classroom.html", "api/index.html"} <= set(pages)
    assert site["redirects"] == {"index.html": "intro.html"}
    for path, page in pages.items():
        assert page.status == 200, path
        assert page.title.strip(), f"{path} has no <h1> title"
        assert len(page.text.strip()) > len(page.title), f"{path} shows nothing but its title"
        assert not page.errors, f"JavaScript errors on {path}: {page.errors}"


def test_every_notebook_is_a_chapter_with_its_code_and_figures(site):
    pages = site["pages"]
    for notebook_path in chapter_notebooks():
        notebook = nbformat.read(notebook_path, as_version=4)
        page = pages.get(f"chapters/{notebook_path.stem}.html")
        assert page is not None, f"{notebook_path.name} has no chapter page"

        # The chapter title is the notebook's first Markdown heading.
        headings = [
            line.lstrip("#").strip()
            for cell in notebook.cells
            if cell.cell_type == "markdown"
            for line in cell.source.splitlines()
            if line.startswith("# ")
        ]
        if headings:  # the page's <h1> ends with the "#" of its heading link
            assert page.title.rstrip("#").strip() == headings[0].replace("`", ""), page.path

        # The text of every Markdown cell (checked by its longest plain phrase).
        text = " ".join(page.text.split())
        for cell in notebook.cells:
            phrase = plain_phrase(cell.source) if cell.cell_type == "markdown" else ""
            assert phrase in text, f"{page.path} misses the Markdown text {phrase!r}"

        # Every code cell shown (myst-nb drops cells tagged remove-input/remove-cell), every stored figure.
        shown = [
            cell
            for cell in notebook.cells
            if cell.cell_type == "code" and not {"remove-input", "remove-cell"} & set(cell.metadata.get("tags", []))
        ]
        assert page.code_cells == len(shown), f"{page.path}: {page.code_cells} code cells, notebook has {len(shown)}"
        figures = sum(
            1
            for cell in shown
            if "remove-output" not in cell.metadata.get("tags", [])
            for output in cell.get("outputs", [])
            if {"image/png", "image/jpeg", "image/svg+xml"} & set(output.get("data", {}))
        )
        loaded = [image for image in page.images if image["loaded"]]
        assert len(loaded) >= figures, f"{page.path}: {len(loaded)} images loaded, notebook stores {figures} figures"


def test_every_image_loads(site):
    broken = [
        (path, image["src"]) for path, page in site["pages"].items() for image in page.images if not image["loaded"]
    ]
    assert not broken, f"images that did not load: {broken}"


def test_formulas_are_typeset(site):
    for path, page in site["pages"].items():
        assert page.typeset_formulas == page.formulas, f"{path}: {page.formulas - page.typeset_formulas} raw formulas"


def test_api_reference_documents_every_public_name(site, build):
    pages = site["pages"]
    names = build.public_api()
    assert names, "marlkit has no public names to document"
    api_ids = set().union(*(page.ids for path, page in pages.items() if path.startswith("api/")))
    missing = [name for name in names if name not in api_ids]
    assert not missing, f"public names without an entry in the API reference: {missing}"
    overview = pages["api/index.html"].text
    assert all(name in overview for name in names), "the API overview table misses public names"


def test_no_broken_internal_links(site):
    base, pages = site["base"], site["pages"]
    broken = []
    for path, page in pages.items():
        for link in page.links:
            url, anchor = urldefrag(link)
            if not url.startswith(base):
                continue  # links to other sites are not the book's to check (and there is no network)
            target = unquote(urlsplit(url).path)[len(urlsplit(base).path) :] or "index.html"
            if target.endswith("/"):
                target += "index.html"
            if not (HTML / target).is_file():
                broken.append(f"{path} -> {target} (no such file)")
            elif anchor and target in pages and anchor not in pages[target].ids:
                broken.append(f"{path} -> {target}#{anchor} (no such anchor)")
    assert not broken, "broken links:\n" + "\n".join(sorted(set(broken)))


def test_pages_need_nothing_from_outside_the_site(site):
    outside = sorted({url for url in site["requests"] if not url.startswith((site["base"], "data:", "about:"))})
    assert not outside, f"pages load resources from other sites (the book must work offline): {outside}"
    # A request the browser aborted (a slow MathJax font file, say) is only a problem if the file was never
    # served: a file missing from the site fails on every page that asks for it.
    failed = sorted(
        {url for url in site["failed"] if not url.startswith("about:") and not harmless(url)} - site["served"]
    )
    assert not failed, f"requests that failed: {failed}"
