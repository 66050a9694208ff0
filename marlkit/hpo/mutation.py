"""``Mutations``: the variation step of evolutionary HPO.

After tournament selection, each member of the new population undergoes at most one of:

=============  =========================================================================================
no mutation    keeps what it inherited
architecture   one network grows or shrinks (a layer with probability ``new_layer_prob``, otherwise
               nodes/channels); the same record is replayed on every network that must stay its twin
               (its target network), so actor, target and optimizer stay consistent
parameters     Gaussian noise on a random 10% of each actor weight matrix (std ``mutation_sd`` times
               that matrix's std, so the noise is relative to the scale of the weights)
activation     the hidden activation of one MLP changes (output activations never do, so bounded
               actions stay bounded); applies to every algorithm, CNNs have no activation mutation
rl_hp          one hyperparameter of ``agent.hp_config`` moves by its grow/shrink factor
=============  =========================================================================================

Options with probability 0 are disabled; the others are normalised to sum to 1.

Optimizers after an architecture mutation: rebuilt with ``agent.build_optimizers(keep_state=True)``,
which keeps Adam's moment estimates for every parameter tensor whose shape did not change, so a mutation
in one layer does not reset what the optimizer knows about the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

OPTIONS = ("None", "architecture", "parameters", "activation", "rl_hp")
LAYER_METHODS = ("add_layer", "remove_layer")


class Mutations:
    """Mutate a population (the guide's ``Mutations``).

    Args:
        no_mutation, architecture, parameters, activation, rl_hp: relative probabilities of each option.
        new_layer_prob: within an architecture mutation, probability of a layer-level change
            (add/remove a layer) rather than a node/channel-level one.
        mutation_sd: relative std of the parameter mutation.
        activation_selection: activations ``change_activation`` may choose (default: the networks' own list).
        mutate_elite: also mutate member 0 when it is the elite kept by tournament selection.
        rand_seed: seed (or generator) for every random choice here.
        device: kept for the guide's signature; networks stay on their own device.
    """

    def __init__(
        self,
        no_mutation: float,
        architecture: float,
        new_layer_prob: float,
        parameters: float,
        activation: float,
        rl_hp: float,
        mutation_sd: float = 0.1,
        activation_selection: Sequence[str] | None = None,
        mutate_elite: bool = True,
        rand_seed: int | np.random.Generator | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        probs = {
            "None": no_mutation,
            "architecture": architecture,
            "parameters": parameters,
            "activation": activation,
            "rl_hp": rl_hp,
        }
        for name, p in {**probs, "new_layer_prob": new_layer_prob, "mutation_sd": mutation_sd}.items():
            if not np.isfinite(p) or p < 0:
                raise ValueError(f"Mutations {name} must be a non-negative number, got {p!r}")
        if new_layer_prob > 1:
            raise ValueError(f"Mutations new_layer_prob is a probability in [0, 1], got {new_layer_prob}")
        total = float(sum(probs.values()))
        if total <= 0:
            raise ValueError("Mutations needs at least one option with a positive probability")
        self.probabilities = {name: p / total for name, p in probs.items()}  # normalised over enabled options
        self.new_layer_prob = float(new_layer_prob)
        self.mutation_sd = float(mutation_sd)
        self.activation_selection = list(activation_selection) if activation_selection else None
        self.mutate_elite = bool(mutate_elite)
        self.rng = np.random.default_rng(rand_seed)
        self.device = device

    # ------------------------------------------------------------------ the population step
    def mutation(self, population: list, pre_training_mut: bool = False) -> list:
        """Mutate every member in place (member 0 is skipped when ``mutate_elite`` is False, unless
        ``pre_training_mut``) and return the population. Each member's ``mut`` says what happened."""
        options = list(self.probabilities)
        p = np.array([self.probabilities[o] for o in options])
        for position, agent in enumerate(population):
            if position == 0 and not self.mutate_elite and not pre_training_mut:
                agent.mut = "None"
                continue
            choice = options[int(self.rng.choice(len(options), p=p))]
            agent.mut = self.apply(agent, choice)
        return population

    def apply(self, agent: Any, option: str) -> str:
        """Apply one option to ``agent``; returns the label stored in ``agent.mut``."""
        if option == "None":
            return "None"
        if option == "architecture":
            return self.architecture_mutation(agent)
        if option == "parameters":
            return self.parameter_mutation(agent)
        if option == "activation":
            return self.activation_mutation(agent)
        if option == "rl_hp":
            return self.rl_hyperparameter_mutation(agent)
        raise ValueError(f"unknown mutation option {option!r}; expected one of {OPTIONS}")

    # ------------------------------------------------------------------ the options
    def architecture_mutation(self, agent: Any) -> str:
        """Grow or shrink one network; replay the record on its twins; rebuild optimizers."""
        groups = agent.mutation_groups()
        names = groups[int(self.rng.integers(len(groups)))]
        nets = agent.networks()
        lead = nets[names[0]]
        layer_level = self.rng.random() < self.new_layer_prob
        methods = [m for m in lead.mutation_methods if (m in LAYER_METHODS) == layer_level and m != "change_activation"]
        if not methods:  # e.g. a network without layer-level methods
            methods = [m for m in lead.mutation_methods if m != "change_activation"]
        method = methods[int(self.rng.integers(len(methods)))]
        record = lead.mutate(method, self.rng)
        for twin in names[1:]:
            nets[twin].apply_mutation(record)
        agent.build_optimizers(keep_state=True)
        return "None" if "noop" in record else f"arch {names[0]} {record_label(record)}"

    def parameter_mutation(self, agent: Any) -> str:
        """Perturb a random 10% of the entries of each actor weight matrix."""
        with torch.no_grad():
            for name, net in agent.networks().items():
                if not name.startswith("actors/"):
                    continue
                for param_name, param in net.named_parameters():
                    if param.dim() < 2 or "norm" in param_name:
                        continue  # weights only: biases and LayerNorm gains keep their scale
                    mask = torch.from_numpy(self.rng.random(tuple(param.shape)) < 0.1).to(param.device)
                    noise = torch.from_numpy(self.rng.standard_normal(tuple(param.shape)).astype(np.float32))
                    scale = self.mutation_sd * float(param.std()) if param.numel() > 1 else self.mutation_sd
                    param.add_(noise.to(param.device) * scale * mask)
        return "params"

    def activation_mutation(self, agent: Any) -> str:
        """Change the hidden activation of one network that supports it (and of its twins)."""
        nets = agent.networks()
        groups = [g for g in agent.mutation_groups() if "change_activation" in nets[g[0]].mutation_methods]
        if not groups:
            return "None"
        names = groups[int(self.rng.integers(len(groups)))]
        record = nets[names[0]].sample_mutation("change_activation", self.rng)
        if self.activation_selection and "noop" not in record:
            # The user's list replaces the networks' default choice of activations.
            choices = self.activation_selection
            record = dict(record, activation=choices[int(self.rng.integers(len(choices)))])
        nets[names[0]].apply_mutation(record)
        for twin in names[1:]:
            nets[twin].apply_mutation(record)
        agent.build_optimizers(keep_state=True)
        return "None" if "noop" in record else f"act {names[0]} {record_label(record)}"

    def rl_hyperparameter_mutation(self, agent: Any) -> str:
        """Move one hyperparameter of ``agent.hp_config`` within its bounds."""
        hp_config = getattr(agent, "hp_config", None)
        if hp_config is None or len(hp_config) == 0:
            return "None"
        name = hp_config.sample(self.rng)
        agent.set_hyperparameter(name, hp_config[name].mutate(getattr(agent, name), self.rng))
        return f"rl_hp {name}"


def record_label(record: dict) -> str:
    """A short human-readable label of an architecture record, e.g. ``add_node``."""
    where = record.get("module")
    return f"{where}.{record['method']}" if where else str(record["method"])
