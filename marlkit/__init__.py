"""marlkit: a notebook-first, educational toolkit for multi-agent reinforcement learning.

Every public name of the multi-agent training guide is importable from here, so the guide's code runs
with ``from marlkit import ...`` in place of its ``agilerl`` imports.
"""

from marlkit.algorithms.ippo import IPPO
from marlkit.algorithms.maddpg import MADDPG
from marlkit.algorithms.matd3 import MATD3
from marlkit.algorithms.wrappers import AsyncAgentsWrapper
from marlkit.buffers import MultiAgentReplayBuffer
from marlkit.envs.makers import make_space_invaders, make_speaker_listener
from marlkit.envs.speaker_listener import SpeakerListenerVecEnv
from marlkit.envs.vector import AsyncPettingZooVecEnv, SyncPettingZooVecEnv, make_multi_agent_vect_envs
from marlkit.hpo.hyperparameters import HyperparameterConfig, RLParameter
from marlkit.hpo.mutation import Mutations
from marlkit.hpo.population import create_population
from marlkit.hpo.tournament import TournamentSelection
from marlkit.networks import (
    EvolvableCNN,
    EvolvableMLP,
    EvolvableNetwork,
    resolve_net_config,
)
from marlkit.training.off_policy import train_multi_agent_off_policy
from marlkit.training.on_policy import train_multi_agent_on_policy

__version__ = "0.1.0"

__all__ = [
    "IPPO",
    "MADDPG",
    "MATD3",
    "AsyncAgentsWrapper",
    "AsyncPettingZooVecEnv",
    "EvolvableCNN",
    "EvolvableMLP",
    "EvolvableNetwork",
    "HyperparameterConfig",
    "MultiAgentReplayBuffer",
    "Mutations",
    "RLParameter",
    "SpeakerListenerVecEnv",
    "SyncPettingZooVecEnv",
    "TournamentSelection",
    "create_population",
    "make_multi_agent_vect_envs",
    "make_space_invaders",
    "make_speaker_listener",
    "resolve_net_config",
    "train_multi_agent_off_policy",
    "train_multi_agent_on_policy",
]
