"""Plots of a run record: right number of lines/nodes/edges, labelled axes, PNGs written."""

from __future__ import annotations

import math

import numpy as np
import pytest
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.figure import Figure

from marlkit.plotting import plot_family_tree, plot_fitness, plot_hyperparameters
from marlkit.training.records import GENERATIONS_FILE, RunRecord


def member(index, fitness, lr, batch, mutation=None, parent=None):
    return {
        "index": index,
        "steps": 0,
        "fitness": fitness,
        "mean_fitness": fitness,
        "hyperparameters": {"lr_actor": lr, "batch_size": batch},
        "mutation": mutation,
        "parent": parent,
    }


# Family tree of three generations (elite first in each):
#   gen 0: 0  1  2
#   gen 1: 1 (elite, from 1)   3 (from 1, lr_actor)   4 (from 2, batch_size)
#   gen 2: 3 (elite, from 3)   5 (from 1, lr_actor)   6 (from 4, None)
# Ancestries of the final members: 3 <- 3 <- 1,  5 <- 1 <- 1,  6 <- 4 <- 2.
GENERATIONS = [
    {"generation": 0, "global_steps": 300, "wall_time": 1.0, "eval_loop": 1, "members": [
        member(0, -50.0, 1e-3, 32), member(1, -20.0, 1e-3, 32), member(2, -40.0, 1e-3, 32)]},
    {"generation": 1, "global_steps": 600, "wall_time": 2.0, "eval_loop": 1, "members": [
        member(1, -18.0, 1e-3, 32, "None", 1), member(3, -10.0, 1e-4, 32, "lr_actor", 1),
        member(4, None, 1e-3, 8, "batch_size", 2)]},
    {"generation": 2, "global_steps": 900, "wall_time": 3.0, "eval_loop": 1, "members": [
        member(3, -5.0, 1e-4, 32, "None", 3), member(5, -15.0, 1e-2, 32, "lr_actor", 1),
        member(6, -30.0, 1e-3, 8, "None", 4)]},
]  # fmt: skip


def assert_png(path):
    assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_fitness_lines_follow_ancestry(tmp_path):
    fig = plot_fitness(GENERATIONS, save_path=tmp_path / "fitness.png")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert len(ax.get_lines()) == 3 + 2  # one per final member, plus best and mean
    assert sum(len(dots.get_offsets()) for dots in ax.collections) == 9  # a dot per member
    assert list(lines["best"].get_ydata()) == [-20.0, -10.0, -5.0]
    np.testing.assert_allclose(lines["mean"].get_ydata(), [-110 / 3, -14.0, -50 / 3])
    assert list(lines["agent 5 lineage"].get_ydata()) == [-20.0, -18.0, -15.0]
    assert list(lines["agent 3 lineage"].get_ydata()) == [-20.0, -10.0, -5.0]
    six = lines["agent 6 lineage"].get_ydata()
    assert six[0] == -40.0 and math.isnan(six[1]) and six[2] == -30.0  # null fitness -> gap
    assert list(lines["best"].get_xdata()) == [300, 600, 900]
    assert "steps" in ax.get_xlabel().lower() and ax.get_ylabel() and ax.get_title()
    assert_png(tmp_path / "fitness.png")


def test_plot_fitness_draws_reference_levels():
    fig = plot_fitness(GENERATIONS, levels={"centre listener": -29.6, "told the goal": -11.8})
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert len(lines) == 3 + 2 + 2
    assert list(lines["centre listener (-29.6)"].get_ydata()) == [-29.6, -29.6]
    assert list(lines["told the goal (-11.8)"].get_ydata()) == [-11.8, -11.8]


def test_plot_hyperparameters_one_panel_per_name(tmp_path):
    fig = plot_hyperparameters(GENERATIONS, save_path=tmp_path / "hp.png")
    assert [ax.get_ylabel() for ax in fig.axes] == ["lr_actor", "batch_size"]
    assert all(len(ax.get_lines()) == 3 for ax in fig.axes)
    lr_lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert list(lr_lines["agent 5 lineage"].get_ydata()) == [1e-3, 1e-3, 1e-2]
    assert fig.axes[0].get_yscale() == "log"  # lr spans 100x
    assert fig.axes[1].get_yscale() == "linear"  # batch size spans 4x
    assert "steps" in fig.axes[-1].get_xlabel().lower()
    assert_png(tmp_path / "hp.png")

    only_batch = plot_hyperparameters(GENERATIONS, names=["batch_size"])
    assert [ax.get_ylabel() for ax in only_batch.axes] == ["batch_size"]


def test_plot_family_tree_nodes_edges_labels(tmp_path):
    fig = plot_family_tree(GENERATIONS, save_path=tmp_path / "tree.png")
    ax = fig.axes[0]  # fig.axes[1] is the colour bar
    (nodes,) = [c for c in ax.collections if isinstance(c, PathCollection)]
    (edges,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(nodes.get_offsets()) == 9
    # Edges join (generation, position) of the parent to (generation, position) of the child.
    segments = {tuple((float(x), float(y)) for x, y in s) for s in edges.get_segments()}
    assert segments == {
        ((0, 1), (1, 0)), ((0, 1), (1, 1)), ((0, 2), (1, 2)),  # gen 1: 1 <- 1, 3 <- 1, 4 <- 2
        ((1, 1), (2, 0)), ((1, 0), (2, 1)), ((1, 2), (2, 2)),  # gen 2: 3 <- 3, 5 <- 1, 6 <- 4
    }  # fmt: skip
    assert sorted(edges.get_linewidths()).count(2.5) == 2  # the two elite survivals
    texts = sorted(t.get_text() for t in ax.texts)
    assert len(texts) == 9 and "4: batch_size" in texts and "0" in texts
    assert ax.get_xlabel() == "Generation" and ax.get_title()
    assert_png(tmp_path / "tree.png")

    assert len(plot_family_tree(GENERATIONS, labels=False).axes[0].texts) == 0


def test_plots_read_a_run_directory(tmp_path):
    record = RunRecord(tmp_path / "run")
    record.write_meta(env_name="simple_speaker_listener_v4", algo="MATD3")
    for generation in GENERATIONS:
        record.log(generation)
    for source in (record, tmp_path / "run", str(tmp_path / "run" / GENERATIONS_FILE)):
        fig = plot_fitness(source)
        assert len(fig.axes[0].get_lines()) == 5
        assert "MATD3" in fig.axes[0].get_title()
    assert len(plot_family_tree(tmp_path / "run").axes[0].texts) == 9


def test_single_generation_and_empty_record():
    fig = plot_family_tree(GENERATIONS[:1])
    assert len(fig.axes[0].collections[1].get_offsets()) == 3
    assert len(plot_fitness(GENERATIONS[:1]).axes[0].get_lines()) == 5
    with pytest.raises(ValueError, match="no generations"):
        plot_fitness([])
