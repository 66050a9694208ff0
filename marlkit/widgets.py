"""Notebook widgets: build a net_config, explore mutation probabilities, watch a population train.

================  ===========================================================================================
NetConfigBuilder  pick the net_config form and each entry's layers; see every agent's resolved network
MutationPanel     the ``Mutations`` probabilities as sliders; preview one mutation on a copy of a network
LiveTrainingView  ``on_generation=view`` in a training function: fitness per member, live
================  ===========================================================================================

Every widget has ``.value`` (plain data to use in code: a net_config, ``Mutations`` keyword arguments,
the run history) and ``.summary()`` (a deterministic text description of its state). The summary is
shown inside the widget, and it is the ``text/plain`` form of the widget's display, so a widget cell
reads sensibly in the static book and nbval can compare it. The text panel is an ``HTML`` widget
rather than an ``Output``: output captured by an ``Output`` widget is routed into the widget by a live
frontend (and by nbclient) but recorded as ordinary cell output by nbval, which would make the stored
and the re-run outputs differ.
"""

from __future__ import annotations

import copy
import html
import io
import pprint
import re
from collections.abc import Iterable, Sequence
from typing import Any

import ipywidgets as widgets
import numpy as np
import torch
import yaml
from gymnasium import spaces
from matplotlib.figure import Figure
from torch import nn

from marlkit.hpo.hyperparameters import HyperparameterConfig, RLParameter
from marlkit.hpo.mutation import Mutations
from marlkit.networks import DeterministicActor, EvolvableNetwork, StochasticActor, group_agents, resolve_net_config
from marlkit.networks.config import MLP_DEFAULTS, NETWORK_DEFAULTS
from marlkit.networks.evolvable import ACTIVATIONS
from marlkit.networks.spaces import encoder_kind
from marlkit.plotting import plot_fitness


class _TextWidget:
    """Plumbing shared by the widgets: a box of controls above a text panel that shows ``summary()``."""

    def _init_box(self, controls: Sequence[widgets.Widget]) -> None:
        self.text = widgets.HTML()
        self.box = widgets.VBox([*controls, self.text])
        self.refresh()

    def summary(self) -> str:
        """Deterministic text of the widget's state (each widget describes itself)."""
        return type(self).__name__

    def refresh(self, *_: Any) -> None:
        """Redraw the text panel (called after every change)."""
        self.text.value = f'<pre style="font-size: 12px; line-height: 1.35">{html.escape(self.summary())}</pre>'

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict:
        bundle = self.box._repr_mimebundle_(include=include, exclude=exclude)
        bundle["text/plain"] = self.summary()  # what the static book and nbval see
        return bundle

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.summary())

    def __repr__(self) -> str:
        return self.summary()


# --------------------------------------------------------------------------------------------------
# describing networks (shared by NetConfigBuilder and MutationPanel)
# --------------------------------------------------------------------------------------------------
def _space_text(space: spaces.Space) -> str:
    return str(tuple(space.shape)) if isinstance(space, spaces.Box) else str(space)


def _encoder_text(config: dict) -> str:
    if "hidden_size" in config:
        return f"MLP {config['hidden_size']} {config['activation']}"
    return (f"CNN channels {config['channel_size']} kernels {config['kernel_size']} "
            f"strides {config['stride_size']} {config['activation']}")


def count_parameters(module: nn.Module) -> int:
    """Number of trainable numbers in ``module``."""
    return sum(p.numel() for p in module.parameters())


def describe_network(module: nn.Module) -> str:
    """One line per architecture: ``obs (16,) -> MLP [32] ReLU -> latent 32 -> head MLP [32] ReLU -> 2 outputs``.

    ``module`` is an ``EvolvableNetwork`` or an actor/critic holding one as ``.net``.
    """
    net = module if isinstance(module, EvolvableNetwork) else module.net
    config = net.net_config
    encoders = config["encoder_config"] if isinstance(config["encoder_config"], list) else [config["encoder_config"]]
    inputs = [f"obs {_space_text(s)} -> {_encoder_text(e)}" for s, e in zip(net.observation_spaces, encoders)]
    text = inputs[0] if len(inputs) == 1 else "[" + " | ".join(inputs) + "]"
    extra = f" (+ {net.extra_inputs} action features)" if net.extra_inputs else ""
    head = config["head_config"]
    return (f"{text} -> latent {config['latent_dim']}{extra} -> head MLP {head['hidden_size']} {head['activation']} "
            f"-> {net.num_outputs} output{'s' if net.num_outputs != 1 else ''}")


def _flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """{"head_config.hidden_size": [32], "encoder_config[1].activation": "ReLU", ...}: one key per leaf."""
    if isinstance(config, dict):
        items = [(f"{prefix}.{key}" if prefix else str(key), value) for key, value in config.items()]
    elif isinstance(config, list) and any(isinstance(item, dict) for item in config):
        items = [(f"{prefix}[{i}]", item) for i, item in enumerate(config)]  # e.g. one encoder per input
    else:
        return {prefix: config}
    flat: dict[str, Any] = {}
    for key, value in items:
        flat.update(_flatten(value, key))
    return flat


def config_diff(before: dict, after: dict) -> list[str]:
    """``["net_config.head_config.hidden_size: [32] -> [48]", ...]`` for every (nested) key that changed."""
    b, a = _flatten(before), _flatten(after)
    return [f"{key}: {b.get(key)} -> {a.get(key)}" for key in dict.fromkeys([*b, *a]) if b.get(key) != a.get(key)]


# --------------------------------------------------------------------------------------------------
# NetConfigBuilder
# --------------------------------------------------------------------------------------------------
FORMS = ("single", "per agent", "per group")
ALL_AGENTS = "all agents"  # the entry name of the single-level form
HIDDEN_ACTIVATIONS = [name for name in ACTIVATIONS if name != "Softmax"]


def parse_sizes(text: str, what: str) -> list[int]:
    """ "64, 64" (or "[64, 64]" or "64 64") -> [64, 64]; anything else raises ValueError naming ``what``."""
    parts = [p for p in re.split(r"[,\s]+", text.strip().strip("[]")) if p]
    if not parts or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"{what}: expected layer sizes such as '64, 64', got {text!r}")
    return [int(p) for p in parts]


class EntryControls:
    """The controls of one net_config entry: encoder sizes and activation, latent_dim, head sizes."""

    def __init__(self, name: str, agents: list[str], images: bool) -> None:
        self.name, self.agents, self.images = name, agents, images
        sizes = ", ".join(map(str, MLP_DEFAULTS["hidden_size"]))
        # Image observations get a CNN encoder whose layers the defaults choose from the image size.
        self.encoder_hidden = widgets.Text(value="CNN preset" if images else sizes, description="encoder",
                                           disabled=images, layout=widgets.Layout(width="190px"))
        self.activation = widgets.Dropdown(options=HIDDEN_ACTIVATIONS, value=MLP_DEFAULTS["activation"],
                                           description="activation", layout=widgets.Layout(width="190px"))
        self.latent_dim = widgets.BoundedIntText(value=NETWORK_DEFAULTS["latent_dim"],
                                                 min=NETWORK_DEFAULTS["min_latent_dim"],
                                                 max=NETWORK_DEFAULTS["max_latent_dim"], description="latent_dim",
                                                 layout=widgets.Layout(width="160px"))
        self.head_hidden = widgets.Text(value=sizes, description="head", layout=widgets.Layout(width="190px"))
        title = name if agents == [name] else f"{name} ({', '.join(agents)})"
        self.box = widgets.VBox([widgets.HTML(f"<b>{html.escape(title)}</b>"),
                                 widgets.HBox([self.encoder_hidden, self.activation, self.latent_dim,
                                               self.head_hidden])])

    @property
    def controls(self) -> list[widgets.Widget]:
        return [self.encoder_hidden, self.activation, self.latent_dim, self.head_hidden]

    def entry(self) -> tuple[dict, list[str]]:
        """(the net_config entry, problems with what was typed)."""
        problems = []
        encoder: dict[str, Any] = {}
        if not self.images:
            try:
                encoder["hidden_size"] = parse_sizes(self.encoder_hidden.value, f"encoder sizes of {self.name!r}")
            except ValueError as err:
                problems.append(str(err))
        encoder["activation"] = self.activation.value
        entry: dict[str, Any] = {"latent_dim": int(self.latent_dim.value), "encoder_config": encoder}
        try:
            entry["head_config"] = {"hidden_size": parse_sizes(self.head_hidden.value, f"head sizes of {self.name!r}")}
        except ValueError as err:
            problems.append(str(err))
        return entry, problems


class NetConfigBuilder(_TextWidget):
    """Build a multi-agent ``net_config`` and see the network each agent gets.

    Args:
        agent_ids, observation_spaces: as passed to the algorithm.
        action_spaces: if given, each agent's actor is built (``DeterministicActor`` as MADDPG/MATD3 build
            it, ``StochasticActor`` with ``share_parameters`` as IPPO does); otherwise an
            ``EvolvableNetwork`` with one output.
        share_parameters: one network per group (IPPO); per-agent keys that disagree within a group are then
            an error, shown in the widget.
        form: the initial form, "single", "per agent" or "per group".

    ``.value`` is the net_config dict, ``.error`` the problem with it (or None), ``.resolved`` the
    complete config per agent (or group) from ``resolve_net_config``. Controls: ``.form`` and
    ``.entries[name]`` (an :class:`EntryControls`) for the current form.
    """

    def __init__(
        self,
        agent_ids: Sequence[str],
        observation_spaces: Sequence[spaces.Space],
        action_spaces: Sequence[spaces.Space] | None = None,
        share_parameters: bool = False,
        form: str = "single",
    ) -> None:
        self.agent_ids = list(agent_ids)
        if len(observation_spaces) != len(self.agent_ids) or (
                action_spaces is not None and len(action_spaces) != len(self.agent_ids)):
            raise ValueError(f"NetConfigBuilder needs one space per agent: got {len(self.agent_ids)} agent_ids, "
                             f"{len(observation_spaces)} observation_spaces and "
                             f"{None if action_spaces is None else len(action_spaces)} action_spaces")
        if form not in FORMS:
            raise ValueError(f"form must be one of {FORMS}, got {form!r}")
        self.observation_spaces = dict(zip(self.agent_ids, observation_spaces))
        self.action_spaces = None if action_spaces is None else dict(zip(self.agent_ids, action_spaces))
        self.share_parameters = bool(share_parameters)
        self.groups = group_agents(self.agent_ids)
        entry_agents = {"single": {ALL_AGENTS: self.agent_ids},
                        "per agent": {a: [a] for a in self.agent_ids},
                        "per group": self.groups}
        # controls for every form, so switching back and forth keeps what was typed
        self._entries = {
            f: {name: EntryControls(name, agents, any(encoder_kind(self.observation_spaces[a]) == "cnn"
                                                      for a in agents))
                for name, agents in entry_agents[f].items()}
            for f in FORMS
        }
        for entries in self._entries.values():
            for controls in entries.values():
                for control in controls.controls:
                    control.observe(self.refresh, names="value")
        self.form = widgets.ToggleButtons(options=FORMS, value=form, description="form")
        self.entry_box = widgets.VBox()
        self.form.observe(self._show_entries, names="value")
        self._show_entries()
        self._init_box([self.form, self.entry_box])

    def _show_entries(self, *_: Any) -> None:
        self.entry_box.children = [controls.box for controls in self.entries.values()]
        if hasattr(self, "text"):
            self.refresh()

    @property
    def entries(self) -> dict[str, EntryControls]:
        """The entry controls of the current form, by entry name (agent id, group id or "all agents")."""
        return self._entries[self.form.value]

    # ------------------------------------------------------------------ state
    def refresh(self, *_: Any) -> None:
        self._state = self._compute()
        super().refresh()

    def _compute(self) -> dict[str, Any]:
        value: dict[str, Any] = {}
        problems: list[str] = []
        for name, controls in self.entries.items():
            entry, entry_problems = controls.entry()
            problems += entry_problems
            if self.form.value == "single":
                value = entry
            else:
                value[name] = entry
        state: dict[str, Any] = {"value": value, "error": "; ".join(problems) or None, "resolved": {}, "rows": []}
        if problems:
            return state
        try:
            state["resolved"] = resolve_net_config(value, self.agent_ids, list(self.observation_spaces.values()),
                                                   share_parameters=self.share_parameters)
            state["rows"] = [self._describe(key, config) for key, config in state["resolved"].items()]
        except (ValueError, RuntimeError) as err:  # shown in the widget: the point is to learn what is allowed
            state.update(error=str(err), resolved={}, rows=[])
        return state

    @property
    def value(self) -> dict:
        """The net_config to pass as ``net_config=`` (a deep copy)."""
        return copy.deepcopy(self._state["value"])

    @property
    def error(self) -> str | None:
        """Why the current net_config is not accepted, or None."""
        return self._state["error"]

    @property
    def resolved(self) -> dict[str, dict]:
        """``resolve_net_config`` of the current value: one complete config per agent (or group)."""
        return copy.deepcopy(self._state["resolved"])

    def yaml(self) -> str:
        """The net_config as YAML (the guide's config-file format)."""
        return yaml.safe_dump(self.value, sort_keys=False, default_flow_style=None)

    def network_kind(self) -> str:
        """What the summary builds per agent (or group)."""
        if self.action_spaces is None:
            return "EvolvableNetwork (1 output)"
        return "StochasticActor, as IPPO builds it," if self.share_parameters else \
            "DeterministicActor, as MADDPG/MATD3 build it,"

    def build(self, key: str, config: dict) -> nn.Module:
        """The network ``key`` (an agent, or a group with ``share_parameters``) gets from its resolved config."""
        agent = key if key in self.observation_spaces else self.groups[key][0]
        obs_space = self.observation_spaces[agent]
        # fork_rng: building for display must not shift the notebook's random stream
        with torch.random.fork_rng(devices=[]):
            if self.action_spaces is None:
                return EvolvableNetwork(obs_space, 1, **config)
            action_space = self.action_spaces[agent]
            if self.share_parameters or not isinstance(action_space, (spaces.Box, spaces.Discrete)):
                return StochasticActor(obs_space, action_space, config)
            return DeterministicActor(obs_space, action_space, config)

    def _describe(self, key: str, config: dict) -> tuple[str, str]:
        net = self.build(key, config)
        name = key if key in self.observation_spaces else f"{key} ({', '.join(self.groups[key])})"
        return name, f"{describe_network(net)}  [{count_parameters(net):,} parameters]"

    def summary(self) -> str:
        per = "group" if self.share_parameters else "agent"
        lines = [f"NetConfigBuilder: '{self.form.value}' form, share_parameters={self.share_parameters}, "
                 f"{len(self.agent_ids)} agents",
                 "net_config = " + pprint.pformat(self._state["value"], sort_dicts=False, width=100)]
        if self.error:
            lines.append(f"error: {self.error}")
            return "\n".join(lines)
        lines += ["as YAML:", *("  " + line for line in self.yaml().splitlines()),
                  f"resolved networks: one {self.network_kind()} per {per}"]
        width = max(len(name) for name, _ in self._state["rows"])
        lines += [f"  {name + ':':<{width + 1}} {text}" for name, text in self._state["rows"]]
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# MutationPanel
# --------------------------------------------------------------------------------------------------
# Mutations keyword -> the guide's MUT_P key; defaults are the guide's values.
MUT_P_KEYS = {"no_mutation": "NO_MUT", "architecture": "ARCH_MUT", "new_layer_prob": "NEW_LAYER",
              "parameters": "PARAMS_MUT", "activation": "ACT_MUT", "rl_hp": "RL_HP_MUT", "mutation_sd": "MUT_SD"}
DEFAULT_MUTATIONS = {"no_mutation": 0.2, "architecture": 0.2, "new_layer_prob": 0.2, "parameters": 0.2,
                     "activation": 0.0, "rl_hp": 0.2, "mutation_sd": 0.1}
OPTION_LABELS = {"None": "no mutation", "architecture": "architecture", "parameters": "parameters",
                 "activation": "activation", "rl_hp": "rl_hp"}
# RL hyperparameters the preview mutates when it is given a bare network rather than an agent
PREVIEW_HYPERPARAMETERS = {"lr_actor": 1e-3, "batch_size": 64, "learn_step": 16}
PREVIEW_HP_CONFIG = HyperparameterConfig(
    lr_actor=RLParameter(min=1e-4, max=1e-2),
    batch_size=RLParameter(min=8, max=512, dtype=int),
    learn_step=RLParameter(min=1, max=128, dtype=int, grow_factor=1.5, shrink_factor=0.75),
)


def default_preview_network(seed: int = 0) -> DeterministicActor:
    """A small actor (8 observations, 4 discrete actions) to preview mutations on."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DeterministicActor(spaces.Box(-1.0, 1.0, (8,)), spaces.Discrete(4),
                                  {"latent_dim": 16, "encoder_config": {"hidden_size": [32]},
                                   "head_config": {"hidden_size": [32]}})


class _RecordingTwin:
    """Stands in for a target network: ``Mutations`` replays each architecture record on the twins of a
    network, so the record of the preview's mutation arrives here."""

    def __init__(self) -> None:
        self.records: list[dict] = []

    def apply_mutation(self, record: dict) -> None:
        self.records.append(record)


class _PreviewAgent:
    """The part of the algorithm contract that ``Mutations.apply`` uses, around one network."""

    def __init__(self, network: nn.Module) -> None:
        self.twin = _RecordingTwin()
        self._networks = {"actors/network": network, "actor_targets/network": self.twin}
        self.hp_config = PREVIEW_HP_CONFIG
        self.hp_names = tuple(PREVIEW_HYPERPARAMETERS)
        for name, value in PREVIEW_HYPERPARAMETERS.items():
            setattr(self, name, value)

    def networks(self) -> dict[str, Any]:
        return self._networks

    def mutation_groups(self) -> list[list[str]]:
        return [["actors/network", "actor_targets/network"]]

    def build_optimizers(self, keep_state: bool = True) -> None:
        """A preview trains nothing, so there is no optimizer to rebuild."""

    def set_hyperparameter(self, name: str, value: Any) -> None:
        setattr(self, name, value)

    def hyperparameters(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.hp_names}


def _fmt_value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else repr(value)


def _weight_change(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> str | None:
    """ "147 of 1,492 numbers perturbed (mean |change| 0.0106)", or None if no weight changed."""
    changed, total, size = 0, 0, 0.0
    for key, old in before.items():
        new = after.get(key)
        if new is None or new.shape != old.shape:
            continue
        delta = (new - old).abs()
        changed += int((delta > 0).sum())
        total += old.numel()
        size += float(delta.sum())
    return f"{changed:,} of {total:,} numbers perturbed (mean |change| {size / changed:.3g})" if changed else None


class MutationPanel(_TextWidget):
    """Sliders for the ``Mutations`` options, their normalised distribution, and a mutation preview.

    Args:
        network: what the preview mutates (a copy of it): an evolvable network or actor, or an
            algorithm agent (e.g. ``pop[0]``); default: a small ``DeterministicActor``.
        seed: preview k uses ``rand_seed=[seed, k]``, so a sequence of previews is repeatable.
        **options: initial values of the sliders (``Mutations`` keyword arguments).

    ``.value`` is the keyword arguments for ``Mutations(**panel.value, rand_seed=...)``; ``.mut_p`` the
    same as the guide's ``MUT_P`` dict. Controls: ``.sliders[name]`` and ``.preview_button``.
    """

    def __init__(self, network: Any = None, seed: int = 0, **options: float) -> None:
        unknown = set(options) - set(DEFAULT_MUTATIONS)
        if unknown:
            raise ValueError(f"unknown Mutations option(s) {sorted(unknown)}; expected {list(DEFAULT_MUTATIONS)}")
        self.network = default_preview_network(seed) if network is None else network
        self.seed = int(seed)
        self.previews = 0  # number of previews drawn so far
        self.last_preview: dict[str, Any] | None = None
        self.sliders = {
            name: widgets.FloatSlider(value=options.get(name, default), min=0.0, max=1.0,
                                      step=0.01 if name == "mutation_sd" else 0.05, description=name,
                                      readout_format=".2f", continuous_update=False,
                                      style={"description_width": "110px"})
            for name, default in DEFAULT_MUTATIONS.items()
        }
        for slider in self.sliders.values():
            slider.observe(self._options_changed, names="value")
        self.preview_button = widgets.Button(description="preview a mutation", icon="random")
        self.preview_button.on_click(lambda _: self.preview())
        self._init_box([*self.sliders.values(), self.preview_button])

    def _options_changed(self, *_: Any) -> None:
        self.last_preview = None  # it was drawn with the old probabilities
        self.refresh()

    # ------------------------------------------------------------------ values
    @property
    def value(self) -> dict[str, float]:
        """Keyword arguments for ``Mutations(**value)``."""
        return {name: float(slider.value) for name, slider in self.sliders.items()}

    @value.setter
    def value(self, options: dict[str, float]) -> None:
        unknown = set(options) - set(self.sliders)
        if unknown:
            raise ValueError(f"unknown Mutations option(s) {sorted(unknown)}; expected {list(self.sliders)}")
        for name, v in options.items():
            self.sliders[name].value = v

    @property
    def mut_p(self) -> dict[str, float]:
        """The same options in the guide's ``MUT_P`` form (``NO_MUT``, ``ARCH_MUT``, ...)."""
        return {MUT_P_KEYS[name]: v for name, v in self.value.items()}

    def mutations(self, rand_seed: Any = None) -> Mutations:
        """``Mutations(**self.value, rand_seed=rand_seed)``; raises ValueError if every probability is 0."""
        return Mutations(**self.value, rand_seed=rand_seed)

    def probabilities(self) -> dict[str, float] | str:
        """What ``Mutations`` makes of the sliders (its own normalisation), or its error message."""
        try:
            return self.mutations().probabilities
        except ValueError as err:
            return str(err)

    # ------------------------------------------------------------------ preview
    def preview(self) -> dict[str, Any]:
        """Draw one mutation as ``Mutations.mutation`` does for a member; apply it to a copy of the network.

        Returns (and shows) ``{"k", "option", "label", "record", "changes", "before", "after"}``: the
        option drawn, ``agent.mut``, the architecture record (bare networks only), what changed, and the
        architectures of the networks that changed.
        """
        k, self.previews = self.previews, self.previews + 1
        try:
            mutations = self.mutations(rand_seed=np.random.default_rng([self.seed, k]))
        except ValueError as err:
            self.last_preview = {"k": k, "error": str(err)}
            self.refresh()
            return dict(self.last_preview)
        # the option draw of Mutations.mutation, with Mutations' own normalised probabilities
        options, p = list(mutations.probabilities), list(mutations.probabilities.values())
        option = options[int(mutations.rng.choice(len(options), p=p))]

        # fork_rng: cloning initialises (then overwrites) weights; the notebook's random stream must not move
        with torch.random.fork_rng(devices=[]):
            if hasattr(self.network, "mutation_groups"):  # an algorithm agent: mutate a clone of it
                agent = self.network.clone()
                nets = {n: m for n, m in agent.networks().items() if n.startswith(("actors/", "critics"))}
            else:
                agent = _PreviewAgent(self.network.clone())
                nets = {"network": agent.networks()["actors/network"]}
        configs = {name: copy.deepcopy(net.config) for name, net in nets.items()}
        weights = {name: {key: t.clone() for key, t in net.state_dict().items()} for name, net in nets.items()}
        hyperparameters = agent.hyperparameters()
        before = {name: self._architecture(net) for name, net in nets.items()}

        with torch.random.fork_rng(devices=[]):
            label = mutations.apply(agent, option)  # mutates `nets` in place

        changes = []
        for name, net in nets.items():
            prefix = "" if name == "network" else f"{name}: "
            diff = config_diff(configs[name], net.config)
            perturbed = None if diff else _weight_change(weights[name], net.state_dict())
            changes += [prefix + line for line in diff] + ([prefix + perturbed] if perturbed else [])
        now = agent.hyperparameters()
        changes += [f"{n}: {_fmt_value(v)} -> {_fmt_value(now[n])}" for n, v in hyperparameters.items() if now[n] != v]
        records = agent.twin.records if isinstance(agent, _PreviewAgent) else []
        after = {name: self._architecture(net) for name, net in nets.items()}
        changed = [name for name in nets if before[name] != after[name]]
        self.last_preview = {
            "k": k,
            "option": option,
            "label": label,
            "record": records[0] if records else None,
            "changes": changes,
            "before": {name: before[name] for name in changed},
            "after": {name: after[name] for name in changed},
        }
        self.refresh()
        return copy.deepcopy(self.last_preview)

    @staticmethod
    def _architecture(net: nn.Module) -> str:
        return f"{describe_network(net)}  [{count_parameters(net):,} parameters]"

    # ------------------------------------------------------------------ text
    def summary(self) -> str:
        value = self.value
        lines = ["Mutations(" + ", ".join(f"{k}={v:g}" for k, v in value.items()) + ")",
                 "MUT_P = " + str({k: round(v, 4) for k, v in self.mut_p.items()})]
        probabilities = self.probabilities()
        if isinstance(probabilities, str):
            lines.append(f"error: {probabilities}")
        else:
            lines.append("each member of the new population undergoes (normalised by Mutations):")
            for option, p in probabilities.items():
                note = "  (disabled)" if p == 0 else ""
                if option == "architecture" and p > 0:
                    layer = value["new_layer_prob"]
                    note = f"  = {p * layer:.3f} add/remove a layer + {p * (1 - layer):.3f} add/remove nodes"
                lines.append(f"  {OPTION_LABELS[option]:<13} {p:6.3f}  {'#' * round(40 * p)}{note}")
        lines += self._preview_lines()
        return "\n".join(lines)

    def _preview_lines(self) -> list[str]:
        preview = self.last_preview
        if preview is None:
            return ["(press 'preview a mutation' to draw one and apply it to a copy of the network)"]
        head = f"preview {preview['k'] + 1} (rand_seed=[{self.seed}, {preview['k']}]): "
        if "error" in preview:
            return [head + f"error: {preview['error']}"]
        lines = [head + f"drew {OPTION_LABELS[preview['option']]!r} -> agent.mut = {preview['label']!r}"]
        if preview["record"] is not None:
            lines.append(f"  record: {preview['record']}")
        if not preview["changes"]:
            why = "" if preview["option"] == "None" else (
                " (the drawn mutation could not apply: a size bound, no hp_config, or no MLP activation to change)")
            lines.append("  nothing changed" + why)
        lines += [f"  changed: {line}" for line in preview["changes"]]
        for name in preview["before"]:
            prefix = "" if name == "network" else f"{name} "
            lines += [f"  {prefix}before: {preview['before'][name]}", f"  {prefix}after:  {preview['after'][name]}"]
        return lines


# --------------------------------------------------------------------------------------------------
# LiveTrainingView
# --------------------------------------------------------------------------------------------------
class LiveTrainingView(_TextWidget):
    """Fitness of every member, updated each generation: pass ``on_generation=view`` to a training function.

    Args:
        key: the member field to show, "fitness" (latest evaluation) or "mean_fitness" (what selection ranks).
        plot: redraw ``marlkit.plotting.plot_fitness`` after every generation.
        max_rows: the text table shows the last ``max_rows`` generations.

    Calling ``view(entry)`` with a generation's record line (``marlkit.training.records``) adds it.
    ``.value`` is ``{"generations": [...record lines...], "global_steps": [...], "best": [...], "mean": [...]}``.
    """

    def __init__(self, key: str = "fitness", plot: bool = True, max_rows: int = 15) -> None:
        if key not in ("fitness", "mean_fitness"):
            raise ValueError(f"key must be 'fitness' or 'mean_fitness', got {key!r}")
        self.key, self.plot, self.max_rows = key, bool(plot), int(max_rows)
        self.generations: list[dict[str, Any]] = []
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="720px", display="none"))
        self._init_box([self.image])

    def __call__(self, entry: dict[str, Any]) -> None:
        """Add one generation's record line (the ``on_generation`` callback)."""
        self.generations.append(copy.deepcopy(dict(entry)))
        if self.plot:
            buffer = io.BytesIO()
            self.figure().savefig(buffer, format="png", dpi=80)
            self.image.value = buffer.getvalue()
            self.image.layout.display = None
        self.refresh()

    def extend(self, generations: Iterable[dict[str, Any]]) -> LiveTrainingView:
        """Add several generations, e.g. ``RunRecord.load(run_dir).generations`` of a finished run."""
        for entry in generations:
            self(entry)
        return self

    def reset(self) -> None:
        """Forget every generation (before reusing the view for another run)."""
        self.generations = []
        self.image.value, self.image.layout.display = b"", "none"
        self.refresh()

    def figure(self) -> Figure:
        """``plot_fitness`` of the generations so far."""
        return plot_fitness(self.generations, key=self.key)

    def _fitnesses(self, entry: dict[str, Any]) -> np.ndarray:
        return np.array([np.nan if m.get(self.key) is None else float(m[self.key]) for m in entry["members"]])

    def _stats(self, entry: dict[str, Any]) -> tuple[float | None, float | None]:
        values = self._fitnesses(entry)
        finite = values[np.isfinite(values)]
        return (float(finite.max()), float(finite.mean())) if finite.size else (None, None)

    @property
    def value(self) -> dict[str, list]:
        """The history: the record lines, and the population's best and mean per generation."""
        stats = [self._stats(entry) for entry in self.generations]
        return {
            "generations": copy.deepcopy(self.generations),
            "global_steps": [entry["global_steps"] for entry in self.generations],
            "best": [best for best, _ in stats],
            "mean": [mean for _, mean in stats],
        }

    def summary(self) -> str:
        if not self.generations:
            return f"LiveTrainingView ({self.key}): waiting for the first generation"
        best_value, where = None, ""
        for entry in self.generations:
            for member in entry["members"]:
                v = member.get(self.key)
                if v is not None and (best_value is None or v > best_value):
                    best_value, where = v, f" (agent {member['index']}, generation {entry['generation']})"
        last = self.generations[-1]
        best_text = "n/a" if best_value is None else f"{best_value:.2f}"
        n = len(self.generations)
        lines = [f"LiveTrainingView ({self.key}): {n} generation{'s' if n != 1 else ''}, "
                 f"{last['global_steps']:,} env steps; best {best_text}{where}",
                 f"{'gen':>4} {'env steps':>10} {'best':>9} {'mean':>9}   members (agent: {self.key})"]
        shown = self.generations[-self.max_rows:]
        if len(shown) < len(self.generations):
            lines.append(f"  ... {len(self.generations) - len(shown)} earlier generations")
        for entry in shown:
            best, mean = self._stats(entry)
            members = "  ".join(f"{m['index']}: {self._cell(m.get(self.key))}" for m in entry["members"])
            lines.append(f"{entry['generation']:>4} {entry['global_steps']:>10,} {self._cell(best):>9} "
                         f"{self._cell(mean):>9}   {members}")
        return "\n".join(lines)

    @staticmethod
    def _cell(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}"


__all__ = [
    "EntryControls",
    "LiveTrainingView",
    "MutationPanel",
    "NetConfigBuilder",
    "config_diff",
    "count_parameters",
    "describe_network",
]
