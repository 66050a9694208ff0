# ruff: noqa: E501  (the notebooks' markdown tables and display math keep their long lines)
"""Write the sources of chapters 05-07 (cells only, no outputs); execute them with ``_execute.py``.

    .venv/bin/python notebooks/_build_05_07.py                 # rewrite notebooks 05, 06 and 07
    .venv/bin/python notebooks/_build_05_07.py 06              # only chapter 06
    .venv/bin/python notebooks/_execute.py notebooks/0[5-7]_*.ipynb   # run them in full mode, store outputs

Editing a chapter: change its cells here, regenerate, re-execute. A cell is ``md(text)`` or
``code(text, *tags)``. The tag ``nbval-ignore-output`` marks cells whose output depends on
``MARLKIT_QUICK`` or on timing; nbval compares every other cell's output with the stored one, so
those cells must print the same thing in quick and in full mode.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

from marlkit.exercises import EXERCISES  # the exercises' official stubs

NOTEBOOKS = Path(__file__).resolve().parent
IGNORE = "nbval-ignore-output"


def md(text: str) -> tuple[str, str, tuple[str, ...]]:
    return ("markdown", text, ())


def code(text: str, *tags: str) -> tuple[str, str, tuple[str, ...]]:
    return ("code", text, tags)


PARAMETERS = "parameters"

# ==================================================================================================
# Chapter 05: MATD3 on Simple Speaker Listener
# ==================================================================================================
CH05 = [
md(r"""
# 5. MATD3 on Simple Speaker Listener

MADDPG (chapter 4) trains every critic on targets computed by its own target networks, and every actor
climbs its critic. Both habits push the critic's estimates *up*: errors that happen to be positive are
exactly the ones the actor seeks out, and bootstrapping copies them into the next targets. TD3
(Fujimoto et al., 2018) adds three small fixes to DDPG, and MATD3 (Ackermann et al., 2019) applies them
to MADDPG's centralised critics. This chapter measures the over-estimation, finds each fix in
`marlkit/algorithms/matd3.py`, and then trains MATD3 on the guide's Simple Speaker Listener task.

**Learning goals.** After this chapter you can

1. explain why maximising over noisy estimates is biased upwards, and compute that bias by hand;
2. show that bootstrapping compounds a per-step bias by a factor $\gamma / (1 - \gamma)$, and that a clipped
   double-Q target reduces it;
3. state TD3's three fixes (clipped double-Q, target policy smoothing, delayed policy updates) and find
   each as one overridden method of `MATD3`;
4. check each fix on a real `MATD3` agent;
5. train MATD3 on Simple Speaker Listener with the guide's vector env and
   `train_multi_agent_off_policy`, and read its learning curve;
6. write the clipped double-Q target yourself (exercise with a check).

The guide's sections this chapter covers: *Off-Policy Training* (MATD3), *Creating a Population of
Agents* (with a population of one) and *Training Loop*.
"""),
md(r"""
**Quick or full.** `MARLKIT_QUICK=1` (what CI uses) shrinks the two experiments that take time: the
by-hand critic of section 5.2 and the Speaker Listener run of section 5.4. Cells whose output depends on
the knob are marked in the text; everything else prints the same numbers in both modes.
"""),
code(r"""
import os

QUICK = os.environ.get("MARLKIT_QUICK", "0") == "1"  # the one knob: quick run (CI) or full run
SEED = 0  # every random number in this notebook derives from it
FITTED_Q_STEPS = 1500 if QUICK else 6000  # critic updates of the by-hand experiment in 5.2
NUM_ENVS = 8  # sub-envs of the vector env, as in the guide
WARMUP_STEPS = 10_000  # uniformly random transitions the replay buffer starts with (5.4)
TRAIN_STEPS = 8_000 if QUICK else 60_000  # env steps of MATD3 on Simple Speaker Listener (5.4)
EVO_STEPS = 4_000 if QUICK else 5_000  # env steps between two evaluations of the agent
""", PARAMETERS),
code(r"""
import inspect
import shutil
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from marlkit import (
    MADDPG,
    MATD3,
    AsyncPettingZooVecEnv,
    MultiAgentReplayBuffer,
    create_population,
    make_speaker_listener,
    train_multi_agent_off_policy,
)
from marlkit.algorithms.base import episode_dones
from marlkit.training.off_policy import next_obs_for_buffer

torch.manual_seed(SEED)
torch.set_num_threads(1)  # tiny networks: one thread is fastest, and results do not depend on the core count
plt.rcParams["figure.dpi"] = 80
np.set_printoptions(precision=3, suppress=True)
"""),
md(r"""
## 5.1 The maximum of noisy estimates is biased upwards

A critic is an *estimate*: $\hat Q(o, a) = Q(o, a) + \epsilon(a)$, with errors $\epsilon$ from finite data,
function approximation and a moving target. Even if the errors average zero for every action,
$\mathbb{E}[\epsilon(a)] = 0$, the action the actor picks is the one whose estimate is *largest*, and

$$
\mathbb{E}\Big[\max_a \hat Q(o, a)\Big] \;\ge\; \max_a \mathbb{E}\big[\hat Q(o, a)\big] = \max_a Q(o, a),
$$

because the maximum is convex (Jensen's inequality). Picture $K$ actions that are all equally good,
$Q(a) = 0$, with independent errors $\epsilon(a) \sim \mathcal{N}(0, \sigma^2)$. The maximum of $K$ such
errors is positive on average and grows like $\sigma\sqrt{2 \ln K}$ (an upper bound it approaches slowly): the
more actions to choose from, the larger the bias. A deterministic actor over a continuous action space
picks the maximum of a whole *function*, so it has many effectively independent actions to choose from.

Two remedies, both with a second estimate $\hat Q_2$ whose errors are independent of $\hat Q_1$'s:

* **double estimator**: choose with one, evaluate with the other, $\hat Q_2(a^*)$ with
  $a^* = \arg\max_a \hat Q_1(a)$. Since $\epsilon_2$ does not know which action $\hat Q_1$ liked, it is
  unbiased;
* **clipped double estimator** (TD3): $\min\big(\hat Q_1(a^*), \hat Q_2(a^*)\big) \le \hat Q_2(a^*)$, so it
  errs on the low side. An *under*-estimated action is one the actor avoids, so the error is not
  amplified; an over-estimated one is exactly where the actor goes.

By hand, with numpy, for $\sigma = 1$ and $K$ from 1 to 256:
"""),
code(r"""
rng = np.random.default_rng(SEED)
trials, sigma = 20_000, 1.0
action_counts = [1, 2, 4, 8, 16, 32, 64, 128, 256]
bias = {"single: max Q1": [], "double: Q2(argmax Q1)": [], "clipped: min(Q1, Q2)(argmax Q1)": []}
for K in action_counts:
    q1 = rng.normal(0.0, sigma, (trials, K))  # true Q = 0 for every action: the estimates are pure error
    q2 = rng.normal(0.0, sigma, (trials, K))
    best = q1.argmax(axis=1)  # the action the actor would pick
    rows = np.arange(trials)
    bias["single: max Q1"].append(q1[rows, best].mean())
    bias["double: Q2(argmax Q1)"].append(q2[rows, best].mean())
    bias["clipped: min(Q1, Q2)(argmax Q1)"].append(np.minimum(q1[rows, best], q2[rows, best]).mean())

print(f"{'K':>4}  " + "  ".join(f"{name:>32}" for name in bias))
for k, K in enumerate(action_counts):
    print(f"{K:>4}  " + "  ".join(f"{values[k]:>32.3f}" for values in bias.values()))

fig, ax = plt.subplots(figsize=(6.5, 3.5))
for name, values in bias.items():
    ax.plot(action_counts, values, marker="o", label=name)
ax.plot(action_counts, sigma * np.sqrt(2 * np.log(action_counts)), "k:", label=r"$\sigma\sqrt{2\ln K}$")
ax.axhline(0.0, color="gray", linewidth=0.8)
ax.set_xscale("log", base=2)
ax.set_title("Bias of the value of the chosen action (true value 0, noise std 1)")
ax.set_xlabel("number of actions K the actor chooses from")
ax.set_ylabel("mean estimate - true value (reward units)")
ax.legend(fontsize="small")
plt.show()
"""),
md(r"""
With one action there is nothing to choose and no bias. With 256 the single estimator reports about
$+2.8\sigma$ for actions that are worth nothing, below the $\sigma\sqrt{2 \ln K}$ bound. The double
estimator stays at zero. The clipped one is biased *low*: most for few actions (for $K = 1$ it is the mean
of the smaller of two independent errors, $-\sigma/\sqrt{\pi} \approx -0.56\sigma$) and less as $K$ grows,
because $\hat Q_1(a^*)$ is then large and the minimum mostly returns $\hat Q_2(a^*)$.

## 5.2 Bootstrapping compounds the bias

A critic is trained towards $y = r + \gamma \hat Q'(o', a')$ with $a' = \mu'(o')$, the target actor's
choice: the target *itself* contains a maximum over noisy estimates. Suppose each target is too high by
$b$ on average. The critic's fixed point is then $\hat Q = r + \gamma(\hat Q + b)$, while the truth is
$Q = r + \gamma Q$; subtracting,

$$
\hat Q - Q = \gamma(\hat Q - Q) + \gamma b \quad\Longrightarrow\quad \hat Q - Q = \frac{\gamma\, b}{1 - \gamma}.
$$

With $\gamma = 0.9$ a per-step bias of $0.5$ becomes $4.5$; with the guide's $\gamma = 0.95$, $9.5$. The
critic's error is fed back into its own targets, step after step.

An experiment with real networks and nothing else: one state, a 4-dimensional action
$a \in [-1, 1]^4$, and a reward $r = 1 + 2\eta$ with $\eta \sim \mathcal{N}(0, 1)$ that does **not** depend on the
action. Every action is worth exactly $Q = \mathbb{E}[r] / (1 - \gamma) = 10$ for $\gamma = 0.9$. A critic
MLP is regressed on $y = r + \gamma \max_{a'} \hat Q'(a')$, where a perfect "actor" takes the maximum over 256
fixed candidate actions, with a soft-updated target network as in MADDPG. The TD3 variant trains two
critics on the same batches and targets and uses $y = r + \gamma \min(\hat Q_1', \hat Q_2')(a^*)$ at
$a^* = \arg\max \hat Q_1'$. We record what the actor believes its chosen action is worth, $\hat Q_1(a^*)$.
"""),
code(r"""
def fitted_q(clipped, steps, gamma=0.9, action_dim=4, reward_std=2.0, batch=64, tau=0.01, seed=SEED):
    # Returns (update index, Q1(a*)) every 100 updates: the value the greedy "actor" believes in.
    torch.manual_seed(seed)
    def mlp():
        return nn.Sequential(nn.Linear(action_dim, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
    q1, q2 = mlp(), mlp()
    t1, t2 = mlp(), mlp()
    t1.load_state_dict(q1.state_dict())
    t2.load_state_dict(q2.state_dict())
    optimizer = torch.optim.Adam([*q1.parameters(), *q2.parameters()], lr=1e-3)
    candidates = torch.rand(256, action_dim) * 2 - 1  # the actions a perfect actor chooses among
    history = []
    for step in range(steps):
        a = torch.rand(batch, action_dim) * 2 - 1  # actions in the replay data
        r = 1.0 + reward_std * torch.randn(batch)  # E[r] = 1 whatever the action
        with torch.no_grad():
            v1 = t1(candidates)[:, 0]
            best = v1.argmax()
            next_q = torch.min(v1[best], t2(candidates[best : best + 1])[0, 0]) if clipped else v1[best]
            y = r + gamma * next_q  # a continuing task: no terminal states
        loss = ((q1(a)[:, 0] - y) ** 2).mean() + ((q2(a)[:, 0] - y) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():  # soft target updates, t <- tau * q + (1 - tau) * t
            for target, online in ((t1, q1), (t2, q2)):
                for pt, po in zip(target.parameters(), online.parameters()):
                    pt.lerp_(po, tau)
        if step % 100 == 0 or step == steps - 1:
            with torch.no_grad():
                history.append((step, float(q1(candidates).max())))
    return np.array(history)


start = time.perf_counter()
runs = {"single critic (MADDPG-style target)": fitted_q(False, FITTED_Q_STEPS),
        "clipped double-Q (TD3 target)": fitted_q(True, FITTED_Q_STEPS)}
print(f"{FITTED_Q_STEPS} updates per variant")
for name, history in runs.items():
    tail = history[len(history) * 3 // 4 :, 1]  # the last quarter of training
    print(f"{name:>36}: Q1(a*) over the last quarter {tail.mean():6.2f} +- {tail.std():.2f}   (true value 10)")

fig, ax = plt.subplots(figsize=(6.5, 3.5))
for name, history in runs.items():
    ax.plot(history[:, 0], history[:, 1], label=name)
ax.axhline(10.0, color="black", linestyle="--", label="true value 1 / (1 - gamma) = 10")
ax.set_title("A critic trained on its own bootstrapped max: estimate of the greedy action")
ax.set_xlabel("critic update")
ax.set_ylabel("Q1(a*) (return units)")
ax.legend(fontsize="small")
plt.show()
""", IGNORE),
md(r"""
(This cell's numbers depend on the quick/full knob.) In the full run the single critic climbs past the
true value and settles well above it; the clipped double-Q critic settles markedly lower, still somewhat
above 10. Both critics see the same batches and the same target, so their errors are correlated and
the minimum cannot cancel all of the bias: that is also MATD3's situation, and why TD3 adds two more
fixes rather than relying on the minimum alone.

## 5.3 The three fixes, and where they live

TD3's three changes to the DDPG update, in MATD3's multi-agent form (agent $i$, joint observation
$\mathbf{o}'$, target actors $\mu'_j$, half-range $h_j$ of agent $j$'s action bounds):

| fix | formula | hyperparameters |
|---|---|---|
| 1. clipped double-Q | $y_i = r_i + \gamma (1 - d_i) \min_{k=1,2} Q'_{i,k}(\mathbf{o}', \mathbf{a}')$ | two critics per agent |
| 2. target policy smoothing | $a'_j = \mathrm{clip}\big(\mu'_j(o'_j) + h_j\,\mathrm{clip}(\varepsilon, -c, c),\ \text{low}, \text{high}\big)$, $\varepsilon \sim \mathcal{N}(0, \tilde\sigma^2)$ | `policy_noise` $\tilde\sigma$, `noise_clip` $c$ |
| 3. delayed policy updates | actors and all targets are updated once every $d$ calls of `learn` | `policy_freq` $d$ |

Smoothing averages the target over a small neighbourhood of $a'$, so a narrow, wrong peak of $\hat Q'$ no
longer pays; delaying lets the critics settle before the actors climb them.

`MADDPG.learn` (chapter 4) is written once, with three hooks: `_target_actions` (step 1),
`_target_q` (step 2) and `_update_actor_now` (step 4), and it loops over `critic_groups` when it
regresses critics. `MATD3` sets `critic_groups = ("critics", "critics_2")`, so the same loop trains two
critics, and overrides exactly the three hooks. Everything `MATD3` defines itself:
"""),
code(r"""
own = [name for name, value in vars(MATD3).items() if callable(value) or isinstance(value, (tuple, dict))]
print("MATD3 defines:", own)
print("methods MADDPG also has, i.e. overrides:", [n for n in own if callable(getattr(MADDPG, n, None))])
print("critic_groups: MADDPG", MADDPG.critic_groups, "  MATD3", MATD3.critic_groups)
"""),
md(r"""
`__init__` only stores the three new hyperparameters and `init_kwargs` adds them to checkpoints; the
algorithm is in the three hooks. MADDPG's versions and MATD3's, side by side:
"""),
code(r"""
for hook in ("_target_q", "_target_actions", "_update_actor_now"):
    print(f"# ---- MADDPG.{hook}")
    print(inspect.getsource(getattr(MADDPG, hook)))
    print(f"# ---- MATD3.{hook}")
    print(inspect.getsource(getattr(MATD3, hook)))
"""),
md(r"""
### Checking each fix on a real agent

A `MATD3` agent for Simple Speaker Listener's spaces, and a batch of made-up next observations (the
values do not matter: we compare the hooks with the formulas on the same inputs).
"""),
code(r"""
sl = make_speaker_listener()
agent_ids = sl.possible_agents
observation_spaces = [sl.observation_space(a) for a in agent_ids]
action_spaces = [sl.action_space(a) for a in agent_ids]
NET = {"encoder_config": {"hidden_size": [64, 64]}, "head_config": {"hidden_size": [64]}}
td3 = MATD3(observation_spaces, action_spaces, agent_ids, net_config=NET, seed=SEED)
print("policy_freq", td3.policy_freq, " policy_noise", td3.policy_noise, " noise_clip", td3.noise_clip)
print("networks:", list(td3.networks()))

gen = torch.Generator().manual_seed(SEED)
B = 4
next_obs = {a: torch.randn(B, *sl.observation_space(a).shape, generator=gen) for a in agent_ids}
next_act = {a: torch.rand(B, *sl.action_space(a).shape, generator=gen) for a in agent_ids}  # in [0, 1]

# (1) clipped double-Q: the minimum of the two target critics, row by row
i = "listener_0"
order = td3.critic_order[i]  # agent i's own observation and action first
obs_list, act_list = [next_obs[b] for b in order], [next_act[b] for b in order]
with torch.no_grad():
    q1 = td3.critic_targets[i](obs_list, act_list)
    q2 = td3.critic_targets_2[i](obs_list, act_list)
    hook = td3._target_q(i, obs_list, act_list)
print("\nQ'_1 :", q1.numpy())
print("Q'_2 :", q2.numpy())
print("_target_q == min(Q'_1, Q'_2):", torch.equal(hook, torch.minimum(q1, q2)))
"""),
md(r"""
The two critics were initialised differently, so they disagree, and the target takes the smaller value
in every row. Next the smoothing: many calls of `_target_actions` on the *same* observation, against
MADDPG's greedy target action. Actions of Speaker Listener lie in $[0, 1]$, so $h = 0.5$ and the
perturbation is at most $h c = 0.25$, with standard deviation about $h\tilde\sigma = 0.1$ before clipping.
"""),
code(r"""
one = {a: next_obs[a][:1].repeat(20_000, 1) for a in agent_ids}  # the same observation, 20,000 times
torch.manual_seed(SEED)
with torch.no_grad():
    greedy = MADDPG._target_actions(td3, one)  # MADDPG's hook, called on the MATD3 agent
    smoothed = td3._target_actions(one)
for a in agent_ids:
    shift = smoothed[a] - greedy[a]
    inside = bool(((smoothed[a] >= 0) & (smoothed[a] <= 1)).all())
    print(f"{a:>10}: greedy action {greedy[a][0].numpy()}")
    print(f"{'':>10}  perturbation: std {shift.std():.3f}, largest |.| {shift.abs().max():.3f} (bound 0.25); "
          f"all in [0, 1]: {inside}")
"""),
md(r"""
The standard deviation is a little under $0.1$ because the noise is clipped at $\pm c = \pm 2.5\,\tilde\sigma$
(and, for an action near a bound, by the bounds too), and no perturbation exceeds $hc = 0.25$. Last, the
delay: six `learn` calls on a random batch. The returned dict holds actor losses only when the actors
(and all targets) moved; MADDPG moves them every time.
"""),
code(r"""
def random_batch(agent, batch_size=32, seed=SEED):
    # A (states, actions, rewards, next_states, dones) batch in the format MultiAgentReplayBuffer.sample gives.
    g = torch.Generator().manual_seed(seed)
    obs = {a: torch.randn(batch_size, *agent.observation_spaces[a].shape, generator=g) for a in agent.agent_ids}
    act = {a: torch.rand(batch_size, *agent.action_spaces[a].shape, generator=g) for a in agent.agent_ids}
    rew = {a: torch.randn(batch_size, generator=g) for a in agent.agent_ids}
    nxt = {a: torch.randn(batch_size, *agent.observation_spaces[a].shape, generator=g) for a in agent.agent_ids}
    done = {a: torch.zeros(batch_size) for a in agent.agent_ids}
    return obs, act, rew, nxt, done


for algo in (MATD3, MADDPG):
    agent = algo(observation_spaces, action_spaces, agent_ids, net_config=NET, seed=SEED)
    batch = random_batch(agent)
    moved = []
    for call_number in range(1, 7):
        before = [p.clone() for p in agent.actors["speaker_0"].parameters()]
        losses = agent.learn(batch)
        changed = any(not torch.equal(p, q) for p, q in zip(before, agent.actors["speaker_0"].parameters()))
        moved.append(f"{call_number}: {'actor' if losses['actor'] else '-----'}{'*' if changed else ' '}")
    print(f"{algo.__name__:>6} learn calls   " + "   ".join(moved))
print("'actor' = actor losses returned, * = the speaker's actor weights changed in that call")
"""),
md(r"""
## 5.4 Training MATD3 on Simple Speaker Listener

Now the real task, set up as in the guide: an `AsyncPettingZooVecEnv` of 8 sub-envs, the guide's
`INIT_HP` and per-agent `NET_CONFIG`, a population created by `create_population` and a shared
`MultiAgentReplayBuffer`. We train a **population of one** with `tournament=None, mutation=None`:
that is plain MATD3, and `train_multi_agent_off_policy` still gives us the guide's loop, evaluations
every `EVO_STEPS` env steps and a run record. Chapter 7 turns on evolution.

Departures from the guide's numbers, for a run of minutes rather than hours. They are those of marlkit's
`speaker-listener` preset (`marlkit.presets`, whose comments list the measurements behind them):

* `BATCH_SIZE = 128` and `LEARN_STEP = 8` (one `learn` per vector step of 8 sub-envs); the guide learns
  once per 100 env steps.
* **Exploration per agent**: Gaussian noise (`O_U_NOISE: False`) with
  `EXPL_NOISE = {"speaker_0": 0.1, "listener_0": 1.2}`, standard deviations relative to the half-range
  of the action bounds. The listener's $1.2 \times 0.5 = 0.6$ in $[0, 1]$ action units clips most noisy
  actions to a bound: it tries every direction at full force. The speaker's message must stay close to
  the one it will send greedily: with wide noise its training messages are random corners of the box,
  unrelated to the goal, and the listener learns to ignore them.
* **Stability**: `layer_norm: True` in every hidden layer of the networks, and `LR_ACTOR = 1e-4` (the
  critic keeps `1e-3`), so each actor follows a critic that has settled. MADDPG's penalty on the
  actor's pre-tanh outputs (`PREACTIVATION_PENALTY` in `maddpg.py`) does the rest: it keeps tanh out of
  saturation, where the critic's gradient could no longer move an action.
* **A random warm-up**: the replay buffer starts with `WARMUP_STEPS` transitions of uniformly random
  actions, as in TD3's reference implementation (whose first 25,000 steps are random).

Why so much care about the action box: an actor climbs its critic, and a critic that has only seen a
narrow band of actions around the current policy has an *invented* slope outside it (section 5.1's
lesson again, now along the action axes). The guide's Ornstein-Uhlenbeck noise restarts at every episode
end and, with `DT = 0.01`, grows to a standard deviation of only about $0.1\sqrt{25 \times 0.01} = 0.05$
within a 25-step episode. In our first attempts with it, the listener's outputs drifted to the bounds of
$[0, 1]$ within 20,000 steps (left and right both near 1, up and down both near 0, so it stood still), and
every later evaluation scored exactly what a listener that never moves scores. Exercise 6 reproduces that.
"""),
code(r"""
env = AsyncPettingZooVecEnv([lambda: make_speaker_listener() for _ in range(NUM_ENVS)])
obs, info = env.reset(seed=SEED)
observation_spaces = [env.single_observation_space(a) for a in env.agents]
action_spaces = [env.single_action_space(a) for a in env.agents]

INIT_HP = {
    "BATCH_SIZE": 128,  # batch size
    "O_U_NOISE": False,  # Gaussian exploration noise (the guide: True, Ornstein-Uhlenbeck)
    # noise std per agent, relative to the half-range of the action bounds (the guide: 0.1 for all)
    "EXPL_NOISE": {"speaker_0": 0.1, "listener_0": 1.2},
    "MEAN_NOISE": 0.0,  # mean action noise
    "THETA": 0.15,  # rate of mean reversion in OU noise
    "DT": 0.01,  # timestep for OU noise
    "LR_ACTOR": 1e-4,  # actor learning rate (the guide: 0.001)
    "LR_CRITIC": 0.001,  # critic learning rate
    "GAMMA": 0.95,  # discount factor
    "MEMORY_SIZE": 100_000,  # max memory buffer size
    "LEARN_STEP": 8,  # learn once per 8 env steps = once per vector step
    "TAU": 0.01,  # for soft update of target parameters
    "POLICY_FREQ": 2,  # MATD3's policy delay d
    "POP_SIZE": 1,  # a population of one
    "AGENT_IDS": env.agents,
}
NET_CONFIG = {  # the guide's, plus LayerNorm after every hidden layer
    "speaker_0": {"encoder_config": {"hidden_size": [64, 64], "activation": "ReLU", "layer_norm": True},
                  "head_config": {"hidden_size": [64], "layer_norm": True}},
    "listener_0": {"encoder_config": {"hidden_size": [64, 64], "activation": "ReLU", "layer_norm": True},
                   "head_config": {"hidden_size": [64], "layer_norm": True}},
}
pop = create_population("MATD3", observation_spaces, action_spaces, NET_CONFIG, INIT_HP,
                        population_size=INIT_HP["POP_SIZE"], num_envs=NUM_ENVS, seed=SEED)
memory = MultiAgentReplayBuffer(INIT_HP["MEMORY_SIZE"], field_names=["state", "action", "reward", "next_state", "done"],
                                agent_ids=INIT_HP["AGENT_IDS"], seed=SEED)
agent = pop[0]
print(type(agent).__name__, "hyperparameters:", agent.hyperparameters())
print("policy_noise", agent.policy_noise, " noise_clip", agent.noise_clip)
print("trainable parameters:", {name: sum(p.numel() for p in net.parameters())
                                for name, net in agent.networks().items() if "targets" not in name})
"""),
md(r"""
The warm-up doubles as our yardstick: while it fills the buffer we add up each episode's rewards, summed
over both agents as `agent.test` does (`sum_scores=True`), which is the score of a uniformly random
policy. The transitions are stored exactly as the training function stores them, with the true final
observation where a sub-env reset (`next_obs_for_buffer`, chapter 2).
"""),
code(r"""
rng = np.random.default_rng(SEED)
returns, running = [], np.zeros(NUM_ENVS)
obs, info = env.reset(seed=SEED)
for _ in range(WARMUP_STEPS // NUM_ENVS):
    action = {a: rng.uniform(0.0, 1.0, (NUM_ENVS, *env.single_action_space(a).shape)).astype(np.float32)
              for a in env.agents}
    next_obs, reward, termination, truncation, info = env.step(action)
    memory.save_to_memory(obs, action, reward, next_obs_for_buffer(next_obs, info), termination, is_vectorised=True)
    running += sum(np.asarray(reward[a], dtype=np.float64) for a in env.agents)
    finished = episode_dones(termination, truncation)
    returns += list(running[finished])
    running[finished] = 0.0
    obs = next_obs
RANDOM_SCORE = float(np.mean(returns))
print(f"replay buffer: {len(memory):,} random transitions")
print(f"random policy: {RANDOM_SCORE:.1f} +- {np.std(returns):.1f} over {len(returns)} episodes (summed over agents)")
"""),
md(r"""
Training. `verbose=False` keeps the cell's output to our own one line per evaluation, printed by the
`on_generation` callback (chapter 7 uses a live widget there). The run record goes to
`runs/05_matd3_speaker_listener/` next to this notebook. (This cell's output depends on the
quick/full knob.)
"""),
code(r"""
RUN_DIR = Path("runs") / "05_matd3_speaker_listener"
shutil.rmtree(RUN_DIR, ignore_errors=True)  # an existing run directory would be resumed, not replaced


def report(entry):
    member = entry["members"][0]
    print(f"evaluation {entry['generation']:2d}: {entry['global_steps']:>6,} env steps, "
          f"fitness {member['fitness']:7.2f}")


start = time.perf_counter()
pop, pop_fitnesses = train_multi_agent_off_policy(
    env,
    env_name="simple_speaker_listener_v4",
    algo="MATD3",
    pop=pop,
    memory=memory,
    INIT_HP=INIT_HP,
    net_config=NET_CONFIG,
    max_steps=TRAIN_STEPS,
    evo_steps=EVO_STEPS,
    eval_steps=None,
    eval_loop=2,  # each evaluation: 2 rounds x 8 sub-envs = 16 greedy episodes
    learning_delay=0,  # the buffer already holds the random warm-up
    target=None,
    tournament=None,  # a population of one: no selection ...
    mutation=None,  # ... and no mutation: plain MATD3
    verbose=False,
    seed=SEED,
    run_dir=RUN_DIR,
    on_generation=report,
)
agent = pop[0]
print(f"{agent.steps[-1]:,} env steps, {agent.learn_counter:,} learn calls, "
      f"{len(agent.scores)} training episodes in {time.perf_counter() - start:.0f} s")
""", IGNORE),
md(r"""
The learning curve: the evaluations (greedy policy, no exploration noise) and the training episodes
(with exploration noise), smoothed over 40 episodes. Every 25-step episode of every sub-env ends at the
same vector step, so the $k$-th training episode ends after $200\,(\lfloor k / 8 \rfloor + 1)$ env steps
within its evaluation period. (Output depends on the knob.)
"""),
code(r"""
fitness_steps = np.cumsum([0] + [EVO_STEPS] * len(agent.fitness))[1:]
episodes = np.array(agent.scores)
period_episodes = EVO_STEPS // (25 * NUM_ENVS) * NUM_ENVS  # training episodes per evaluation period
k = np.arange(len(episodes))
episode_steps = (k // period_episodes) * EVO_STEPS + (k % period_episodes // NUM_ENVS + 1) * 25 * NUM_ENVS
window = min(40, len(episodes))
smoothed = np.convolve(episodes, np.ones(window) / window, mode="valid")

fig, ax = plt.subplots(figsize=(7, 3.8))
ax.plot(episode_steps, episodes, ".", color="tab:blue", alpha=0.15, markersize=3, label="training episode")
ax.plot(episode_steps[window - 1 :], smoothed, color="tab:blue", label=f"training, mean of {window} episodes")
ax.plot(fitness_steps, agent.fitness, "o-", color="tab:red", label="evaluation (greedy, 16 episodes)")
ax.axhline(RANDOM_SCORE, color="black", linestyle="--", label="random policy")
ax.set_ylim(max(-250, float(np.min(episodes)) - 5), 0)
ax.set_title("MATD3 on Simple Speaker Listener (one agent, 8 sub-envs)")
ax.set_xlabel("environment steps (steps)")
ax.set_ylabel("episode return, summed over agents")
ax.legend(fontsize="small", loc="lower right")
plt.show()
print("evaluations:", np.round(agent.fitness, 1))
""", IGNORE),
md(r"""
How to read it (the numbers are those of the stored full run). The first evaluation is far *worse*
than random ($-172$): a deterministic actor that follows a poor early critic pushes the listener in one
direction for all 25 steps, while random pushes mostly cancel out. From 10,000 steps on the greedy policy
beats the random one ($-76$) by a wide margin, and from 25,000 steps its evaluations lie between $-41$
and $-20$, around the guide's target of $-30$. The training returns stay below the evaluations because they include the
wide exploration noise. Single evaluations still jump around: a policy that is still changing can be
good at one evaluation and mediocre at the next, and 16 episodes are a noisy measurement (episode
returns of the random policy vary with a standard deviation of about 60). The guide runs two million
steps with a population; in chapter 7 tournament selection keeps whichever member evaluates well, which
damps these jumps. The guide's custom training loop has the same shape as what just ran;
`train_multi_agent_off_policy` is that loop, and its source is short enough to read:
"""),
code(r"""
source = inspect.getsource(train_multi_agent_off_policy)
body = source[source.index("    def train_member") :]  # skip the signature, docstring and set-up
print(body)
"""),
md(r"""
Finally the trained agent against the random policy on fresh episodes (`agent.test` appends to
`agent.fitness`), and a look at the listener's greedy actions: the share of each action component that
sits at a bound of $[0, 1]$ (the saturation described above), and how hard it actually pushes
($|\text{right} - \text{left}|$ and $|\text{up} - \text{down}|$, the force on the listener). Then the
environment's worker processes are closed. (Output depends on the knob.)
"""),
code(r"""
final = agent.test(env, loop=4)  # 4 rounds x 8 sub-envs = 32 greedy episodes
print(f"trained MATD3: {final:.1f}   random policy: {RANDOM_SCORE:.1f}   (summed return, higher is better)")

agent.set_training_mode(False)  # greedy actions, as in agent.test
obs, info = env.reset(seed=SEED + 1)
listener = []
for _ in range(25):
    action, _ = agent.get_action(obs, infos=info)
    listener.append(action["listener_0"])
    obs, reward, termination, truncation, info = env.step(action)
listener = np.concatenate(listener)  # (25 steps x 8 sub-envs, 5): no-op, left, right, down, up
at_bound = np.mean((listener < 0.01) | (listener > 0.99), axis=0)
print("share of greedy listener actions at a bound  [no-op, left, right, down, up]:", at_bound)
print(f"mean force |right - left| {np.abs(listener[:, 2] - listener[:, 1]).mean():.2f}, "
      f"|up - down| {np.abs(listener[:, 4] - listener[:, 3]).mean():.2f}   (a random policy: 0.33 each)")
env.close()
""", IGNORE),
md(r"""
In the stored run none of the trained listener's action components sits at a bound: the pre-activation
penalty keeps tanh in its sensitive range, where the critic's gradient can still move the action. The
difference from the saturated failure described above is that the listener pushes, with a mean force
(0.42 and 0.46) above a random policy's, and in the right direction, as the score ($-31.9$ on 32 fresh
episodes, against $-76$) shows.
"""),
md(r"""
## Summary

* Maximising over estimates with zero-mean errors is biased upwards; the bias grows with the number of
  choices, and bootstrapping multiplies a per-step bias by about $\gamma / (1 - \gamma)$.
* MATD3 = MADDPG + three hooks: `_target_q` takes the minimum of twin target critics, `_target_actions`
  adds clipped Gaussian noise to the target actions, `_update_actor_now` updates actors and targets every
  `policy_freq` calls. `critic_groups = ("critics", "critics_2")` makes MADDPG's loop train both critics.
* The guide's set-up (vector env, `INIT_HP`, `NET_CONFIG`, `create_population`, a shared replay buffer,
  `train_multi_agent_off_policy`) trains MATD3 on Simple Speaker Listener; with `tournament=None` and
  `mutation=None` it is plain training of one agent. For a short run, wide exploration for the listener
  (narrow for the speaker, whose message must mean something), a random warm-up, LayerNorm, a slower
  actor and a pre-activation penalty keep the critic informed and the actor out of saturation.

## Exercises

1. **Clipped double-Q target (code).** Write `td3_target(reward, done, next_q1, next_q2, gamma)` below. The
   check compares it with MATD3's target on three batches and names common mistakes.
2. **Why the minimum?** In the table of 5.1, the clipped estimator is biased *downwards*. Explain why an
   under-estimate does less harm than an over-estimate when an actor maximises the critic. When could
   it still hurt (think of an action whose value is under-estimated early and never tried again)?
3. **The smoothing scale.** For the speaker's `Box(0, 1, (3,))` actions and the defaults
   `policy_noise=0.2, noise_clip=0.5`, what is the largest change smoothing can make to one action
   component? Change `policy_noise` in section 5.3 and check your answer with the cell that measures it.
4. **No noise, still biased?** Run `fitted_q` of 5.2 with `reward_std=0.0`. The targets are now exact;
   is there still an over-estimate, and where does it come from?
5. **MADDPG instead.** Change `"MATD3"` to `"MADDPG"` in 5.4 (in `create_population` and in the training
   call). `INIT_HP` still contains `POLICY_FREQ`: what does `create_population` do with it, and why is
   that the guide's behaviour? (Read `marlkit.hpo.population.TRAINING_KEYS`.) Compare the learning curves.
6. **The guide's exploration.** In 5.4 set `"O_U_NOISE": True` and `"EXPL_NOISE": 0.1`, re-run the
   section and the look at the listener's actions at its end. Which action components end at a bound,
   and what does that mean for the force on the listener? Then try `"EXPL_NOISE": 1.2` for both agents:
   does the listener still react to the speaker's message? (Compare the scores with a listener that
   parks at the landmarks' centre, about $-30$.)
"""),
code(EXERCISES["td3_target"].stub),
md(r"""
The check: three batches, one with a critic output that carries a gradient, and a list of common
mistakes it recognises. It prints feedback and never raises.
"""),
code(r"""
from marlkit.exercises import check_td3_target

check_td3_target(td3_target)
"""),
]
# ==================================================================================================
# Chapter 06: IPPO, parameter sharing and asynchronous agents
# ==================================================================================================
CH06 = [
md(r"""
# 6. IPPO, parameter sharing and asynchronous agents

Independent PPO (de Witt et al., 2020) gives every agent its own PPO learner: a stochastic actor
$\pi(a \mid o)$ and a value critic $V(o)$, both seeing only the agent's own observation. It is the
guide's on-policy algorithm and the one that supports two of its multi-agent features: **parameter
sharing** within groups of homogeneous agents, and **asynchronous agents** that act at different times.
This chapter builds PPO's two core formulas by hand (the clipped surrogate and GAE), checks them
against marlkit, and then trains IPPO where each feature matters.

**Learning goals.** After this chapter you can

1. write PPO's clipped surrogate objective and say what the clip does to the gradient, and watch it
   limit how far one update moves a real policy;
2. compute GAE($\lambda$) advantages by hand across an episode boundary, distinguishing termination from
   truncation, and show that `marlkit.algorithms.rollout.compute_gae` gives the same numbers;
3. explain how a training loop that clears its done flags at episode ends leaks advantages from one
   episode into the previous one (as the reference library's on-policy loop does);
4. count the parameters IPPO saves by sharing networks within `<group_id>_<idx>` groups, and read the
   error marlkit gives for a per-agent `net_config` key;
5. train IPPO inside `AsyncAgentsWrapper` on an environment whose agents act at different rates and
   compare the learned values with the exact ones;
6. implement GAE yourself (exercise with a check).

The guide's sections this chapter covers: *Parameter Sharing*, *Asynchronous Agents* and *On-Policy
Training*.
"""),
md(r"""
**Quick or full.** Every experiment of this chapter runs in seconds, so quick and full mode (the
`MARLKIT_QUICK` knob) differ only in the number of training rollouts in sections 6.3 and 6.4.
"""),
code(r"""
import os

QUICK = os.environ.get("MARLKIT_QUICK", "0") == "1"  # the one knob: quick run (CI) or full run
SEED = 0  # every random number in this notebook derives from it
GAMMA = 0.9  # discount of the probe experiments
SHARED_ROLLOUTS = 8 if QUICK else 12  # IPPO rollouts on the grouped probe (6.3)
ASYNC_ROLLOUTS = 12 if QUICK else 20  # rollouts of the wrapped IPPO agent on the asynchronous probe (6.4)
""", PARAMETERS),
code(r"""
import inspect

import matplotlib.pyplot as plt
import numpy as np
import torch
from gymnasium import spaces

from marlkit import IPPO, AsyncAgentsWrapper, SyncPettingZooVecEnv
from marlkit.algorithms.rollout import compute_gae
from marlkit.envs.probes import PROBE_ENVS, AsyncAgentsEnv
from marlkit.exercises import EXERCISES, check_gae

torch.manual_seed(SEED)
torch.set_num_threads(1)  # tiny networks: one thread is fastest, and results do not depend on the core count
plt.rcParams["figure.dpi"] = 80
np.set_printoptions(precision=3, suppress=True)
NET = {"latent_dim": 32, "encoder_config": {"hidden_size": [32]}, "head_config": {"hidden_size": [32]}}
"""),
md(r"""
## 6.1 PPO's clipped surrogate

A policy-gradient step increases the log-probability of actions with a positive advantage $A$. PPO reuses
one batch of experience for several epochs, so after the first step the policy $\pi_\theta$ is no longer
the one that collected the data, $\pi_{\text{old}}$. The **probability ratio**

$$
\rho_t(\theta) = \frac{\pi_\theta(a_t \mid o_t)}{\pi_{\text{old}}(a_t \mid o_t)}
$$

corrects for that ($\mathbb{E}_{\pi_{\text{old}}}[\rho_t A_t]$ has the gradient of the new policy's
objective at $\theta_{\text{old}}$), but maximising $\rho_t A_t$ freely would move the policy far from the
data it was estimated on. PPO's **clipped surrogate** removes the incentive to push $\rho$ outside
$[1 - \epsilon, 1 + \epsilon]$:

$$
L^{\text{CLIP}}(\theta) = \mathbb{E}_t\Big[\min\big(\rho_t A_t,\ \mathrm{clip}(\rho_t, 1 - \epsilon, 1 + \epsilon)\, A_t\big)\Big].
$$

For $A > 0$ the objective grows with $\rho$ until $1 + \epsilon$ and is flat beyond (no gradient); for
$A < 0$ it is flat below $1 - \epsilon$. The minimum makes the objective a *pessimistic* bound: clipping
only ever removes improvement, never a loss. By hand:
"""),
code(r"""
def clipped_surrogate(ratio, advantage, eps=0.2):
    # PPO's per-sample objective (to maximise); IPPO minimises its negative mean.
    return np.minimum(ratio * advantage, np.clip(ratio, 1 - eps, 1 + eps) * advantage)


ratio = np.linspace(0.0, 2.0, 401)
fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharex=True)
for ax, advantage in zip(axes, (1.0, -1.0)):
    ax.plot(ratio, ratio * advantage, ":", color="gray", label=r"unclipped $\rho A$")
    ax.plot(ratio, clipped_surrogate(ratio, advantage), color="tab:blue", label=r"$L^{CLIP}$")
    for edge in (0.8, 1.2):
        ax.axvline(edge, color="gray", linewidth=0.7)
    ax.set_title(f"advantage A = {advantage:+.0f}, epsilon = 0.2")
    ax.set_xlabel(r"probability ratio $\rho = \pi_\theta / \pi_{old}$")
    ax.set_ylabel("objective (advantage units)")
    ax.legend(fontsize="small")
fig.suptitle("PPO's clipped surrogate for one sample")
plt.tight_layout()
plt.show()

# the gradient with respect to the ratio, at a few ratios: zero where the clip is active
r = torch.tensor([0.5, 0.9, 1.0, 1.1, 1.5], requires_grad=True)
for advantage in (1.0, -1.0):
    r.grad = None
    torch.minimum(r * advantage, r.clamp(0.8, 1.2) * advantage).sum().backward()
    print(f"A = {advantage:+.0f}: d L / d ratio at {r.detach().numpy()} = {r.grad.numpy()}")
"""),
md(r"""
**marlkit does the same.** IPPO's update is `IPPO.learn`, steps (1) to (5) as in the module's pseudocode.
Step (2), the clipped surrogate, written as a loss to *minimise*:
"""),
code(r"""
source = inspect.getsource(IPPO.learn)
start = source.index("# (2)")
print(source[start : source.index("# (4)")])
"""),
md(r"""
$\max(-A\rho, -A\,\mathrm{clip}(\rho))$ is $-\min(A\rho, A\,\mathrm{clip}(\rho))$, our `clipped_surrogate`
with the sign flipped (the advantages are normalised per minibatch first). The same numbers:
"""),
code(r"""
gen = torch.Generator().manual_seed(SEED)
ratio_t, adv_t = torch.rand(1000, generator=gen) * 2, torch.randn(1000, generator=gen)
clip_coef = 0.2
marlkit_loss = torch.max(-adv_t * ratio_t, -adv_t * ratio_t.clamp(1 - clip_coef, 1 + clip_coef)).mean()
by_hand = -clipped_surrogate(ratio_t.numpy(), adv_t.numpy(), clip_coef).mean()
print(f"marlkit's policy loss {marlkit_loss.item():.6f}   minus the mean of clipped_surrogate {by_hand:.6f}")
"""),
md(r"""
What the clip buys, on a real agent: one rollout of a probe where the right action depends on the
observation, then ten epochs of updates from it, by two copies of the same agent, one with the usual
$\epsilon = 0.2$ and one with the clip effectively removed. We measure how far each update moved the
policy, as the mean KL divergence $\mathrm{KL}(\pi_{\text{old}} \,\|\, \pi_{\text{new}})$ over the rollout's
observations.
"""),
code(r"""
def probe_env(name, ids=("agent_0", "agent_1"), num_envs=8, **kwargs):
    return SyncPettingZooVecEnv([lambda: PROBE_ENVS[name](agent_ids=ids, **kwargs) for _ in range(num_envs)])


def make_ippo(env, seed=SEED, **kwargs):
    torch.manual_seed(seed)  # network initialisation and action sampling
    hp = {"lr": 2e-3, "batch_size": 64, "ent_coef": 0.0, "gamma": GAMMA, "learn_step": 128, "net_config": NET}
    return IPPO([env.single_observation_space(a) for a in env.agents],
                [env.single_action_space(a) for a in env.agents], env.agents, seed=seed, **{**hp, **kwargs})


def collect(agent, env, obs, info, vector_steps):
    # The guide's on-policy loop body: act, step, store.
    for _ in range(vector_steps):
        action, log_prob, _, value = agent.get_action(obs, infos=info)
        next_obs, reward, termination, truncation, info = env.step(action)
        agent.store_transition(obs, action, log_prob, reward, termination, truncation, value, next_obs, info)
        obs = next_obs
    return obs, info


env = probe_env("obs_dependent_policy")
agent = make_ippo(env, lr=1e-2, update_epochs=10)
obs, info = env.reset(seed=SEED)
collect(agent, env, obs, info, 16)  # one rollout: 16 vector steps x 8 sub-envs x 2 agents
rollout_obs = agent.rollouts["agent"].stack().obs.reshape(-1, 2)
unclipped = agent.clone()  # the same networks, optimizer state and stored rollout
unclipped.rng.bit_generator.state = agent.rng.bit_generator.state  # ... and the same minibatch order
unclipped.clip_coef = 1e9  # no clipping

with torch.no_grad():
    old_logits = agent.actors["agent"](rollout_obs).dist.logits
for name, learner in (("clip 0.2", agent), ("no clip", unclipped)):
    losses = learner.learn()
    with torch.no_grad():
        new = learner.actors["agent"](rollout_obs).dist
        kl = torch.distributions.kl_divergence(torch.distributions.Categorical(logits=old_logits), new)
    print(f"{name:>8}: mean KL(old || new) {kl.mean():.4f}   clip_fraction {losses['clip_fraction']:.2f}   "
          f"approx_kl {losses['approx_kl']:.4f}")
""", IGNORE),
md(r"""
(Training numbers like these are excluded from CI's output comparison: they depend on floating-point
details of the machine.) With the same data, learning rate and number of epochs, the unclipped learner
moves its policy many times further: it keeps exploiting one rollout's advantage estimates long after
they stopped describing its own behaviour. The clipped learner stops pushing samples whose ratio left
$[0.8, 1.2]$ (`clip_fraction` of them).

## 6.2 GAE by hand, across an episode boundary

The advantage estimate PPO multiplies by $\rho$ is **GAE($\lambda$)** (Schulman et al., 2016). With the
TD error of step $t$,

$$
\delta_t = r_t + \gamma\, (1 - \text{terminated}_t)\, V(s'_t) - V(s_t),
$$

$$
A_t = \delta_t + \gamma \lambda\, (1 - \text{done}_t)\, A_{t+1}, \qquad \text{done}_t = \text{terminated}_t \lor \text{truncated}_t,
$$

where $s'_t$ is the observation step $t$ *really* led to. $\lambda = 0$ gives the one-step TD error,
$\lambda = 1$ the Monte Carlo return minus $V(s_t)$; values in between trade bias for variance. Two flags,
two roles:

* **terminated** (the task ended: no future) removes the bootstrap $\gamma V(s'_t)$;
* **truncated** (a time limit cut the episode: the future exists) keeps the bootstrap from the *final*
  observation, but both flags cut the recursion, because the next row of the rollout belongs to a new
  episode.

With a vector env's same-step autoreset, the observation returned after the last step of an episode is
already the *first* observation of the next one; the final one is in
`infos[agent]["final_observation"]` (chapter 2). A hand-built rollout of one sub-env, 6 steps, an
episode truncated by its time limit at $t = 2$, and the rollout ending mid-episode:
"""),
code(r"""
gamma, lam = 0.9, 0.8
rewards = np.array([1.0, 0.0, 2.0, 0.5, 0.0, 1.0])
values = np.array([2.0, 1.5, 1.0, 3.0, 2.5, 2.0])  # V(s_t) of the observation acted on
# V(s'_t): the next row's value, except at t = 2, where it is V of episode 1's *final* observation (0.7),
# and at t = 5, where it is V of the observation after the rollout (1.8)
next_values = np.array([1.5, 1.0, 0.7, 2.5, 2.0, 1.8])
terminated = np.zeros(6)
truncated = np.array([0.0, 0.0, 1.0, 0.0, 0.0, 0.0])


def my_gae(rewards, values, next_values, terminated, truncated, gamma, lam):
    advantages = np.zeros(len(rewards))
    next_advantage = 0.0
    for t in reversed(range(len(rewards))):
        delta = rewards[t] + gamma * (1 - terminated[t]) * next_values[t] - values[t]
        done = max(terminated[t], truncated[t])
        next_advantage = delta + gamma * lam * (1 - done) * next_advantage
        advantages[t] = next_advantage
    return advantages


by_hand = my_gae(rewards, values, next_values, terminated, truncated, gamma, lam)


def column(x, dtype=torch.float32):  # (T,) -> (T, 1): one column = one (agent, sub-env) pair
    return torch.as_tensor(x, dtype=dtype)[:, None]


marlkit = compute_gae(column(rewards), column(values), column(next_values), column(terminated, torch.bool),
                      column(truncated, torch.bool), torch.ones(6, 1, dtype=torch.bool), gamma, lam)[:, 0].numpy()
print("by hand:", by_hand)
print("marlkit:", marlkit)
print("equal:", np.allclose(by_hand, marlkit, atol=1e-6))
"""),
md(r"""
`compute_gae` is the same recursion, vectorised over columns (one per agent and sub-env) and able to
step over rows where an agent did not act (section 6.4 needs that):
"""),
code(r"""
print(inspect.getsource(compute_gae))
"""),
md(r"""
### How cleared done flags leak advantages

Many PPO implementations (CleanRL's, and the reference library's IPPO) store a flag $d_t$ meaning "the
episode ended *before* observation $t$" and bootstrap from the next row of the rollout:

$$
\delta_t = r_t + \gamma (1 - d_{t+1}) V(s_{t+1}) - V(s_t), \qquad A_t = \delta_t + \gamma\lambda (1 - d_{t+1}) A_{t+1}.
$$

Two things follow. A truncated episode is treated as terminated (no bootstrap from its final
observation, which the rollout does not have). And everything depends on $d_{t+1}$ reaching the
rollout. The reference library's multi-agent on-policy loop (`train_multi_agent_on_policy` in AgileRL)
resets its `done` flags to zeros for *every* sub-env whenever any sub-env finishes an episode, and only
then stores them with the next step. The flag that should mark the boundary never reaches the rollout;
in Simple Speaker Listener, where every sub-env ends at step 25, the stored flags are always zero. Our
rollout, computed that way, with the flag kept and with it cleared:
"""),
code(r"""
def next_row_gae(rewards, values, last_value, dones_before, gamma, lam):
    # The 'done before observation t' convention: bootstrap from values[t + 1], cut where dones_before[t + 1].
    T = len(rewards)
    values_next = np.append(values[1:], last_value)
    not_done_next = 1.0 - np.append(dones_before[1:], 0.0)  # the rollout ends mid-episode
    advantages, next_advantage = np.zeros(T), 0.0
    for t in reversed(range(T)):
        delta = rewards[t] + gamma * not_done_next[t] * values_next[t] - values[t]
        next_advantage = delta + gamma * lam * not_done_next[t] * next_advantage
        advantages[t] = next_advantage
    return advantages


flag_kept = next_row_gae(rewards, values, 1.8, np.array([0, 0, 0, 1.0, 0, 0]), gamma, lam)
flag_cleared = next_row_gae(rewards, values, 1.8, np.zeros(6), gamma, lam)
print(f"{'t':>2} {'episode':>8} {'marlkit':>9} {'flag kept':>10} {'flag cleared':>13}")
for t in range(6):
    print(f"{t:>2} {1 if t < 3 else 2:>8} {marlkit[t]:>9.3f} {flag_kept[t]:>10.3f} {flag_cleared[t]:>13.3f}")
"""),
md(r"""
Episode 2 (rows 3 to 5) is the same everywhere: nothing after it in the rollout. In episode 1:

* **flag kept**: only row 2 differs: the truncated step loses its bootstrap $\gamma V(\text{final}) =
  0.9 \times 0.7$ and is treated as if the episode had terminated;
* **flag cleared**: row 2 bootstraps from $V(s_3) = 3.0$, the value of the *next* episode's first
  observation, and the recursion runs on, so rows 0 to 2 all inherit episode 2's advantages
  ($\gamma\lambda A_3$, discounted further for earlier rows). Actions of one episode are credited with what
  happened in the next one, which no action of episode 1 could influence.

marlkit's rollout stores, for every transition, its true next observation (the final one after an
autoreset) and both flags (`marlkit/algorithms/rollout.py`), so each row's $\delta_t$ is self-contained and
no flag has to survive a loop iteration. The library's own test builds a rollout of two sub-envs through
a termination and a truncation and checks `IPPO.advantages` against hand-computed values
(`tests/test_ippo.py`).

## 6.3 Parameter sharing within groups

The guide's convention (chapter 1): agents `<group_id>_<idx>` with the same group are homogeneous and
interchangeable. IPPO exploits that: **one actor and one critic per group**, trained on the experience
of every member. With $N$ members the group's networks see $N$ times as many decisions per env step,
and there are $N$ times fewer parameters to learn. The guide's example, `bob_0, bob_1` observing 16
numbers and `fred_0, fred_1` observing 32, with its per-group `net_config`:
"""),
code(r"""
agent_ids = ["bob_0", "bob_1", "fred_0", "fred_1"]
observation_spaces = [spaces.Box(-1, 1, (16,)), spaces.Box(-1, 1, (16,)), spaces.Box(-1, 1, (32,)),
                      spaces.Box(-1, 1, (32,))]
action_spaces = [spaces.Discrete(2)] * 4
entry = {"latent_dim": 32, "encoder_config": {"hidden_size": [32], "activation": "ReLU"},
         "head_config": {"hidden_size": [32]}}
big_entry = {"latent_dim": 32, "encoder_config": {"hidden_size": [64, 64], "activation": "ReLU"},
             "head_config": {"hidden_size": [32]}}
per_group = {"bob": entry, "fred": big_entry}


def count(module):
    return sum(p.numel() for p in module.parameters())


shared = IPPO(observation_spaces, action_spaces, agent_ids, net_config=per_group, seed=SEED)
print("networks with sharing:", {name: count(net) for name, net in shared.networks().items()})
total_shared = sum(count(net) for net in shared.networks().values())
"""),
md(r"""
Without sharing, every agent would have its own copy of its group's actor and critic. IPPO always shares
within groups, so to build the unshared version we give every agent a name without an `_<idx>` suffix:
each is then a group of its own (`group_id("bob0") == "bob0"`), configured by its own entry.
"""),
code(r"""
lone_ids = [a.replace("_", "") for a in agent_ids]  # bob0, bob1, fred0, fred1: four groups of one
per_agent = {lone: per_group[a.rsplit("_", 1)[0]] for lone, a in zip(lone_ids, agent_ids)}
unshared = IPPO(observation_spaces, action_spaces, lone_ids, net_config=per_agent, seed=SEED)
total_unshared = sum(count(net) for net in unshared.networks().values())
print("networks without sharing:", {name: count(net) for name, net in unshared.networks().items()})
print(f"parameters: {total_unshared:,} without sharing, {total_shared:,} with "
      f"({total_unshared / total_shared:.1f}x fewer)")
"""),
md(r"""
By hand: an MLP layer from $m$ to $n$ units has $mn + n$ parameters. Bob's actor: encoder $16 \to 32 \to 32$
(latent), head $32 \to 32 \to 2$ logits, so $(16\cdot32 + 32) + (32\cdot32 + 32) + (32\cdot32 + 32) + (32\cdot2 + 2)
= 2{,}722$; its critic has one output instead of two, $2{,}689$.
"""),
code(r"""
def mlp_params(widths):
    return sum(m * n + n for m, n in zip(widths[:-1], widths[1:]))


bob_actor = mlp_params([16, 32, 32]) + mlp_params([32, 32, 2])
bob_critic = mlp_params([16, 32, 32]) + mlp_params([32, 32, 1])
print("bob's actor by hand:", bob_actor, "  marlkit:", count(shared.actors["bob"]))
print("bob's critic by hand:", bob_critic, "  marlkit:", count(shared.critics["bob"]))
"""),
md(r"""
Sharing puts both members' experience into one rollout: the group's rollout has one column per
(member, sub-env) pair, `members x num_envs` decisions per vector step. On a probe with 4 sub-envs:
"""),
code(r"""
env4 = probe_env("obs_dependent_policy", ids=("bob_0", "bob_1", "fred_0"), num_envs=4)
sharing_agent = make_ippo(env4)
obs, info = env4.reset(seed=SEED)
collect(sharing_agent, env4, obs, info, 3)
for group, rollout in sharing_agent.rollouts.items():
    batch = rollout.stack()
    print(f"group {group!r}: members {rollout.agents}, rollout obs {tuple(batch.obs.shape)} = "
          f"(vector steps, members x sub-envs, obs size)")
losses = sharing_agent.learn()  # learns from them and clears the rollouts
"""),
md(r"""
Because networks are shared per group, a `net_config` entry for a single agent has no network of its own
to configure. The guide: *"we restrict users to pass in network configurations to the groups directly"*.
marlkit accepts a per-agent key only where it cannot disagree with the rest of its group: it names the
group's only member (as the guide's own IPPO example does with `speaker_0` and `listener_0`), or every
member gets the same config. Two members with different configs would need two networks; marlkit's error
says so, and what to write instead:
"""),
code(r"""
try:
    IPPO(observation_spaces, action_spaces, agent_ids, net_config={"bob_0": entry, "bob_1": big_entry, "fred": big_entry})
except ValueError as err:
    print("ValueError:", err)
"""),
md(r"""
Does a shared network still learn each member's own values? The observation-dependent policy probe with
`agent_0, agent_1` sharing one actor and critic: each agent sees its own random cue and is paid for
acting on it, so $V = 1$ under the optimal policy and the greedy action must equal the cue. (Output
depends on the knob.)
"""),
code(r"""
env = probe_env("obs_dependent_policy")
shared_learner = make_ippo(env)
obs, info = env.reset(seed=SEED)
for _ in range(SHARED_ROLLOUTS):
    obs, info = collect(shared_learner, env, obs, info, shared_learner.learn_step // env.num_envs)
    shared_learner.learn()
shared_learner.set_training_mode(False)
answers = PROBE_ENVS["obs_dependent_policy"]().expected(GAMMA)
print("networks:", list(shared_learner.networks()))
for name, ans in answers.items():
    obs_rows = torch.as_tensor(ans.obs)
    with torch.no_grad():
        v = shared_learner.critics["agent"](obs_rows).numpy()
        greedy = shared_learner.actors["agent"](obs_rows).mode().numpy()
    print(f"{name}: V {v} (expected {ans.values})   greedy {greedy} (optimal {ans.optimal_actions})")
""", IGNORE),
md(r"""
## 6.4 Asynchronous agents

In turn-based games, or when agents act at different frequencies, the guide's convention is that the
environment returns observations **only for the agents that act next**. marlkit's probe
`AsyncAgentsEnv` is the smallest such game: an episode lasts 4 env steps; the *fast* agent acts at
every step, the *slow* agent at steps 0 and 2 only. At each decision an agent sees a random cue (and
how many decisions it has left) and is paid 1 for acting on its cue; the fast agent is paid at once,
the slow one a step *later*, while it is waiting and has no observation. One episode of the raw
PettingZoo env:
"""),
code(r"""
raw = AsyncAgentsEnv(agent_ids=("fast_0", "slow_0"))
obs, infos = raw.reset(seed=SEED)
t = 0
while raw.agents:
    actions = {a: raw.optimal_action(a, o) for a, o in obs.items()}  # only the agents that observed act
    print(f"step {t}: observe {sorted(obs)}, act {actions}", end="")
    obs, rewards, terminations, truncations, infos = raw.step(actions)
    print(f" -> rewards {rewards}")
    t += 1
"""),
md(r"""
In a vector env the waiting agent's rows are *inactive*: `infos[agent]["active"]` is False and the
observation row holds a NaN placeholder (chapter 2). Plain IPPO assumes every agent that acted has a
next observation or is done; here the slow agent has neither after step 0, and IPPO refuses rather than
learn from a wrong transition:
"""),
code(r"""
async_env = SyncPettingZooVecEnv([lambda: AsyncAgentsEnv(agent_ids=("fast_0", "slow_0")) for _ in range(8)])
plain = make_ippo(async_env, learn_step=256)
obs, info = async_env.reset(seed=SEED)
print("active at reset:", {a: info[a]["active"][:4] for a in async_env.agents}, "(first 4 sub-envs)")
try:
    collect(plain, async_env, obs, info, 1)
except ValueError as err:
    print("ValueError:", err)
"""),
md(r"""
`AsyncAgentsWrapper` assembles each agent's transitions on the agent's **own clock**: a transition runs
from one of its decisions to its next one (or to the end of the episode), and rewards that arrive while
it waits are added to the decision they belong to. Discounting is then per decision of the agent, so the
slow agent's return is $r_1 + \gamma r_2$ over its two decisions, which is what `AsyncAgentsEnv.expected()`
assumes. The heart of `store_transition`, the three numbered steps of the module's pseudocode:
"""),
code(r"""
source = inspect.getsource(AsyncAgentsWrapper.store_transition)
print(source[source.index("            # 1.") : source.index("        self.agent.add_transitions")])
"""),
md(r"""
Training: the guide's on-policy loop with the wrapped agent in place of the agent (everything else,
`learn`, `clone`, `test`, hyperparameters, passes through to the IPPO agent inside). Then the learned
$V$ of every decision state of each agent against `expected()`, and against what discounting per *env
step* would give instead. (Output depends on the knob.)
"""),
code(r"""
torch.manual_seed(SEED)
base = IPPO([async_env.single_observation_space(a) for a in async_env.agents],
            [async_env.single_action_space(a) for a in async_env.agents], async_env.agents,
            net_config=NET, lr=2e-3, batch_size=64, ent_coef=0.0, gamma=GAMMA, gae_lambda=0.5, learn_step=256,
            seed=SEED)
wrapped = AsyncAgentsWrapper(base)
obs, info = async_env.reset(seed=SEED)
losses = []
for _ in range(ASYNC_ROLLOUTS):
    obs, info = collect(wrapped, async_env, obs, info, wrapped.learn_step // async_env.num_envs)
    losses.append(wrapped.learn()["value_loss"])
print(f"{ASYNC_ROLLOUTS} rollouts of {wrapped.learn_step} env steps; value loss {losses[0]:.3f} -> {losses[-1]:.4f}")
print("greedy test score (summed over both agents, best possible 4 + 2 = 6):", round(wrapped.test(async_env), 2))

wrapped.set_training_mode(False)
answers = AsyncAgentsEnv(agent_ids=("fast_0", "slow_0")).expected(GAMMA)
fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
for ax, (name, ans) in zip(axes, answers.items()):
    states = np.unique(ans.obs.argmax(1))  # one row per decision state (cue x decisions left)
    rows = [int(np.flatnonzero(ans.obs.argmax(1) == s)[0]) for s in states]
    with torch.no_grad():
        learned = base.critics[name.rsplit("_", 1)[0]](torch.as_tensor(ans.obs[rows])).numpy()
    left = states // 2 + 1  # decisions left, including this one
    period = 1 if name.startswith("fast") else 2
    per_env_step = np.array([sum(GAMMA ** (period * m + period - 1) for m in range(n)) for n in left])
    print(f"{name}: decisions left {left}")
    print(f"{'':8}learned V {learned}\n{'':8}expected  {ans.values[rows]}\n{'':8}per env step {per_env_step}")
    x = np.arange(len(states))
    ax.bar(x - 0.25, ans.values[rows], width=0.25, label="expected (own clock)")
    ax.bar(x, learned, width=0.25, label="learned")
    ax.bar(x + 0.25, per_env_step, width=0.25, label="if discounted per env step")
    ax.set_xticks(x, [f"cue {s % 2}\n{n} left" for s, n in zip(states, left)])
    ax.set_title(f"{name}: V of each decision state")
    ax.set_ylabel("value (discounted reward)")
    ax.legend(fontsize="x-small")
fig.suptitle("IPPO in AsyncAgentsWrapper on AsyncAgentsEnv: learned and exact values")
plt.tight_layout()
plt.show()
""", IGNORE),
md(r"""
The learned values match the own-clock answers, not the per-env-step ones: for the slow agent the two
differ by a factor $\gamma$ per decision, because its reward arrives one env step after it acts. A
wrapper that dropped the rewards paid while the agent waits would have taught the slow agent $V = 0$.

## Summary

* PPO's clipped surrogate $\min(\rho A, \mathrm{clip}(\rho, 1 \pm \epsilon) A)$ has no gradient that pushes
  the ratio beyond the clip range; on a real agent it keeps one rollout's updates close to the data's
  policy.
* GAE needs two flags: *terminated* removes the bootstrap, *terminated or truncated* cuts the recursion;
  the bootstrap of a truncated step uses the episode's final observation. A loop that loses the done
  flag at an episode boundary credits one episode with the next episode's advantages.
* IPPO shares one actor and one critic per `<group_id>_<idx>` group: $N$ members means $N$ times fewer
  parameters and $N$ times more decisions per network per env step; `net_config` must then be written
  per group.
* `AsyncAgentsWrapper` lets IPPO learn when agents act at different times, assembling transitions from
  decision to decision on each agent's own clock.

## Exercises

1. **GAE (code).** Implement `gae(...)` below (the statement is in its docstring); the check runs it on
   single- and multi-column rollouts with terminations and truncations and explains common mistakes.
2. **$\lambda$ at the extremes.** Show with `my_gae` that $\lambda = 0$ gives the TD errors $\delta_t$ and
   that $\lambda = 1$, in an episode that terminates inside the rollout, gives the discounted return minus
   $V(s_t)$.
3. **Leak size.** In the cleared-flag table, how does the error of row 0 depend on $\gamma\lambda$ and on
   the position of the boundary? What happens to it for $\lambda = 0$?
4. **Sharing with different spaces.** Give `bob_1` a `Box(-1, 1, (20,))` observation space and build the
   shared IPPO of 6.3. What does marlkit say, and why can two agents with different observation sizes not
   share one network?
5. **The slow agent's clock.** In `AsyncAgentsEnv(..., slow_agents=...)` make both agents of a group slow
   (`agent_ids=("agent_0", "agent_1", "agent_2"), slow_agents={"agent_1", "agent_2"}`) and predict the
   values `expected()` gives before computing them.
"""),
code(EXERCISES["gae"].stub),
code(r"""
check_gae(gae)
"""),
]
# ==================================================================================================
# Chapter 07: evolutionary hyperparameter optimisation
# ==================================================================================================
CH07 = [
md(r"""
# 7. Evolutionary hyperparameter optimisation

RL is notoriously sensitive to its hyperparameters, and a single run says little about whether a
learning rate was good or just lucky. The guide's answer is **evolutionary HPO**: train a *population*
of agents that share experience, and after every few thousand steps replace the weak ones by mutated
copies of the strong ones. Two operators do the work: **tournament selection** decides who survives,
**mutations** vary the survivors (their hyperparameters, their weights, even their architectures). This
chapter builds both by hand, checks them against `marlkit.hpo`, and then runs a short evolution on
Simple Speaker Listener, watched live and plotted from its run record.

**Learning goals.** After this chapter you can

1. run tournament selection by hand, reproduce `TournamentSelection` exactly, and compute the selection
   pressure of a tournament size;
2. apply each `Mutations` option to a real agent, read what `agent.mut` says, and verify that an
   architecture mutation keeps every network in step with its target network and optimizer;
3. explain how an `RLParameter` moves a hyperparameter (multiplicative steps, bounds, the integer rule)
   and the downward drift of its default factors;
4. choose mutation probabilities with the `MutationPanel` widget;
5. run `train_multi_agent_off_policy` with a population, tournament and mutations, watch it with
   `LiveTrainingView`, and read `plot_fitness`, `plot_hyperparameters` and `plot_family_tree`;
6. implement a tournament and a generation's parent selection (exercises with checks).

The guide's sections this chapter covers: *Evolutionary Hyperparameter Optimisation*, *Creating a
Population of Agents* and *Training Loop*.
"""),
md(r"""
**Quick or full.** `MARLKIT_QUICK=1` shrinks the evolutionary run of section 7.5 to three short
generations; the cells whose output depends on it are marked. Everything before it prints the same
numbers in both modes.
"""),
code(r"""
import os

QUICK = os.environ.get("MARLKIT_QUICK", "0") == "1"  # the one knob: quick run (CI) or full run
SEED = 0  # every random number in this notebook derives from it
POP_SIZE = 4  # population size, as in the guide
NUM_ENVS = 8  # sub-envs of the vector env
EVO_STEPS = 1_000 if QUICK else 2_400  # env steps each member trains per generation (a multiple of NUM_ENVS)
GENERATIONS = 3 if QUICK else 7  # generations of the evolutionary run in 7.5
WARMUP_STEPS = 1_000 if QUICK else 5_000  # random transitions the shared replay buffer starts with (7.5)
""", PARAMETERS),
code(r"""
import copy
import inspect
import math
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from marlkit import (
    AsyncPettingZooVecEnv,
    HyperparameterConfig,
    MultiAgentReplayBuffer,
    Mutations,
    RLParameter,
    TournamentSelection,
    create_population,
    make_speaker_listener,
    train_multi_agent_off_policy,
)
from marlkit.exercises import EXERCISES, check_select_parents, check_tournament_winner
from marlkit.plotting import plot_family_tree, plot_fitness, plot_hyperparameters
from marlkit.training.off_policy import next_obs_for_buffer
from marlkit.training.records import RunRecord
from marlkit.widgets import LiveTrainingView, MutationPanel, config_diff

torch.manual_seed(SEED)
torch.set_num_threads(1)  # tiny networks: one thread is fastest, and results do not depend on the core count
plt.rcParams["figure.dpi"] = 80
np.set_printoptions(precision=3, suppress=True)
"""),
md(r"""
## 7.1 Tournament selection

After every member has trained for `evo_steps` and been evaluated (`agent.test` appends to
`agent.fitness`), `TournamentSelection.select` builds the next generation:

```
score every agent by the mean of its last `eval_loop` fitness values
new_population = [clone(best agent)]                       # only when elitism=True
while len(new_population) < population_size:
    contestants = `tournament_size` agents drawn without replacement
    new_population.append(clone(best contestant, index=next fresh index))
```

**Selection pressure.** Rank the $N$ members from best ($r = 1$) to worst ($r = N$). A tournament of size
$k$, drawn without replacement, is won by the member of rank $r$ exactly when it is drawn and the other
$k - 1$ contestants all rank below it:

$$
P(\text{rank } r \text{ wins}) = \binom{N - r}{k - 1} \Big/ \binom{N}{k}.
$$

$k = 1$ is a uniform draw (no pressure); $k = N$ always picks the best. With the guide's $N = 4$, $k = 2$:
$P = \tfrac{3}{6}, \tfrac{2}{6}, \tfrac{1}{6}, 0$: the worst member is never chosen as a parent. marlkit's
own tournament, run 30,000 times on a population of 6, against the formula:
"""),
code(r"""
N, draws = 6, 30_000
scores = np.array([3.0, -1.0, 7.0, 0.5, 5.0, -4.0])  # member fitnesses; ranks: 7, 5, 3, 0.5, -1, -4
rank_of = np.argsort(np.argsort(-scores))  # 0 = best
fig, ax = plt.subplots(figsize=(7, 3.3))
for offset, k in zip((-0.27, 0.0, 0.27), (1, 2, 3)):
    selector = TournamentSelection(tournament_size=k, elitism=False, population_size=N, eval_loop=1, rand_seed=SEED)
    wins = np.bincount([rank_of[selector._tournament(scores)] for _ in range(draws)], minlength=N) / draws
    formula = np.array([math.comb(N - r, k - 1) / math.comb(N, k) for r in range(1, N + 1)])
    ax.bar(np.arange(1, N + 1) + offset, wins, width=0.25, label=f"k = {k} (marlkit)")
    ax.plot(np.arange(1, N + 1) + offset, formula, "k_", markersize=14)
    print(f"k = {k}: measured {np.round(wins, 3)}   formula {np.round(formula, 3)}")
ax.plot([], [], "k_", markersize=14, label="formula")
ax.set_title(f"Who wins a tournament: population of {N}, tournament size k")
ax.set_xlabel("rank of the member (1 = best fitness)")
ax.set_ylabel("probability of winning")
ax.legend(fontsize="small")
plt.show()
"""),
md(r"""
Now a whole generation by hand. Indices follow marlkit's (and AgileRL's) rule: the elite clone keeps its
index, every other new member gets a fresh one counting up from the largest index in use, so an index
never names two different agents. The random draws must come in the same order as marlkit's for the
results to match: one `rng.choice(N, size=k, replace=False)` per tournament.
"""),
code(r"""
def my_select(fitnesses, indices, tournament_size, elitism, rng):
    # Returns (parent index of each new member, index of each new member).
    scores = np.array(fitnesses)
    parents = [int(np.argmax(scores))] if elitism else []  # positions in the old population
    while len(parents) < len(scores):
        contestants = rng.choice(len(scores), size=tournament_size, replace=False)
        parents.append(int(contestants[np.argmax(scores[contestants])]))
    next_index = max(indices) + 1
    new_indices = [indices[parents[0]]] if elitism else []
    new_indices += list(range(next_index, next_index + len(parents) - len(new_indices)))
    return [indices[p] for p in parents], new_indices


sl = make_speaker_listener()
agent_ids = sl.possible_agents
observation_spaces = [sl.observation_space(a) for a in agent_ids]
action_spaces = [sl.action_space(a) for a in agent_ids]
NET_CONFIG = {"encoder_config": {"hidden_size": [32, 32]}, "head_config": {"hidden_size": [32]}}
INIT_HP = {"BATCH_SIZE": 128, "LR_ACTOR": 1e-3, "LR_CRITIC": 1e-3, "GAMMA": 0.95, "LEARN_STEP": 8, "TAU": 0.01,
           "POLICY_FREQ": 2, "MEMORY_SIZE": 100_000, "POP_SIZE": 6, "AGENT_IDS": agent_ids}
pop = create_population("MATD3", observation_spaces, action_spaces, NET_CONFIG, INIT_HP, population_size=6, seed=SEED)
for agent, fitness in zip(pop, [3.0, -1.0, 7.0, 0.5, 5.0, -4.0]):
    agent.fitness.append(fitness)  # as if agent.test had returned these

tournament = TournamentSelection(tournament_size=2, elitism=True, population_size=6, eval_loop=1, rand_seed=SEED)
elite, new_pop = tournament.select(pop)
mine = my_select([a.fitness[-1] for a in pop], [a.index for a in pop], 2, True, np.random.default_rng(SEED))
print("elite: agent", elite.index, "with fitness", elite.fitness[-1])
print("marlkit: parents", [child.lineage[-1][1] for child in new_pop],
      " new indices", [child.index for child in new_pop])
print("by hand: parents", mine[0], " new indices", mine[1])
print("lineage of each new member (generation, parent):", [child.lineage for child in new_pop])
"""),
md(r"""
The new members are independent clones: networks, optimizers, exploration noise, bookkeeping
(`agent.clone()`), each with its own random stream, so two clones of one parent explore differently.
Agent 5, the worst (fitness $-4$), has no offspring, as $P(\text{worst}) = 0$ predicts for $k = 2$; agent 3
had a chance ($\tfrac{2}{15}$ per tournament) and simply drew no wins.

## 7.2 Mutations, one option at a time

`Mutations` then varies the new population: each member undergoes at most one of five options, drawn
with the (normalised) probabilities given to the constructor, and `agent.mut` records which:

| option | what changes |
|---|---|
| `no_mutation` | nothing (`agent.mut == "None"`) |
| `architecture` | one network grows or shrinks: a layer (probability `new_layer_prob`) or some nodes; replayed on its target network |
| `parameters` | Gaussian noise on a random 10% of each actor weight matrix, std `mutation_sd` times that matrix's std |
| `activation` | the hidden activation of one network (and its target) |
| `rl_hp` | one hyperparameter of `agent.hp_config` moves by its grow or shrink factor |

Every option applied to a copy of the same MATD3 agent, with a seeded `Mutations`:
"""),
code(r"""
hp_config = HyperparameterConfig(
    lr_actor=RLParameter(min=1e-4, max=1e-2),
    lr_critic=RLParameter(min=1e-4, max=1e-2),
    batch_size=RLParameter(min=8, max=512, dtype=int),
    learn_step=RLParameter(min=2, max=200, dtype=int, grow_factor=1.5, shrink_factor=0.75),
)
base = create_population("MATD3", observation_spaces, action_spaces, NET_CONFIG, INIT_HP, hp_config,
                         population_size=1, seed=SEED)[0]
mutations = Mutations(no_mutation=0.2, architecture=0.2, new_layer_prob=0.5, parameters=0.2, activation=0.2,
                      rl_hp=0.2, mutation_sd=0.1, rand_seed=SEED)
print("normalised probabilities:", mutations.probabilities)


def mutate_and_report(option, agent):
    configs = {name: copy.deepcopy(net.config) for name, net in agent.networks().items()}
    weights = {name: {k: t.clone() for k, t in net.state_dict().items()} for name, net in agent.networks().items()}
    hyperparameters = agent.hyperparameters()
    agent.mut = mutations.apply(agent, option)
    print(f"option {option!r:>15} -> agent.mut = {agent.mut!r}")
    for name, net in agent.networks().items():
        for line in config_diff(configs[name], net.config):
            print(f"    {name}: {line}")
        old = weights[name]
        new = net.state_dict()
        if old.keys() == new.keys() and all(old[k].shape == new[k].shape for k in old):
            changed = sum(int((old[k] != new[k]).sum()) for k in old)
            if changed:
                total = sum(t.numel() for t in old.values())
                print(f"    {name}: {changed:,} of {total:,} numbers changed")
    for name, value in agent.hyperparameters().items():
        if value != hyperparameters[name]:
            print(f"    {name}: {hyperparameters[name]} -> {value}")
    return agent


mutated = {option: mutate_and_report(option, base.clone()) for option in
           ("None", "architecture", "parameters", "activation", "rl_hp")}
"""),
md(r"""
Reading it: the architecture mutation changed one trained network *and* its target network with the same
record, the parameter mutation touched only actor weight matrices (about 10% of their entries, never
biases or critics), the activation mutation changed one network and its twin, and the RL-hyperparameter
mutation moved one value within its bounds.

**Keeping networks in step.** A network and its target are soft-updated parameter by parameter
($t \leftarrow \tau s + (1 - \tau) t$), which needs identical shapes; the optimizer must hold the *new*
parameters. `agent.mutation_groups()` lists which networks must change together, and
`Mutations.architecture_mutation` replays the record on every twin, then rebuilds the optimizers
(keeping Adam's statistics for parameters whose shape did not change):
"""),
code(r"""
print(inspect.getsource(Mutations.architecture_mutation))
agent = mutated["architecture"]
print("mutation groups (trained network first, then its twins):", agent.mutation_groups()[:3], "...")
for trained, target in [g for g in agent.mutation_groups()]:
    same_shapes = all(p.shape == q.shape for p, q in zip(agent.networks()[trained].parameters(),
                                                          agent.networks()[target].parameters()))
    same_config = agent.networks()[trained].config == agent.networks()[target].config
    optimizer_params = {id(p) for g in agent.optimizers[trained].param_groups for p in g["params"]}
    network_params = {id(p) for p in agent.networks()[trained].parameters()}
    if not (same_shapes and same_config and optimizer_params == network_params):
        print("out of step:", trained)
print("every trained network has its target's architecture, and its optimizer holds its current parameters")
agent.soft_update_targets()  # would fail on mismatched shapes
print("soft_update_targets() ran")
"""),
md(r"""
A mutation that *adds* nodes or a layer is built to keep the network's function (new weights start at
zero where they feed existing units; chapter 3), so a mutated agent does not forget what it learned; a
removal cannot keep it exactly. And a learning-rate mutation must reach the optimizer, not just the
attribute: `set_hyperparameter` does both.
"""),
code(r"""
agent = base.clone()
agent.set_hyperparameter("lr_actor", 3e-3)
print("agent.lr_actor:", agent.lr_actor, "  actor optimizer lr:",
      {name: opt.param_groups[0]["lr"] for name, opt in agent.optimizers.items() if name.startswith("actors/")})
"""),
md(r"""
Applied to a whole population, `mutations.mutation(pop)` draws one option per member; with
`mutate_elite=False` member 0, the elite kept by tournament selection, is left alone.
"""),
code(r"""
evolved = Mutations(no_mutation=0.4, architecture=0.2, new_layer_prob=0.2, parameters=0.2, activation=0.0,
                    rl_hp=0.2, mutate_elite=False, rand_seed=SEED).mutation(new_pop)
for member in evolved:
    print(f"agent {member.index}: parent {member.lineage[-1][1]}, mut = {member.mut!r}")
"""),
md(r"""
## 7.3 `RLParameter` and `HyperparameterConfig`

An `RLParameter` holds no value (the value lives on the agent, `agent.lr_actor`); it says how the value
may move. One mutation multiplies by `grow_factor` or `shrink_factor`, each with probability $\tfrac12$,
and clips to `[min, max]`; integers always move by at least 1 (otherwise `round(2 * 1.2) == 2` would freeze
small values forever). By hand, against marlkit, drawing from identically seeded generators:
"""),
code(r"""
def my_mutate(value, p, rng):
    grow = rng.random() < 0.5
    new = value * (p.grow_factor if grow else p.shrink_factor)
    if p.dtype is int:
        new = round(new)
        if grow and new <= value:
            new = int(value) + 1
        elif not grow and new >= value:
            new = math.ceil(value) - 1
    return p.dtype(min(max(new, p.min), p.max))


for name, start in (("lr_actor", 1e-3), ("learn_step", 2), ("batch_size", 500)):
    p = hp_config[name]
    rng_mine, rng_marlkit = np.random.default_rng(SEED), np.random.default_rng(SEED)
    mine, theirs = [start], [start]
    for _ in range(8):
        mine.append(my_mutate(mine[-1], p, rng_mine))
        theirs.append(p.mutate(theirs[-1], rng_marlkit))
    shown = [f"{v:.3g}" if isinstance(v, float) else str(v) for v in theirs]
    print(f"{name:>10} {p.dtype.__name__:>5} in [{p.min:g}, {p.max:g}]: {' -> '.join(shown)}   "
          f"by hand equal: {mine == theirs}")
"""),
md(r"""
**Drift.** A grow followed by a shrink multiplies by $1.2 \times 0.8 = 0.96$, so repeated mutation pushes
values *down*: the expected change of $\ln x$ per mutation is $\tfrac12\ln 1.2 + \tfrac12 \ln 0.8 =
\tfrac12 \ln 0.96 \approx -0.020$. After $n$ mutations the median value is about $x_0\, 0.96^{n/2}$. With
`shrink_factor = 1 / grow_factor` there is no drift. In a real run selection pushes back (a member whose
learning rate drifted too low loses tournaments), but it is worth knowing which way the noise leans:
"""),
code(r"""
rng = np.random.default_rng(SEED)
n_mutations, n_paths = 100, 2_000
fig, ax = plt.subplots(figsize=(7, 3.3))
for label, param in (("grow 1.2, shrink 0.8 (default)", RLParameter(min=1e-8, max=1.0)),
                     ("grow 1.2, shrink 1/1.2", RLParameter(min=1e-8, max=1.0, shrink_factor=1 / 1.2))):
    paths = np.empty((n_paths, n_mutations + 1))
    paths[:, 0] = 1e-3
    for k in range(n_mutations):
        paths[:, k + 1] = [param.mutate(v, rng) for v in paths[:, k]]
    median = np.median(paths, axis=0)
    ax.plot(median, label=f"median of {n_paths:,} paths: {label}")
    print(f"{label:>32}: median after {n_mutations} mutations {median[-1]:.2e}")
ax.plot(1e-3 * 0.96 ** (np.arange(n_mutations + 1) / 2), "k:", label=r"$10^{-3} \cdot 0.96^{n/2}$")
ax.set_yscale("log")
ax.set_title("Repeated mutation of lr_actor = 1e-3 (no selection)")
ax.set_xlabel("number of rl_hp mutations n")
ax.set_ylabel("learning rate")
ax.legend(fontsize="small")
plt.show()
print(f"by hand: 1e-3 * 0.96 ** 50 = {1e-3 * 0.96 ** 50:.2e}")
"""),
md(r"""
A `HyperparameterConfig` names the agent attributes that may be mutated. It is checked against the
algorithm when the population is created, so a typo fails at once instead of hours into a run, and it
travels with the run record as plain data:
"""),
code(r"""
print(hp_config.names())
print(hp_config.to_dict()["learn_step"])
try:
    create_population("MATD3", observation_spaces, action_spaces, NET_CONFIG, INIT_HP,
                      HyperparameterConfig(lr_actr=RLParameter(min=1e-4, max=1e-2)), population_size=1)
except ValueError as err:
    print("ValueError:", err)
"""),
md(r"""
## 7.4 Choosing mutation probabilities with a widget

`MutationPanel` shows the `Mutations` options as sliders and what `Mutations` makes of them (it
normalises the five option probabilities to sum to 1); its button previews one mutation on a copy of the
network or agent it was given. Its `.value` is the keyword arguments of `Mutations`. We start it at the
guide's values. (In the static book the widget appears as its text summary.)
"""),
code(r"""
panel = MutationPanel(network=base, seed=SEED, no_mutation=0.4, architecture=0.2, new_layer_prob=0.2,
                      parameters=0.2, activation=0.0, rl_hp=0.2, mutation_sd=0.1)
panel
"""),
md(r"""
The controls are ordinary `ipywidgets`, so code can do what a click does: here, one preview (the
button), then the keyword arguments that build the `Mutations` of the run below.
"""),
code(r"""
panel.preview()
print(panel.summary())
print()
print("Mutations(**panel.value):", panel.value)
print("the guide's MUT_P:", panel.mut_p)
"""),
md(r"""
## 7.5 A short evolutionary run on Simple Speaker Listener

Everything together, as in the guide: a vector env, a population of `POP_SIZE` MATD3 agents with an
`hp_config`, one replay buffer the whole population fills and samples, `TournamentSelection` and
`Mutations`, and `train_multi_agent_off_policy`. Each generation every member trains `EVO_STEPS` env
steps, and `max_steps` is each member's budget (as in the guide), so `max_steps = EVO_STEPS * GENERATIONS`
gives `GENERATIONS` generations. A run this
short is not meant to solve the task (chapter 8 does, with the preset's longer run); the point is to
watch the machinery. The set-up is chapter 5's (per-agent Gaussian noise, LayerNorm, a slower actor, and
a replay buffer that starts with random transitions). `LiveTrainingView` is passed as `on_generation`: in a live notebook it
redraws the population's fitness after every generation.
"""),
code(r"""
env = AsyncPettingZooVecEnv([lambda: make_speaker_listener() for _ in range(NUM_ENVS)])
env.reset(seed=SEED)
INIT_HP = {"BATCH_SIZE": 128, "O_U_NOISE": False, "EXPL_NOISE": {"speaker_0": 0.1, "listener_0": 1.2},
           "MEAN_NOISE": 0.0, "THETA": 0.15, "DT": 0.01, "LR_ACTOR": 1e-4, "LR_CRITIC": 1e-3, "GAMMA": 0.95,
           "MEMORY_SIZE": 100_000, "LEARN_STEP": 8, "TAU": 0.01, "POLICY_FREQ": 2, "POP_SIZE": POP_SIZE,
           "AGENT_IDS": env.agents}
NET_CONFIG = {"encoder_config": {"hidden_size": [64, 64], "layer_norm": True},
              "head_config": {"hidden_size": [64], "layer_norm": True}}
hp_config = HyperparameterConfig(
    lr_actor=RLParameter(min=1e-4, max=1e-2),
    lr_critic=RLParameter(min=1e-4, max=1e-2),
    batch_size=RLParameter(min=32, max=512, dtype=int),
    learn_step=RLParameter(min=4, max=64, dtype=int, grow_factor=1.5, shrink_factor=0.75),
)
pop = create_population("MATD3", [env.single_observation_space(a) for a in env.agents],
                        [env.single_action_space(a) for a in env.agents], NET_CONFIG, INIT_HP, hp_config,
                        population_size=POP_SIZE, num_envs=NUM_ENVS, seed=SEED)
memory = MultiAgentReplayBuffer(INIT_HP["MEMORY_SIZE"], ["state", "action", "reward", "next_state", "done"],
                                env.agents, seed=SEED)
rng = np.random.default_rng(SEED)  # the random warm-up of chapter 5
obs, info = env.reset(seed=SEED)
for _ in range(WARMUP_STEPS // NUM_ENVS):
    action = {a: rng.uniform(0.0, 1.0, (NUM_ENVS, *env.single_action_space(a).shape)).astype(np.float32)
              for a in env.agents}
    next_obs, reward, termination, truncation, info = env.step(action)
    memory.save_to_memory(obs, action, reward, next_obs_for_buffer(next_obs, info), termination, is_vectorised=True)
    obs = next_obs
tournament = TournamentSelection(tournament_size=2, elitism=True, population_size=POP_SIZE, eval_loop=1,
                                 rand_seed=SEED)
mutations = Mutations(**panel.value, rand_seed=SEED)
view = LiveTrainingView()
view
"""),
code(r"""
RUN_DIR = Path("runs") / "07_evolution_speaker_listener"
shutil.rmtree(RUN_DIR, ignore_errors=True)  # an existing run directory would be resumed, not replaced
pop, pop_fitnesses = train_multi_agent_off_policy(
    env,
    env_name="simple_speaker_listener_v4",
    algo="MATD3",
    pop=pop,
    memory=memory,
    INIT_HP=INIT_HP,
    MUT_P=panel.mut_p,
    net_config=NET_CONFIG,
    max_steps=EVO_STEPS * GENERATIONS,  # env steps of each member
    evo_steps=EVO_STEPS,
    eval_loop=1,
    learning_delay=0,  # the buffer already holds the random warm-up
    tournament=tournament,
    mutation=mutations,
    verbose=False,
    seed=SEED,
    run_dir=RUN_DIR,
    on_generation=view,  # called with each generation's run-record line
)
env.close()
print(view.summary())
""", IGNORE),
md(r"""
The run record (`generations.jsonl`, one JSON line per generation, written *before* selection, so each
line describes the agents that were trained and scored) is all the plots need; it could equally be read
back from a finished or crashed run in another session. (The three figures depend on the knob.)
"""),
code(r"""
record = RunRecord.load(RUN_DIR)
print(f"{len(record)} generations in {RUN_DIR / 'generations.jsonl'}; the last one:")
for member in record.generations[-1]["members"]:
    hp = {k: (f"{v:.2e}" if isinstance(v, float) else v) for k, v in member["hyperparameters"].items()
          if k in hp_config}
    print(f"  agent {member['index']:>2} (parent {member['parent']}, mutation {member['mutation']!r}): "
          f"fitness {member['fitness']:.1f}, {hp}")
""", IGNORE),
code(r"""
plot_fitness(record)
""", IGNORE),
md(r"""
`plot_fitness`: a grey dot per member and generation, the best and mean of the population, and one thin
line per member of the *final* population traced back through its parents. Tournament selection gives
most members a new index each generation, so following an index would not follow an agent; following
the `parent` field does.
"""),
code(r"""
plot_hyperparameters(record, names=hp_config.names())
""", IGNORE),
md(r"""
`plot_hyperparameters`: the same ancestries, one panel per mutable hyperparameter. A child starts as a
clone of its parent, so a line steps exactly where an `rl_hp` mutation hit one of that member's
ancestors. Lines that coincide share their ancestors: in a run this short the whole final population
typically descends from one member a few generations back, as the family tree below shows.
"""),
code(r"""
plot_family_tree(record)
""", IGNORE),
md(r"""
`plot_family_tree`: one node per member and generation (colour: fitness), an edge from each member to its
parent, thick where the elite survived unchanged; the labels read `index: mutation`. Members with no
edges out of them were not selected as parents.

## Summary

* `TournamentSelection` keeps the elite and fills the population with winners of size-$k$ tournaments; rank
  $r$ of $N$ wins with probability $\binom{N-r}{k-1}/\binom{N}{k}$, and elite clones keep their index while
  other members get fresh ones.
* `Mutations` applies at most one of five options per member and records it in `agent.mut`; architecture
  mutations are replayed on every twin network and the optimizers are rebuilt, so targets and
  optimizers stay consistent.
* `RLParameter` moves a value by multiplicative steps within bounds; the default factors drift downwards
  by $0.96$ per grow-shrink pair.
* `MutationPanel.value` feeds `Mutations(**value)`; `LiveTrainingView` is an `on_generation` callback;
  `plot_fitness`, `plot_hyperparameters` and `plot_family_tree` read the run record.

## Exercises

1. **One tournament (code).** Implement `tournament_winner(fitnesses, contestants)` below.
2. **A generation's parents (code).** Implement `select_parents(fitnesses, draws, elitism)` with your
   `tournament_winner`.
3. **Pressure.** For $N = 8$, which tournament size makes the best member win half of all tournaments?
   Which makes the median member lose more often than it wins?
4. **Drift, measured.** Read the full run's `generations.jsonl` and count the `rl_hp` mutations per lineage.
   Is the default factors' downward drift visible in a run this short? Explain with the numbers of 7.3.
5. **Elitism.** Rerun 7.5 with `elitism=False`. What happens to the best fitness from one generation to
   the next, and why?
6. **Mutating the elite.** `Mutations` defaults to `mutate_elite=True`, as in the guide. Argue for and
   against mutating the elite, then compare two short runs.
"""),
code(EXERCISES["tournament_winner"].stub),
code(r"""
check_tournament_winner(tournament_winner)
"""),
code(EXERCISES["select_parents"].stub),
code(r"""
check_select_parents(select_parents)
"""),
]


# ==================================================================================================
# writing the notebooks
# ==================================================================================================
CHAPTERS = {
    "05": ("05_matd3_speaker_listener.ipynb", "matd3", CH05),
    "06": ("06_ippo_sharing_async.ipynb", "ippo", CH06),
    "07": ("07_evolutionary_hpo.ipynb", "evolution", CH07),
}
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
LANGUAGE_INFO = {
    "codemirror_mode": {"name": "ipython", "version": 3},
    "file_extension": ".py",
    "mimetype": "text/x-python",
    "name": "python",
    "nbconvert_exporter": "python",
    "pygments_lexer": "ipython3",
}


def build(slug: str, cells: list[tuple[str, str, tuple[str, ...]]]) -> nbformat.NotebookNode:
    """A notebook of ``cells`` with stable cell ids ``<slug>-NN`` and clean metadata, no outputs."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = nbformat.from_dict({"kernelspec": KERNELSPEC, "language_info": LANGUAGE_INFO})
    for number, (kind, source, tags) in enumerate(cells):
        source = source.strip("\n")
        cell = nbformat.v4.new_markdown_cell(source) if kind == "markdown" else nbformat.v4.new_code_cell(source)
        cell.id = f"{slug}-{number:02d}"
        if tags:
            cell.metadata["tags"] = list(tags)
        nb.cells.append(cell)
    return nb


def main(argv: list[str]) -> int:
    for key in argv or list(CHAPTERS):
        filename, slug, cells = CHAPTERS[key[:2]]
        nb = build(slug, cells)
        nbformat.validate(nb)
        nbformat.write(nb, NOTEBOOKS / filename)
        print(f"wrote notebooks/{filename} ({len(cells)} cells)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
