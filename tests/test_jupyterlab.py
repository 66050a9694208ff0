"""marlkit's widgets, live in JupyterLab, driven by a real browser.

A module-scoped fixture starts JupyterLab (this venv's, with its ipywidgets extension and python3
kernel) on 127.0.0.1 with a token, ``MARLKIT_QUICK=1`` and Jupyter/IPython folders of its own, serving a
temporary folder with copies of the notebooks, outputs cleared (the repository's notebooks are never
touched): notebook 03 (``NetConfigBuilder``), every course notebook that shows a ``MutationPanel`` (07),
and a three-line notebook of our own showing ``MutationPanel()``. Each test opens a notebook in headless
Chromium, runs every cell with the menu's Run → Run All Cells, waits until each code cell has its
execution count and the kernel is idle, then clicks and types in the rendered widget as a student would
and waits for the widget's text panel (computed by the kernel) to change:

* ``NetConfigBuilder`` (notebook 03): the rendered controls show the state the notebook's code gave them;
  switching the form to "per agent" re-renders one entry per agent and the summary's form line and
  net_config keys; typing bad layer sizes shows the error; typing "48, 24" and picking Tanh updates the
  net_config, YAML and bob_0's resolved network and parameter count (checked against a count by hand);
  the whole panel then equals the summary of the same builder driven in this process.
* ``MutationPanel``: the panel shows the values of its seven sliders; two arrow-key presses on the
  no_mutation slider move its readout and change the normalised distribution (the whole panel equals
  ``MutationPanel(**values).summary()`` of the new values); the preview button draws a mutation and
  shows it (for our own notebook, exactly the draw of the same panel in this process).

The page must raise no JavaScript error and request nothing outside 127.0.0.1 (a classroom may be
offline). The server and its kernels are always stopped at the end, even when a test fails; a process
that outlives them fails the run. As for the book's browser test, no Chromium skips these tests, except
in CI (``CI`` set), where it fails them.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import nbformat
import pytest
from browser_utils import chromium_path, launch_chromium, run_jupyterlab

ROOT = Path(__file__).resolve().parents[1]
NET_CONFIG_NOTEBOOK = ROOT / "notebooks" / "03_networks_and_net_config.ipynb"

# On 2 busy cores: server start ~5 s; notebook 03 ~20 s, 07 (a short evolutionary run) ~60 s, ours ~10 s.
pytestmark = pytest.mark.timeout(300)
WAIT_MS = 60_000  # the most any single wait on the page may take (a busy 2-core machine is slow)

# A notebook of our own for the MutationPanel, plus every course notebook that shows one (07).
MUTATION_NOTEBOOK = "from marlkit.widgets import MutationPanel\n\npanel = MutationPanel()\npanel"


def panel_cells() -> dict[str, int]:
    """{course notebook: index of its first cell that makes a MutationPanel}."""
    found = {}
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        cells = nbformat.read(path, as_version=4).cells
        first = next((i for i, cell in enumerate(cells)
                      if cell.cell_type == "code" and "MutationPanel(" in cell.source), None)
        if first is not None:
            found[path.name] = first
    return found


PANEL_NOTEBOOKS = panel_cells()

# The first n code cells numbered [k]: and the kernel idle, or an error shown (a run stops at an error).
ERROR_OUTPUT = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
RUN_FINISHED = """([n, total]) => {
  if (document.querySelector('.jp-Notebook ERROR_OUTPUT')) return true;
  const prompts = Array.from(document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt'));
  const indicator = document.querySelector('.jp-Notebook-ExecutionIndicator');
  return prompts.length === total && prompts.slice(0, n).every(p => /^\\[\\d+\\]:$/.test(p.textContent.trim()))
    && indicator !== null && indicator.dataset.status === 'idle';
}""".replace("ERROR_OUTPUT", ERROR_OUTPUT)


# --------------------------------------------------------------------------------------------------
# fixtures: one JupyterLab and one browser for the module
# --------------------------------------------------------------------------------------------------
def write_cleared(source: nbformat.NotebookNode, path: Path) -> None:
    """Write ``source`` to ``path`` without outputs or execution counts.

    Cleared, the page can only show outputs of this run, and "every prompt has a number" means it ran.
    """
    notebook = nbformat.from_dict(source)
    notebook.metadata.pop("widgets", None)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.write(notebook, path)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    chromium_path()  # skip (or fail in CI) before starting anything
    root = tmp_path_factory.mktemp("lab_root")
    write_cleared(nbformat.read(NET_CONFIG_NOTEBOOK, as_version=4), root / "net_config.ipynb")
    kernelspec = {"name": "python3", "language": "python", "display_name": "Python 3 (ipykernel)"}
    write_cleared(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(MUTATION_NOTEBOOK)],
                                           metadata={"kernelspec": kernelspec}), root / "mutation_panel.ipynb")
    for name in PANEL_NOTEBOOKS:
        write_cleared(nbformat.read(ROOT / "notebooks" / name, as_version=4), root / name)
    env = {"MARLKIT_QUICK": "1", "PYTHONPATH": str(ROOT)}  # the kernel imports this checkout's marlkit
    with run_jupyterlab(root, tmp_path_factory.mktemp("lab_home"), env=env) as server:
        yield server


@pytest.fixture(scope="module")
def browser(lab):
    with launch_chromium() as browser:
        yield browser


class NotebookPage:
    """A notebook opened in JupyterLab in its own browser page; records JavaScript errors and requests."""

    def __init__(self, browser, lab, name: str) -> None:
        self.lab, self.name = lab, name
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000})
        self.page = self.context.new_page()
        self.page.set_default_timeout(WAIT_MS)
        self.errors: list[str] = []
        self.outside: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("request", self._request)

    def _request(self, request) -> None:
        parts = urlsplit(request.url)
        if parts.scheme not in ("data", "blob") and parts.hostname != "127.0.0.1":
            self.outside.append(request.url)

    def menu(self, menu: str, item: str) -> None:
        """Click ``item`` in the main menu ``menu`` (e.g. "Run", "Run All Cells")."""
        page = self.page
        page.locator("#jp-MainMenu .lm-MenuBar-itemLabel", has_text=re.compile(rf"^{re.escape(menu)}$")).click()
        label = page.locator(".lm-Menu-itemLabel", has_text=re.compile(rf"^{re.escape(item)}$"))
        page.locator(".lm-MenuBar-menu li.lm-Menu-item:not(.lm-mod-disabled)", has=label).click()

    def run(self, through: int | None = None) -> None:
        """Open the notebook, wait for its kernel, then Run → Run All Cells, or (``through``: a cell index)
        select that cell, Run → Run All Above Selected Cell and Run Selected Cell; wait until they have run."""
        page = self.page
        cells = nbformat.read(self.lab.root / self.name, as_version=4).cells
        page.goto(self.lab.lab_url(self.name, workspace=Path(self.name).stem))
        page.locator(".jp-Notebook .jp-CodeCell").first.wait_for()
        page.locator("#jp-main-statusbar", has_text=re.compile(r"Python 3 \(ipykernel\) \| Idle")).wait_for()
        if through is None:
            self.menu("Run", "Run All Cells")
            through = len(cells) - 1
        else:
            cell = page.locator(".jp-Notebook .jp-Notebook-cell").nth(through)
            first_line = cells[through].source.strip().splitlines()[0]
            assert first_line in cell.locator(".jp-InputArea-editor").inner_text(), "not the cell to run through"
            cell.locator(".jp-InputPrompt").click()
            self.menu("Run", "Run All Above Selected Cell")
            self.menu("Run", "Run Selected Cell and Do not Advance")
        code_cells = [cell.cell_type == "code" for cell in cells]
        page.wait_for_function(RUN_FINISHED, arg=[sum(code_cells[: through + 1]), sum(code_cells)],
                               timeout=4 * WAIT_MS)
        errors = page.locator(ERROR_OUTPUT)
        assert errors.count() == 0, f"{self.name} printed errors when run:\n" + "\n".join(errors.all_inner_texts())

    def widget(self, has: str):
        """The one output area that holds a rendered widget with an element matching ``has``."""
        output = self.page.locator(".jp-OutputArea-output", has=self.page.locator(has))
        output.first.wait_for()
        assert output.count() == 1, f"expected one widget with {has!r} in {self.name}, found {output.count()}"
        return output

    def check_clean(self) -> None:
        assert not self.errors, f"JavaScript errors in JupyterLab: {self.errors}"
        assert not self.outside, f"JupyterLab requested URLs outside 127.0.0.1: {self.outside}"

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def notebook_page(browser, lab):
    pages = []

    def open_page(name: str) -> NotebookPage:
        pages.append(NotebookPage(browser, lab, name))
        return pages[-1]

    yield open_page
    for page in pages:
        page.close()


def wait_for_text(locator, text: str) -> str:
    """Wait until ``locator``'s text contains ``text`` (the kernel has answered); return its text."""
    from playwright.sync_api import expect

    expect(locator).to_contain_text(text, timeout=WAIT_MS)
    return locator.inner_text()


# --------------------------------------------------------------------------------------------------
# NetConfigBuilder, in notebook 03
# --------------------------------------------------------------------------------------------------
def guide_builder():
    """The builder notebook 03 displays (its cells 3.2 and 3.7), built in this process for comparison."""
    from gymnasium.spaces import Box, Discrete

    from marlkit.widgets import NetConfigBuilder

    agent_ids = ["bob_0", "bob_1", "fred_0", "fred_1"]
    observation_spaces = [Box(-1, 1, (16,)), Box(-1, 1, (16,)), Box(-1, 1, (32,)), Box(-1, 1, (32,))]
    return NetConfigBuilder(agent_ids, observation_spaces, [Discrete(2)] * 4, form="per group")


def entry_box(widget, name: str):
    """The controls of net_config entry ``name`` (its title is the name, or "name (agents)")."""
    title = widget.page.locator(".widget-html-content > b", has_text=re.compile(rf"^{re.escape(name)}( \(.*\))?$"))
    return widget.locator(".widget-vbox", has=title).last  # the innermost box holding the title


def mlp_parameters(sizes: list[int]) -> int:
    return sum(a * b + b for a, b in zip(sizes, sizes[1:]))


def test_net_config_builder_reacts_in_jupyterlab(notebook_page):
    notebook = notebook_page("net_config.ipynb")
    notebook.run()
    widget = notebook.widget(".widget-toggle-buttons")
    summary = widget.locator(".widget-html-content > pre")
    buttons = widget.locator(".widget-toggle-button")

    # As the notebook left it: created "per group", then its code set the group entries (bob 32, fred 64, 64).
    assert buttons.all_inner_texts() == ["single", "per agent", "per group"]
    assert "mod-active" in (buttons.nth(2).get_attribute("class") or "")
    text = wait_for_text(summary, "NetConfigBuilder: 'per group' form, share_parameters=False, 4 agents")
    assert "'hidden_size': [64, 64]" in text and "fred_1: obs (32,) -> MLP [64, 64] ReLU" in text, text
    assert entry_box(widget, "fred").get_by_label("encoder", exact=True).input_value() == "64, 64"

    # Click "per agent": one entry per agent, and the summary follows.
    buttons.nth(1).click()
    text = wait_for_text(summary, "NetConfigBuilder: 'per agent' form")
    assert "mod-active" in (buttons.nth(1).get_attribute("class") or "")
    assert widget.locator(".widget-html-content > b").all_inner_texts() == ["bob_0", "bob_1", "fred_0", "fred_1"]
    assert "net_config = {'bob_0': {" in text and "'fred_1': {" in text, text

    # Type layer sizes into bob_0's encoder field: first nonsense (an error in the panel), then "48, 24".
    bob_0 = entry_box(widget, "bob_0")
    encoder = bob_0.get_by_label("encoder", exact=True)
    encoder.fill("48, x")
    wait_for_text(summary, "error: encoder sizes of 'bob_0': expected layer sizes such as '64, 64', got '48, x'")
    encoder.fill("48, 24")
    bob_0.get_by_label("activation", exact=True).select_option("Tanh")
    # bob_0: 16 observations -> [48, 24] Tanh -> latent 32 -> head [64] -> 2 actions, counted by hand
    parameters = mlp_parameters([16, 48, 24, 32]) + mlp_parameters([32, 64, 2])
    row = (f"bob_0:  obs (16,) -> MLP [48, 24] Tanh -> latent 32 -> head MLP [64] ReLU -> 2 outputs  "
           f"[{parameters:,} parameters]")
    text = wait_for_text(summary, row)
    assert "'encoder_config': {'hidden_size': [48, 24], 'activation': 'Tanh'}" in text, text
    assert "hidden_size: [48, 24]\n      activation: Tanh" in text, text  # the YAML

    # The whole panel is what marlkit computes for the same clicks.
    expected = guide_builder()
    expected.form.value = "per agent"
    expected.entries["bob_0"].encoder_hidden.value = "48, 24"
    expected.entries["bob_0"].activation.value = "Tanh"
    assert text == expected.summary()
    notebook.check_clean()


# --------------------------------------------------------------------------------------------------
# MutationPanel
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mutation_panel.ipynb", *PANEL_NOTEBOOKS])
def test_mutation_panel_reacts_in_jupyterlab(notebook_page, name):
    from marlkit.widgets import MutationPanel

    notebook = notebook_page(name)
    # A course notebook runs up to its panel: what follows (07: an evolutionary run) plays no part in it.
    notebook.run(through=PANEL_NOTEBOOKS.get(name))
    widget = notebook.widget(".widget-slider")
    summary = widget.locator(".widget-html-content > pre")
    sliders = {slider.locator(".widget-label").inner_text(): slider
               for slider in widget.locator(".widget-slider").all()}
    values = {option: float(slider.locator(".widget-readout").inner_text()) for option, slider in sliders.items()}
    assert list(values) == list(MutationPanel().value), values  # one slider per Mutations option
    text = wait_for_text(summary, "Mutations(" + ", ".join(f"{k}={v:g}" for k, v in values.items()) + ")")
    if name == "mutation_panel.ipynb":  # our own notebook: MutationPanel() as it comes
        assert text == MutationPanel().summary()

    # Move the no_mutation slider by two steps (0.05 each) with the keyboard, as a student can.
    handle = sliders["no_mutation"].locator(".noUi-handle")
    step = 0.05 if values["no_mutation"] <= 0.9 else -0.05
    handle.focus()
    for _ in range(2):
        handle.press("ArrowRight" if step > 0 else "ArrowLeft")
    values["no_mutation"] = round(values["no_mutation"] + 2 * step, 2)
    text = wait_for_text(summary, f"Mutations(no_mutation={values['no_mutation']:g},")
    assert sliders["no_mutation"].locator(".widget-readout").inner_text() == f"{values['no_mutation']:.2f}"
    # the normalised distribution: no mutation gets no_mutation / (sum of the five option probabilities)
    total = sum(values[k] for k in ("no_mutation", "architecture", "parameters", "activation", "rl_hp"))
    assert re.search(rf"no mutation +{values['no_mutation'] / total:.3f} ", text), text
    # the whole panel, which forgot any earlier preview (it was drawn with the old probabilities)
    expected = MutationPanel(**values)
    assert text == expected.summary()

    # Preview a mutation: the kernel draws one and shows what it drew and what it changed.
    widget.get_by_role("button", name="preview a mutation").click()
    text = wait_for_text(summary, "): drew ")
    drawn = re.search(r"^preview (\d+) \(rand_seed=\[\d+, (\d+)\]\): drew '[a-z_ ]+' -> agent\.mut = ", text, re.M)
    assert drawn and int(drawn[1]) == int(drawn[2]) + 1, text
    assert text.startswith(expected.summary().rsplit("\n", 1)[0]), text  # the distribution is unchanged
    if name == "mutation_panel.ipynb":  # the default network and seed: the same draw in this process
        expected.preview()
        assert text == expected.summary()
    notebook.check_clean()
