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

# LayerNorm after every hidden layer keeps the critics' regression stable (see the measurements below).
_SPEAKER_LISTENER_NET = {
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

# Speaker Listener: what the preset changes from the guide, and why. Single MATD3 agents, 8 sub-envs, scored
# every 5,000 env steps on 32 fresh greedy episodes (score summed over both agents; a random policy scores
# about -75, a scripted listener that parks at the landmarks' centroid -30, one told the goal -13).
# * Exploration: Gaussian, per agent. The guide's O-U noise (0.1) barely moves the listener off the bounds
#   of its box (-55 after 50,000 steps, measured before the stability changes below). Wide noise for the
#   listener (std 1.2 x half-range) explores; the speaker gets 0.1, so the message it sends while training
#   is the one it sends greedily and carries the goal: with 1.2 for both, messages are random corners of
#   the box and the listener learns to ignore them.
# * Stability: LayerNorm in every hidden layer, actor learning rate 1e-4 (critic 1e-3), and the Box
#   pre-activation penalty (marlkit.algorithms.maddpg.PREACTIVATION_PENALTY). Without them the greedy
#   policy swung between -25 and -550 from one evaluation to the next (seeds 0 and 1, mean of the four
#   evaluations from 25k to 40k steps: -37 and -62); with them: -32 and -33 from 15k to 40k steps, and
#   with the speaker's smaller noise -28 and -25 from 45k to 60k steps (-30 and -30 with 1.2 for both).
_SPEAKER_LISTENER_HP = {
    **_OFF_POLICY_HP,
    "O_U_NOISE": False,
    "EXPL_NOISE": {"speaker_0": 0.1, "listener_0": 1.2},
    "LR_ACTOR": 1e-4,
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
        "hp_config": _OFF_POLICY_HP_CONFIG,
        "MUT_P": _MUT_P,
        "train": {
            "num_envs": 8,
            "max_steps": 50_000,  # per member: 10 generations of 5,000 steps, 200,000 env steps for 4 members
            "evo_steps": 5_000,
            # fitness = mean of 2 rounds of 8 episodes: one 8-episode score of a fixed policy has a std of
            # about 8 on this task, enough to fail a good member or promote a lucky one
            "eval_loop": 2,
            "learning_delay": 1_000,
            "target": -30.0,
            "tournament_size": 2,
            "elitism": True,
        },
        # per member: 2 generations of 4,000 steps (32,000 env steps for 4 members)
        "quick": {"max_steps": 6_000, "evo_steps": 4_000, "target": None},
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
            # per member: 16 generations of 16,384 steps (about 1,000,000 env steps for 4 members)
            "train": {"max_steps": 250_000, "evo_steps": 16_384},
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
        preset["train"].update(on_policy["train"])
        preset["quick"] = on_policy["quick"]
    if quick:
        preset["train"].update(preset["quick"])
    return preset
