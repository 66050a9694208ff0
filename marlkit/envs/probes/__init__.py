"""Multi-agent probe environments: tiny PettingZoo envs whose right answers are known exactly.

Probe envs (Andy Jones, "Debugging RL, Without the Agonizing Pain") isolate one piece of an RL
algorithm at a time. Run them in order: each assumes the previous ones pass, so the first one that fails
points at the bug. Every probe here is a ``pettingzoo.ParallelEnv`` with

* a configurable agent set (``agent_ids``), so grouped/mixed cases like
  ``("agent_0", "agent_1", "other_agent_0")`` can be built;
* ``continuous=False``: ``Discrete(2)`` actions, or ``continuous=True``: ``Box(-1, 1, (1,))`` actions;
* ``image=False``: one-hot ``float32 (K,)`` observations, or uint8 ``(C, H, W)`` images (one vertical
  stripe of ``K`` lit); ``image`` may also name the agents/groups that see images (mixed encoders);
* seeded, deterministic dynamics (``reset(seed=...)``), and
* ``expected(gamma)``: the known answers as arrays (see ``ProbeAnswer``).

Observations are always one of ``K = num_states`` symbols (the "state"). Terminal observations look
like start states on purpose: an algorithm that bootstraps through ``terminated`` over-estimates values.

Rewards of the policy probes score an action against a target cue ``c`` in {0, 1}:
discrete ``1 if a == c else 0``; continuous ``1 - (a - t)^2`` with ``t = -0.5`` (c=0) or ``+0.5`` (c=1),
``a`` clipped to [-1, 1] first.

Checking a trained algorithm against a probe (``critic``, ``value`` and ``actor`` stand for your networks)::

    env = PROBE_ENVS["obs_dependent_policy"](continuous=True)
    ...train on env...
    for agent, ans in env.expected(gamma).items():
        if ans.joint_obs is not None:                      # MADDPG / MATD3: centralised Q
            assert np.allclose(critic[agent](ans.joint_obs, ans.joint_actions), ans.q_values, atol=0.1)
        assert np.allclose(value[agent](ans.obs), ans.values, atol=0.1)           # IPPO: V(obs)
        if ans.optimal_actions is not None:                # policy probes
            assert np.allclose(actor[agent](ans.obs), ans.optimal_actions, atol=0.1)  # argmax if Discrete

A decentralised critic ``Q(obs_i, a_i)`` can be checked with ``ans.obs, ans.actions`` unless
``env.requires_centralised_critic``. ``env.optimal_action(agent, obs)`` plays the optimal policy.
``AsyncAgentsEnv`` returns observations only for the agents that act next (the guide's convention), so
PettingZoo's stock ``parallel_api_test``, which reads ``obs[agent]`` for every live agent, needs a
placeholder-filling adapter for it (see tests/test_probes.py).

``CommunicationEnv`` (not in ``PROBE_ENVS``: its listener observes a message, not a state symbol) is
Speaker Listener reduced to its credit path: the speaker's message reaches the listener one step later,
and a listener that ignores it still earns something. See ``marlkit/envs/probes/communication.py``.
"""

from .asynchronous import AsyncAgentsEnv
from .base import ProbeAnswer, ProbeEnv
from .communication import CommunicationEnv
from .policy import ContextualCueEnv, CoordinationEnv, FixedObsPolicyEnv, ObsDependentPolicyEnv
from .value import ConstantRewardEnv, DiscountedRewardEnv, ObsDependentRewardEnv

PROBE_ENVS: dict[str, type[ProbeEnv]] = {
    "constant_reward": ConstantRewardEnv,
    "obs_dependent_reward": ObsDependentRewardEnv,
    "discounted_reward": DiscountedRewardEnv,
    "fixed_obs_policy": FixedObsPolicyEnv,
    "obs_dependent_policy": ObsDependentPolicyEnv,
    "contextual_cue": ContextualCueEnv,
    "coordination": CoordinationEnv,
    "async_agents": AsyncAgentsEnv,
}
"""Probe name -> class, in the order to run them. Every class takes ``agent_ids``, ``continuous``, ``image``."""

__all__ = [
    "PROBE_ENVS",
    "AsyncAgentsEnv",
    "CommunicationEnv",
    "ConstantRewardEnv",
    "ContextualCueEnv",
    "CoordinationEnv",
    "DiscountedRewardEnv",
    "FixedObsPolicyEnv",
    "ObsDependentPolicyEnv",
    "ObsDependentRewardEnv",
    "ProbeAnswer",
    "ProbeEnv",
]
