"""Environments: vector envs (sync, shared-memory async, batched numpy Speaker Listener), env makers and
probe envs with known answers."""

from marlkit.envs.speaker_listener import SpeakerListenerVecEnv
from marlkit.envs.vector import AsyncPettingZooVecEnv, SyncPettingZooVecEnv, WorkerError, make_multi_agent_vect_envs

__all__ = [
    "AsyncPettingZooVecEnv",
    "SpeakerListenerVecEnv",
    "SyncPettingZooVecEnv",
    "WorkerError",
    "make_multi_agent_vect_envs",
]
