"""Ready-made training set-ups shared by the command line, the notebooks and the README's main job.

A preset is plain data in the guide's format (``INIT_HP``, ``NET_CONFIG``, ``hp_config`` bounds,
``MUT_P`` and the training-loop arguments), so a student can print one and copy it into their own
script. ``quick`` overrides shrink a run to a couple of minutes on a 2-core laptop. As in the guide,
``max_steps`` is the budget of each member (a population of ``POP_SIZE`` takes ``POP_SIZE`` times as
many env steps in all).
"""

from __future__ import annotations

import copy
from typing import Any

# IPPO's Speaker Listener networks: LayerNorm after every hidden layer keeps the value regression steady.
_SPEAKER_LISTENER_IPPO_NET = {
    "speaker_0": {
        "encoder_config": {"hidden_size": [64, 64], "activation": "ReLU", "layer_norm": True},
        "head_config": {"hidden_size": [64], "layer_norm": True},
    },
    "listener_0": {
        "encoder_config": {"hidden_size": [64, 64], "activation": "ReLU", "layer_norm": True},
        "head_config": {"hidden_size": [64], "layer_norm": True},
    },
}

_OFF_POLICY_HP = {
    "BATCH_SIZE": 128,
    "O_U_NOISE": True,
    "EXPL_NOISE": 0.1,
    "MEAN_NOISE": 0.0,
    "THETA": 0.15,
    "DT": 0.01,
    "LR_ACTOR": 0.001,
    "LR_CRITIC": 0.001,
    "GAMMA": 0.95,
    "MEMORY_SIZE": 100_000,
    "LEARN_STEP": 8,
    "TAU": 0.01,
    "POLICY_FREQ": 2,
    "POP_SIZE": 4,
}

_OFF_POLICY_HP_CONFIG = {
    "lr_actor": {"min": 1e-4, "max": 1e-2},
    "lr_critic": {"min": 1e-4, "max": 1e-2},
    "batch_size": {"min": 32, "max": 512, "dtype": "int"},
    "learn_step": {"min": 4, "max": 64, "dtype": "int", "grow_factor": 1.5, "shrink_factor": 0.75},
}

_MUT_P = {
    "NO_MUT": 0.4,
    "ARCH_MUT": 0.2,
    "NEW_LAYER": 0.2,
    "PARAMS_MUT": 0.2,
    "ACT_MUT": 0.0,
    "RL_HP_MUT": 0.2,
    "MUT_SD": 0.1,
}

# Speaker Listener, MADDPG/MATD3: a team that COMMUNICATES. Only the speaker sees the goal's colour and only
# the listener moves, so the task is to learn a code; but a listener that ignores the speaker and parks at the
# centre of the three landmarks already scores about -29 (summed over both agents, 25 steps; the guide's
# target is -30, a random team -75, a listener told the goal -12). The previous preset (actor lr 1e-4, critic
# 1e-3, batch 128 every 8 env steps, LayerNorm, 8 sub-envs) found exactly that centre trick: -29.4 on fresh
# episodes, -29.3 with its speaker shown a wrong goal (the listener ignored the message).
# What decides it, measured with single MATD3 teams (64 sub-envs, evaluated on 300 fresh episodes, speaker
# noise 0.1, listener 1.2; "wrong" = the same team with its speaker shown another landmark's colour):
#   lr actor/critic   batch / learn_step   network              steps    score   wrong
#   1e-4 / 1e-3       128 / 8 (old)        64-64-64 LayerNorm    75k     -28.2   -34.4   (centre trick)
#   1e-4 / 1e-3       1024 / 100           64-64                250k     -29.6   -29.6   (centre trick)
#   1e-2 / 1e-2       1024 / 100           64-64                250k     -20.6   -70.6
#                                                               400k     -13.9   -56.3   (communicates)
#   1e-2 / 1e-2       1024 / 100           64-64, seed 1        400k     -14.4   -62.6
#   1e-2 / 1e-2       1024 / 100           64-64-64 LayerNorm   250k     -23.1   -44.9
#   1e-3 / 1e-2       1024 / 100           64-64-64 LayerNorm   100k     -48.9   -48.7   (slower)
# So the learning rates decide it (the update regime alone does not), as in the original MADDPG (lr 1e-2,
# batch 1024, one update per 100 steps). Why: the message reaches the listener one step after it is sent,
# so the speaker learns only through its critic's bootstrapped value, a weak and slow signal, while the
# listener's critic sees the goal (the speaker's observation is part of its input) and drives the listener
# towards the average landmark as soon as the message is uninformative. With slow actors the listener
# settles on the centre before the speaker's messages differ enough to be worth reading; with fast ones the
# two find a code first. The Box pre-activation penalty (0.1 vs 1e-3) made no difference to this.
# The speaker explores its message narrowly (0.1 x half-range: what it sends while training is what it sends
# greedily), the listener widely (1.2: it is pushed to the bounds in random directions); the reasons are in
# chapter 5. Population of 4 sharing a replay buffer of 200,000 transitions (100,000 learned as fast; 1,000,000
# with architecture mutations off was slower: -25 to -29 after 800,000 env steps in all, against -16 to -18),
# 64 sub-envs of the batched env, 25,000 steps per member per generation.
_SPEAKER_LISTENER_HP = {
    **_OFF_POLICY_HP,
    "BATCH_SIZE": 1024,
    "O_U_NOISE": False,
    "EXPL_NOISE": {"speaker_0": 0.1, "listener_0": 1.2},
    "LR_ACTOR": 0.01,
    "LR_CRITIC": 0.01,
    "MEMORY_SIZE": 200_000,
    "LEARN_STEP": 100,
}
_SPEAKER_LISTENER_NET = {"encoder_config": {"hidden_size": [64]}, "head_config": {"hidden_size": [64]}}
_SPEAKER_LISTENER_HP_CONFIG = {
    "lr_actor": {"min": 1e-3, "max": 3e-2},
    "lr_critic": {"min": 1e-3, "max": 3e-2},
    "batch_size": {"min": 256, "max": 2048, "dtype": "int"},
    "learn_step": {"min": 50, "max": 200, "dtype": "int", "grow_factor": 1.5, "shrink_factor": 0.75},
}

PRESETS: dict[str, dict[str, Any]] = {
    "speaker-listener": {
        "env": "speaker-listener",
        "env_kwargs": {"continuous_actions": True},
        # How the env is simulated (the first is the default, `marlkit train --env-impl` picks another):
        # "batched" is marlkit.SpeakerListenerVecEnv, every sub-env in one numpy step and step-for-step equal
        # to mpe2 (tests/test_speaker_listener_env.py); "mpe2" is the guide's AsyncPettingZooVecEnv of mpe2 envs.
        "env_impls": ["batched", "mpe2"],
        "algo": "MATD3",
        "algos": ("MADDPG", "MATD3", "IPPO"),
        "INIT_HP": _SPEAKER_LISTENER_HP,
        "NET_CONFIG": _SPEAKER_LISTENER_NET,
        "hp_config": _SPEAKER_LISTENER_HP_CONFIG,
        "MUT_P": _MUT_P,
        "train": {
            "num_envs": 64,
            "max_steps": 500_000,  # per member: at most 20 generations, 2,000,000 env steps for 4 members
            "evo_steps": 25_000,
            # fitness = one greedy episode in each of the 64 sub-envs; the target takes the mean of a member's
            # last 3 evaluations (192 episodes)
            "eval_loop": 1,
            "learning_delay": 5_000,
            # Early stop only for a team that communicates: every member's last-3 mean at least -16. A team
            # doing the centre trick (-29, episode std about 20) passes a 192-episode mean of -16 with
            # probability below 1e-10 (z > 9); even a -20 team has z = 2.8 (0.3%) per member.
            "target": -16.0,
            "tournament_size": 2,
            "elitism": True,
        },
        # per member: 2 generations of 12,800 steps (102,400 env steps for 4 members, about a minute)
        "quick": {"max_steps": 25_600, "evo_steps": 12_800, "target": None},
        "on_policy": {
            "INIT_HP": {
                "POP_SIZE": 4,
                "BATCH_SIZE": 128,
                "LR": 3e-4,
                "LEARN_STEP": 2048,
                "GAMMA": 0.95,
                "GAE_LAMBDA": 0.95,
                "ACTION_STD_INIT": -0.5,
                "CLIP_COEF": 0.2,
                "ENT_COEF": 0.0,
                "VF_COEF": 0.5,
                "MAX_GRAD_NORM": 0.5,
                "UPDATE_EPOCHS": 4,
            },
            "hp_config": {
                "lr": {"min": 1e-5, "max": 1e-2},
                "batch_size": {"min": 32, "max": 1024, "dtype": "int"},
                "learn_step": {"min": 256, "max": 8192, "dtype": "int", "grow_factor": 1.5, "shrink_factor": 0.75},
            },
            "NET_CONFIG": _SPEAKER_LISTENER_IPPO_NET,
            # per member: 16 generations of 16,384 steps (about 1,000,000 env steps for 4 members)
            "train": {"num_envs": 8, "max_steps": 250_000, "evo_steps": 16_384, "eval_loop": 2,
                      "learning_delay": 1_000, "target": -30.0},
            "quick": {"max_steps": 8_192, "evo_steps": 16_384},  # one generation
        },
    },
    "space-invaders": {
        "env": "space-invaders",
        "env_kwargs": {},
        "env_impls": ["pettingzoo"],
        "algo": "MADDPG",
        "algos": ("MADDPG",),
        "INIT_HP": {
            **_OFF_POLICY_HP,
            "BATCH_SIZE": 32,
            "LEARN_STEP": 16,
            "LR_ACTOR": 1e-4,
            "LR_CRITIC": 1e-4,
            "GAMMA": 0.99,
            "MEMORY_SIZE": 50_000,
            "EXPL_NOISE": 0.1,
        },
        "NET_CONFIG": {
            "latent_dim": 64,
            "encoder_config": {"channel_size": [32, 64, 64], "kernel_size": [8, 4, 3], "stride_size": [4, 2, 1]},
            "head_config": {"hidden_size": [128]},
        },
        "hp_config": {
            "lr_actor": {"min": 1e-5, "max": 1e-3},
            "lr_critic": {"min": 1e-5, "max": 1e-3},
            "batch_size": {"min": 16, "max": 128, "dtype": "int"},
        },
        "MUT_P": {**_MUT_P, "ARCH_MUT": 0.0, "NEW_LAYER": 0.0},
        "train": {
            "num_envs": 4,
            "max_steps": 500_000,  # per member: 25 generations of 20,000 steps, 2,000,000 env steps for 4
            "evo_steps": 20_000,
            "eval_loop": 1,
            "eval_steps": 1_000,
            "learning_delay": 5_000,
            "target": None,
            "tournament_size": 2,
            "elitism": True,
        },
        # per member: one generation of 1,000 steps
        "quick": {"max_steps": 500, "evo_steps": 1_000, "learning_delay": 200, "eval_steps": 100},
    },
}


def get_preset(name: str, algo: str | None = None, quick: bool = False, env_impl: str | None = None) -> dict[str, Any]:
    """A deep copy of preset ``name`` for ``algo`` (default: the preset's own), quick overrides applied.

    ``env_impl`` (default: the preset's first ``env_impls`` entry) is stored as ``preset["env_impl"]``.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    preset = copy.deepcopy(PRESETS[name])
    algo = algo or preset["algo"]
    if algo not in preset["algos"]:
        raise ValueError(f"preset {name!r} supports {list(preset['algos'])}, not {algo!r}")
    preset["algo"] = algo
    env_impl = env_impl or preset["env_impls"][0]
    if env_impl not in preset["env_impls"]:
        raise ValueError(f"preset {name!r} runs its env as one of {preset['env_impls']}, not {env_impl!r}")
    preset["env_impl"] = env_impl
    on_policy = preset.pop("on_policy", None)
    if algo == "IPPO":
        assert on_policy is not None
        preset["INIT_HP"] = on_policy["INIT_HP"]
        preset["hp_config"] = on_policy["hp_config"]
        preset["NET_CONFIG"] = on_policy["NET_CONFIG"]
        preset["train"].update(on_policy["train"])
        preset["quick"] = on_policy["quick"]
    if quick:
        preset["train"].update(preset["quick"])
    return preset
