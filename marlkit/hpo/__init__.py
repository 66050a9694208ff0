"""Evolutionary hyperparameter optimisation: what may mutate, and who survives."""

from marlkit.hpo.hyperparameters import HyperparameterConfig, RLParameter
from marlkit.hpo.tournament import TournamentSelection

__all__ = ["HyperparameterConfig", "RLParameter", "TournamentSelection"]
