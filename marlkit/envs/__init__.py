"""Environments: vector envs (sync + shared-memory async), env makers and probe envs with known answers."""

from marlkit.envs.vector import AsyncPettingZooVecEnv, SyncPettingZooVecEnv, WorkerError, make_multi_agent_vect_envs

__all__ = ["AsyncPettingZooVecEnv", "SyncPettingZooVecEnv", "WorkerError", "make_multi_agent_vect_envs"]
