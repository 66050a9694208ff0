"""Plots of an evolutionary training run, drawn from its run record (``marlkit.training.records``).

Every function accepts a ``RunRecord``, a run directory (or its ``generations.jsonl``), or the list of
generation dicts, and returns a matplotlib ``Figure``; pass ``save_path`` to also write a PNG. Figures
are built with ``matplotlib.figure.Figure`` rather than pyplot, so they work under any backend (Agg in
CI, no display needed) and a training loop that plots every generation does not pile up open
windows. In a notebook, make the figure the cell's last expression (or call ``display(fig)``); the
module registers a PNG renderer with IPython so that works without ``%matplotlib inline``.

Following one agent across generations needs care: tournament selection gives most members a new
index each generation. So the per-member lines below follow *ancestry*: each member of the final
generation is traced back through its parents (the ``parent`` field) to generation 0.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from marlkit.training.records import GENERATIONS_FILE, RunRecord

Generations = Sequence[dict[str, Any]]


def _load(source: RunRecord | Generations | str | Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(generation dicts, run metadata) from any of the accepted sources."""
    if isinstance(source, RunRecord):
        record = source
    elif isinstance(source, (str, Path)):
        path = Path(source)
        record = RunRecord.load(path.parent if path.name == GENERATIONS_FILE else path)
    else:
        return list(source), {}
    return list(record.generations), record.meta


def _check_nonempty(generations: Generations) -> None:
    if not generations:
        raise ValueError("the run record has no generations yet; log at least one before plotting")


def _value(member: dict[str, Any], key: str) -> float:
    value = member.get(key)
    return math.nan if value is None else float(value)


def _ancestries(generations: Generations) -> list[list[dict[str, Any] | None]]:
    """For each member of the last generation, its ancestor in every generation (None before a gap).

    ``result[k][g]`` is the member dict of generation ``g`` that final member ``k`` descends from.
    """
    by_index = [{member["index"]: member for member in gen["members"]} for gen in generations]
    ancestries = []
    for member in generations[-1]["members"]:
        chain: list[dict[str, Any] | None] = [None] * len(generations)
        current: dict[str, Any] | None = member
        for g in range(len(generations) - 1, -1, -1):
            chain[g] = current
            if current is None or g == 0:
                continue
            current = by_index[g - 1].get(current.get("parent"))
        ancestries.append(chain)
    return ancestries


def _finite_stat(fn: Any, values: np.ndarray) -> float:
    """``fn`` over the finite values (unevaluated members are NaN); NaN if there are none."""
    finite = values[np.isfinite(values)]
    return float(fn(finite)) if finite.size else math.nan


def _title(base: str, meta: dict[str, Any]) -> str:
    run = " ".join(str(meta[key]) for key in ("algo", "env_name") if meta.get(key))
    return f"{base} ({run})" if run else base


def _finish(fig: Figure, save_path: str | Path | None) -> Figure:
    if save_path is not None:
        save_path = Path(save_path)
        save_path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(save_path, dpi=120)
    return fig


def plot_fitness(
    source: RunRecord | Generations | str | Path,
    key: str = "fitness",
    save_path: str | Path | None = None,
    levels: Mapping[str, float] | None = None,
) -> Figure:
    """Fitness against environment steps: a dot per member, a thin line per final member's ancestry,
    and the population's best and mean.

    ``key="mean_fitness"`` plots the eval_loop-averaged score that tournament selection ranks instead
    of the latest evaluation. ``levels`` draws reference scores as labelled horizontal lines (e.g. the
    scores of baselines: ``{"centre listener": -29.6}``). Lines: ``len(final population) + 2 + len(levels)``.
    """
    generations, meta = _load(source)
    _check_nonempty(generations)
    steps = np.array([gen["global_steps"] for gen in generations], dtype=float)
    per_generation = [np.array([_value(m, key) for m in gen["members"]]) for gen in generations]

    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    # Every member as a grey dot: ancestries share their early generations, so lines alone hide members.
    dot_x = np.concatenate([np.full(len(values), x) for x, values in zip(steps, per_generation)])
    ax.scatter(dot_x, np.concatenate(per_generation), color="grey", s=10, alpha=0.6, zorder=1, label="members")
    for chain in _ancestries(generations):
        ys = [math.nan if m is None else _value(m, key) for m in chain]
        ax.plot(
            steps, ys, marker="o", markersize=3, linewidth=1, alpha=0.5, label=f"agent {chain[-1]['index']} lineage"
        )

    best = [_finite_stat(np.max, values) for values in per_generation]
    mean = [_finite_stat(np.mean, values) for values in per_generation]
    ax.plot(steps, best, color="black", linewidth=2.5, label="best")
    ax.plot(steps, mean, color="black", linewidth=2, linestyle="--", label="mean")
    for (name, level), color in zip((levels or {}).items(), ("tab:red", "tab:green", "tab:purple", "tab:brown")):
        ax.axhline(level, color=color, linestyle=":", linewidth=1.5, label=f"{name} ({level:.1f})")
    ax.set_xlabel("Environment steps, whole population (steps)")
    ax.set_ylabel(
        "Mean fitness over last eval_loop evaluations" if key == "mean_fitness" else "Fitness (evaluation return)"
    )
    ax.set_title(_title("Population fitness", meta))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="best")
    return _finish(fig, save_path)


def plot_hyperparameters(
    source: RunRecord | Generations | str | Path,
    names: Sequence[str] | None = None,
    save_path: str | Path | None = None,
) -> Figure:
    """One panel per hyperparameter; in each, one step line per final member's ancestry.

    ``names`` defaults to every numeric hyperparameter in the record. A panel switches to a log y-axis when
    its values span more than a factor of 20 (learning rates, batch sizes).
    """
    generations, meta = _load(source)
    _check_nonempty(generations)
    if names is None:
        # numbers only: a per-agent value (e.g. an expl_noise dict) has no single line to draw
        names = list(dict.fromkeys(
            n for gen in generations for m in gen["members"] for n, v in m["hyperparameters"].items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        ))
    if not names:
        raise ValueError("the run record holds no hyperparameters to plot")

    steps = np.array([gen["global_steps"] for gen in generations], dtype=float)
    ancestries = _ancestries(generations)
    fig = Figure(figsize=(7, 2.2 * len(names) + 0.8), layout="constrained")
    axes = fig.subplots(len(names), 1, sharex=True, squeeze=False)[:, 0]
    for ax, name in zip(axes, names):
        all_values = []
        for chain in ancestries:
            ys = [math.nan if m is None else float(m["hyperparameters"].get(name, math.nan)) for m in chain]
            all_values += [y for y in ys if math.isfinite(y)]
            # A member's value is constant while it trains, i.e. over the steps *up to* its evaluation.
            ax.plot(
                steps,
                ys,
                drawstyle="steps-pre",
                marker="o",
                markersize=3,
                alpha=0.7,
                label=f"agent {chain[-1]['index']} lineage",
            )
        positive = [v for v in all_values if v > 0]
        if positive and len(positive) == len(all_values) and max(positive) / min(positive) > 20:
            ax.set_yscale("log")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("Environment steps, whole population (steps)")
    axes[0].legend(fontsize="small", loc="best")
    fig.suptitle(_title("Hyperparameter trajectories", meta))
    return _finish(fig, save_path)


def plot_family_tree(
    source: RunRecord | Generations | str | Path,
    labels: bool = True,
    key: str = "fitness",
    save_path: str | Path | None = None,
) -> Figure:
    """The mutation family tree: a node per (generation, member), an edge from each member's parent.

    Node ``y`` is the member's position in its population (0 is the elite when elitism is on); colour
    is fitness. Thick edges mark the elite surviving unchanged into the next generation (same index).
    With ``labels``, each node reads ``index: mutation``.
    """
    generations, meta = _load(source)
    _check_nonempty(generations)
    positions = [{m["index"]: pos for pos, m in enumerate(gen["members"])} for gen in generations]

    xs, ys, colours, segments, widths = [], [], [], [], []
    for g, gen in enumerate(generations):
        for pos, member in enumerate(gen["members"]):
            xs.append(g)
            ys.append(pos)
            colours.append(_value(member, key))
            parent_pos = positions[g - 1].get(member.get("parent")) if g > 0 else None
            if parent_pos is not None:
                segments.append([(g - 1, parent_pos), (g, pos)])
                widths.append(2.5 if member.get("parent") == member["index"] else 0.8)

    population = max(len(gen["members"]) for gen in generations)
    fig = Figure(figsize=(min(3 + 1.3 * len(generations), 30), 1.5 + 0.7 * population), layout="constrained")
    ax = fig.add_subplot()
    ax.add_collection(LineCollection(segments, linewidths=widths, colors="grey", zorder=1))
    nodes = ax.scatter(
        xs, ys, c=colours, cmap="viridis", s=80, zorder=2, edgecolors="black", linewidths=0.5, plotnonfinite=True
    )
    fig.colorbar(nodes, ax=ax, label="Mean recent fitness" if key == "mean_fitness" else "Fitness (evaluation return)")
    if labels:
        for g, gen in enumerate(generations):
            for pos, member in enumerate(gen["members"]):
                mutation = member.get("mutation")
                text = str(member["index"]) if mutation is None else f"{member['index']}: {str(mutation)[:20]}"
                ax.annotate(text, (g, pos), xytext=(0, 7), textcoords="offset points", ha="center", fontsize=6)
    ax.set_xlim(-0.5, len(generations) - 0.5)
    ax.set_ylim(population - 0.5, -0.7)  # position 0 (the elite) at the top
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("Generation")
    ax.set_ylabel("Position in population")
    ax.set_title(_title("Mutation family tree", meta))
    return _finish(fig, save_path)


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _register_notebook_display() -> None:
    """Render a returned ``Figure`` as an image in Jupyter.

    pyplot figures get this from the inline backend, but our pyplot-free figures would otherwise show
    as ``<Figure size 700x450 with 1 Axes>``.
    """
    try:
        from IPython import get_ipython
    except ImportError:  # plain Python: nothing to register
        return
    shell = get_ipython()
    if shell is not None:
        shell.display_formatter.formatters["image/png"].for_type(Figure, _png)


_register_notebook_display()
