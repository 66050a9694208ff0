"""Write chapters 08 and 09 (the two complete evolutionary runs) from the cell sources below.

    .venv/bin/python notebooks/_build_08_09.py                  # write both notebooks, without outputs
    .venv/bin/python notebooks/_build_08_09.py --markdown-only  # refresh only the prose of the executed ones

Then run them in full mode and store the outputs with ``notebooks/_execute.py`` (the Space Invaders
chapter trains for about 25 minutes in one cell, longer than ``_execute.py``'s default cell timeout)::

    .venv/bin/python -c "import sys; sys.path.insert(0, 'notebooks'); from pathlib import Path; \\
        from _execute import execute; \\
        print(execute(Path('notebooks/09_space_invaders_maddpg.ipynb').resolve(), timeout=3600))"

The prose quotes numbers of the stored full runs (env steps, wall time, evaluation results). Those are
known only after the runs, so ``--markdown-only`` replaces the markdown cells of an executed notebook
and leaves its code cells and outputs alone; it refuses if a code cell differs from this file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from marlkit.exercises import EXERCISES  # the exercises' official stubs

NOTEBOOKS = Path(__file__).resolve().parent
IGNORE = ["nbval-ignore-output"]  # output depends on MARLKIT_QUICK or on timing


def md(source: str):
    return new_markdown_cell(source.strip("\n"))


def code(source: str, tags: list[str] | None = None):
    cell = new_code_cell(source.strip("\n"))
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


# ==================================================================================================
# 08: Simple Speaker Listener
# ==================================================================================================
CH08 = [
    md(r"""
# 8. A complete evolutionary run: Simple Speaker Listener

The previous chapters built every piece on its own: vectorised environments, networks configured with
`net_config`, the replay buffer, MADDPG and MATD3, tournament selection and mutations. This chapter puts
them together the way the guide does and runs them for real: a population of four MATD3 agents learns
Simple Speaker Listener, for at most the preset's 50,000 environment steps per member (200,000 in all)
and until every member has reached the guide's target, while evolution tunes their learning rates, batch
sizes and learning frequencies. Then we read what came out: the fitness curve,
the hyperparameters evolution chose, the family tree, the elite's checkpoint, and a fair comparison of
the elite with a random policy.

**Learning goals.** After this chapter you can

1. set up a complete evolutionary off-policy run in the guide's words (`INIT_HP`, `NET_CONFIG`,
   `hp_config` with `RLParameter`, `create_population`, `MultiAgentReplayBuffer`, `TournamentSelection`,
   `Mutations`) from a preset of plain dictionaries;
2. train it with `train_multi_agent_off_policy`, watch it with `LiveTrainingView`, and say what the run
   leaves on disk;
3. read a run from its record: the fitness curve, the hyperparameter trajectories, the family tree;
4. save, reload and check an elite checkpoint that holds only tensors and plain data
   (`torch.load(..., weights_only=True)`);
5. evaluate a trained team honestly: fresh seeded episodes, enough of them, baselines, and the
   early-stopping rule checked rather than assumed.

The guide's sections this chapter covers: *Evolutionary Hyperparameter Optimisation*, *Creating a
Population of Agents*, *Experience Replay* and *Training Loop*.
"""),
    code(r'''
import os

QUICK = os.environ.get("MARLKIT_QUICK", "0") == "1"  # the one knob: quick run (CI) or full run
SEED = 0
PRESET = "speaker-listener"
# Full run: the preset as it stands (at most 50,000 env steps per member, 200,000 in all; 5,000 per member per
# generation; target -30). Quick run: 2,000 env steps per member (8,000 in all) in two generations of 1,000 steps
# per member (about a minute). max_steps is each member's budget, as in the guide.
QUICK_TRAIN = {"max_steps": 2_000, "evo_steps": 1_000}
EVAL_EPISODES = 100  # fresh episodes for the final comparison, the same in both modes
''', tags=["parameters"]),
    code(r'''
import tempfile
import time
from pathlib import Path
from pprint import pformat

import numpy as np
import torch
from IPython.display import display

from marlkit import (
    MATD3,
    HyperparameterConfig,
    MultiAgentReplayBuffer,
    Mutations,
    RLParameter,
    SyncPettingZooVecEnv,
    TournamentSelection,
    create_population,
    make_multi_agent_vect_envs,
    make_speaker_listener,
    train_multi_agent_off_policy,
)
from marlkit.algorithms.base import episode_dones
from marlkit.plotting import plot_family_tree, plot_fitness, plot_hyperparameters
from marlkit.presets import get_preset
from marlkit.training.evolution import target_reached
from marlkit.training.records import RunRecord
from marlkit.widgets import LiveTrainingView, count_parameters, describe_network

torch.manual_seed(SEED)
torch.set_num_threads(1)  # small MLPs: one thread is fastest, and leaves the other core to the env workers
np.set_printoptions(precision=3, suppress=True)
# Run directories go to a temporary folder here; pass run_dir="runs/..." to keep yours.
RUNS = Path(tempfile.mkdtemp(prefix="marlkit-ch08-"))
'''),
    md(r"""
## 8.1 The set-up, as plain data

A *preset* (`marlkit/presets.py`) is the guide's set-up written down as plain dictionaries:
`INIT_HP` (initial hyperparameters, the guide's upper-case names), `NET_CONFIG` (one network
architecture per agent), the bounds of the hyperparameters evolution may change, the mutation
probabilities `MUT_P`, and the arguments of the training loop. `get_preset(name, algo, quick)` returns a
deep copy, so editing it changes nothing else; `marlkit train --preset speaker-listener` on the command
line reads the same dictionaries.
"""),
    code(r'''
preset = get_preset(PRESET)  # the full run's settings; the quick run shortens the training loop below
ALGO = preset["algo"]
INIT_HP = preset["INIT_HP"]
NET_CONFIG = preset["NET_CONFIG"]
MUT_P = preset["MUT_P"]
TARGET = preset["train"]["target"]  # the early-stopping target, -30
print(f"ALGO = {ALGO!r}")
print("INIT_HP =", pformat(INIT_HP, sort_dicts=False))
print("NET_CONFIG =", pformat(NET_CONFIG, sort_dicts=False))
print("MUT_P =", pformat(MUT_P, sort_dicts=False))
'''),
    md(r"""
Reading a few entries: `LEARN_STEP: 8` with 8 sub-environments means one `learn` call per vectorised
step, each on a batch of `BATCH_SIZE: 128` transitions from a buffer of `MEMORY_SIZE: 100000`;
`POLICY_FREQ: 2` is MATD3's delayed actor update (the actors learn on every second call);
`O_U_NOISE: False` explores with Gaussian noise, and `EXPL_NOISE` gives each agent its own standard
deviation, relative to the half-range of its action box (the guide: Ornstein-Uhlenbeck noise of scale
0.1 for everyone). The listener's 1.2 clips most noisy actions to a bound, so it is pushed hard in random
directions and the critics see what every kind of move is worth. The speaker's 0.1 keeps the message it
sends while training close to the one it sends greedily, so the message can carry the goal; with 1.2 its
training messages would be random corners of the box and the listener would learn to ignore them.
`LR_ACTOR: 0.0001` (ten times below the critics' rate) and `layer_norm: True` in `NET_CONFIG` keep
training steady (chapter 5 has the details, `marlkit/presets.py` the measurements). The training loop's
settings (the last one depends on the quick/full knob):
"""),
    code(r'''
TRAIN = dict(preset["train"])
if QUICK:
    TRAIN.update(QUICK_TRAIN)
print("TRAIN =", pformat(TRAIN, sort_dicts=False))
generation_steps = INIT_HP["POP_SIZE"] * TRAIN["evo_steps"]
print(f"one generation = {INIT_HP['POP_SIZE']} members x {TRAIN['evo_steps']:,} env steps"
      f" = {generation_steps:,} env steps; at most {TRAIN['max_steps'] // TRAIN['evo_steps']} generations")
''', tags=IGNORE),
    md(r"""
`max_steps` is the budget of *each member*, as in the guide: 50,000 steps per member are ten
generations in which every member acts for 5,000 steps, 200,000 environment steps in all.
`eval_loop: 2` makes each evaluation two rounds of one greedy episode per sub-environment, 16 episodes:
one 8-episode score of a fixed policy scatters
with a standard deviation of about 8 on this task, enough to fail a good member or promote a lucky one.
The guide writes the hyperparameter bounds with `RLParameter`; here they are, written out as in the
guide, and compared with the preset's plain form:
"""),
    code(r'''
hp_config = HyperparameterConfig(
    lr_actor=RLParameter(min=1e-4, max=1e-2),
    lr_critic=RLParameter(min=1e-4, max=1e-2),
    batch_size=RLParameter(min=32, max=512, dtype=int),
    learn_step=RLParameter(min=4, max=64, dtype=int, grow_factor=1.5, shrink_factor=0.75),
)
print("the preset's hp_config:", preset["hp_config"])
print("same bounds as the preset:",
      hp_config.to_dict() == HyperparameterConfig.from_dict(preset["hp_config"]).to_dict())
'''),
    md(r"""
## 8.2 Environment, population, memory, tournament, mutations

Now the guide's code, line for line, fed from the preset. (`marlkit.cli.build_run` makes exactly these
calls; it is what `marlkit train` runs.) The vector environment is the guide's
`AsyncPettingZooVecEnv`: 8 copies of Simple Speaker Listener with continuous actions, each in its own
worker process.
"""),
    code(r'''
num_envs = TRAIN["num_envs"]
env = make_multi_agent_vect_envs(make_speaker_listener, num_envs=num_envs, continuous_actions=True)
env.reset(seed=SEED)
observation_spaces = [env.single_observation_space(agent) for agent in env.agents]
action_spaces = [env.single_action_space(agent) for agent in env.agents]
INIT_HP["AGENT_IDS"] = env.agents

pop = create_population(
    ALGO,
    observation_spaces,
    action_spaces,
    NET_CONFIG,
    INIT_HP,
    hp_config,
    population_size=INIT_HP["POP_SIZE"],
    num_envs=num_envs,
    seed=SEED,  # member i is seeded with SEED + i
)
memory = MultiAgentReplayBuffer(
    INIT_HP["MEMORY_SIZE"],
    field_names=["state", "action", "reward", "next_state", "done"],
    agent_ids=INIT_HP["AGENT_IDS"],
    seed=SEED,
)
tournament = TournamentSelection(
    tournament_size=TRAIN["tournament_size"],
    elitism=TRAIN["elitism"],
    population_size=INIT_HP["POP_SIZE"],
    eval_loop=TRAIN["eval_loop"],
    rand_seed=SEED,
)
mutations = Mutations(
    no_mutation=MUT_P["NO_MUT"],
    architecture=MUT_P["ARCH_MUT"],
    new_layer_prob=MUT_P["NEW_LAYER"],
    parameters=MUT_P["PARAMS_MUT"],
    activation=MUT_P["ACT_MUT"],
    rl_hp=MUT_P["RL_HP_MUT"],
    mutation_sd=MUT_P["MUT_SD"],
    rand_seed=SEED,
)

for agent_id, obs_space, act_space in zip(env.agents, observation_spaces, action_spaces):
    print(f"{agent_id:>10}: observation {obs_space}, action {act_space}")
print(f"population: {len(pop)} {ALGO} agents, indices {[agent.index for agent in pop]}")
for name, net in pop[0].networks().items():
    print(f"  agent 0 {name:<24} {count_parameters(net):>6,} parameters  {describe_network(net)}")
'''),
    md(r"""
Each MATD3 agent holds, per environment agent, an actor, *two* centralised critics (TD3's clipped double
Q) and a target copy of each: 12 networks. The centralised critics see both agents' observations and
actions (3 + 11 observation features and 3 + 5 action features). Every member starts with the
`INIT_HP` values; evolution will make them differ.

## 8.3 Training, with a live view

`train_multi_agent_off_policy` runs generations until each member has taken `max_steps` env steps or the target is
reached. In one generation each member in turn acts for `evo_steps` steps, saving every transition into
the buffer that the whole population shares and learning every `learn_step` steps; then every member is
evaluated (two greedy episodes in each sub-environment, `eval_loop=2`), the generation is written to the
run record, the best member is saved as `elite.pt`, and tournament selection and mutation make the next
population.

`LiveTrainingView` is the `on_generation` callback: in Jupyter it redraws the fitness plot and a table
after every generation. (The static copy of this page shows its final table, and the cell prints a text
summary.) The progress bar is off (`verbose=False`) because the view replaces it.
"""),
    code(r'''
view = LiveTrainingView()
view_display = display(view, display_id=True)
run_dir = RUNS / f"{PRESET}-{ALGO}"

start = time.perf_counter()
pop, pop_fitnesses = train_multi_agent_off_policy(
    env,
    env_name=PRESET,
    algo=ALGO,
    pop=pop,
    memory=memory,
    INIT_HP=INIT_HP,
    MUT_P=MUT_P,
    net_config=NET_CONFIG,
    max_steps=TRAIN["max_steps"],
    evo_steps=TRAIN["evo_steps"],
    eval_steps=TRAIN.get("eval_steps"),
    eval_loop=TRAIN["eval_loop"],
    learning_delay=TRAIN["learning_delay"],
    target=TARGET,
    tournament=tournament,
    mutation=mutations,
    save_elite=True,
    verbose=False,
    seed=SEED,
    run_dir=run_dir,
    on_generation=view,
)
wall_time = time.perf_counter() - start
env.close()
view_display.update(view)  # the static page keeps the final table

record = RunRecord.load(run_dir)
total_steps = record.generations[-1]["global_steps"]
print(f"{total_steps:,} env steps in {len(record)} generations, {wall_time / 60:.1f} min of wall time "
      f"({total_steps / wall_time:,.0f} env steps/s on this machine)")
print("files in the run directory:", sorted(p.name for p in run_dir.iterdir()))
''', tags=IGNORE),
    md(r"""
**The stored full run** took 120,000 environment steps in 6 generations and 2.5 minutes of wall time
(816 env steps/s, learning and evaluation included) on a 2-core CPU, then stopped early. The run is seeded and
reproducible: `marlkit train --preset speaker-listener --seed 0` on the command line gives exactly the
same fitness values. The run record (`generations.jsonl`, one JSON line per generation, and
`run.json`, the settings) is what every plot below is drawn from; it is also all you need to plot a
run that is still going or that crashed.

Did it reach the target? The rule that stops training early is strict: **every** member's mean over its
last 3 evaluations must be at least -30. We check it ourselves rather than trust the loop's exit:
"""),
    code(r'''
for agent in pop:
    print(f"agent {agent.index}: evaluations {np.round(agent.fitness[-3:], 2)} -> mean of the last 3 "
          f"{np.mean(agent.fitness[-3:]):7.2f}")
print(f"target {TARGET} reached by every member: {target_reached(pop, TARGET)}")
''', tags=IGNORE),
    md(r"""
**Yes.** After six generations every member's mean over its last 3 evaluations lies between -27.8
and -23.9, so the loop stopped at 120,000 of its 200,000 env steps (30,000 of 50,000 per member).
The means include evaluations a member inherited: a clone starts with its parent's fitness history, so
agent 16, two generations old,
is judged on two evaluations of its ancestors (agents 1 and 13) and one of its own. That is the rule
as intended (a lineage must stay good for three evaluations), but note what it measures: 16 training
episodes per evaluation, of members that were selected for scoring well. Section 8.6 checks the
result on fresh episodes.
"""),
    md(r"""
## 8.4 Reading the run

**Fitness.** Each grey dot is one member's evaluation; the thin lines follow the ancestry of each final
member back to generation 0; the thick lines are the population's best and mean.
"""),
    code(r'''
plot_fitness(record)
'''),
    md(r"""
The best fitness rises from -47.4 in generation 0 to -23.5 in generation 5, and the mean from -122.6
to -28.7. Early on, the mean's rise is mostly selection removing members whose policies drive the
listener away (agent 3 scored -293.4 in generation 0 and agent 6 -212.5 in generation 1, far below the
random policy's -78); from generation 2 on, every evaluation lies between -23.5 and -38.4 but one.
That one is instructive: agent 1, kept as the elite since generation 1, was hit by a parameter mutation at
the start of generation 4 (`Mutations(mutate_elite=True)`, the guide's default) and scored -50.3.
Elitism keeps the best member's *position*, not its weights. Each point is noisy: on the 100 fresh
episodes of section 8.6 the elite's returns have a standard deviation of about 22, so one evaluation
(16 episodes) has a standard error near 5. Differences between members smaller than that are mostly
luck.
"""),
    md(r"""
**Hyperparameters.** One panel per hyperparameter that evolution may change (the names of
`hp_config`), one step line per final member's ancestry: a value holds while the member trains, and
changes where an `rl_hp` mutation hit it.
"""),
    code(r'''
plot_hyperparameters(record, names=list(hp_config))
'''),
    code(r'''
final = record.generations[-1]
print(f"final population (generation {final['generation']}):")
for member in final["members"]:
    hps = ", ".join(f"{name}={member['hyperparameters'][name]:.3g}" for name in hp_config)
    print(f"  agent {member['index']}: fitness {member['fitness']:7.2f}  parent {member['parent']}, "
          f"last mutation {member['mutation']}: {hps}")
''', tags=IGNORE),
    md(r"""
**Family tree.** One node per member per generation, an edge from each member to its parent. Thick edges
mark the elite carried into the next generation under its own index (elitism keeps the best member
at position 0; with `Mutations(mutate_elite=True)`, the default, the elite can still be mutated, as the
labels show); each label reads `index: mutation`.
"""),
    code(r'''
plot_family_tree(record)
''', tags=IGNORE),
    md(r"""
Two things to read off this run. Evolution barely moved the hyperparameters: one `rl_hp` mutation
on agent 1 in generation 3 lowered `lr_critic` from 0.001 to 0.0008, and every final member inherited
it; the last rounds gave agent 18 a batch size of 102 and agent 13 a `learn_step` of 6; `lr_actor`
never changed in the surviving lineages (it starts at its lower bound, 1e-4, so a
shrinking step would not move it either). Six generations are too few to tune much. And selection
concentrates fast: agent 1, the best of generation 0, is an ancestor of every member from generation 4
on, and kept its index as the elite from generation 1 to generation 4.
"""),
    md(r"""
## 8.5 The elite checkpoint

With `save_elite=True` the loop saved the best member after every generation to `elite.pt`. A marlkit
checkpoint holds only tensors and plain Python data, so it loads with `torch.load(..., weights_only=True)`,
which refuses to run arbitrary code from a file (unlike a pickled object):
"""),
    code(r'''
checkpoint = torch.load(run_dir / "elite.pt", weights_only=True)
print("top-level keys:", sorted(checkpoint))
print("algo:", checkpoint["algo"])
print("networks:", sorted(checkpoint["networks"]))
print("each network entry:", sorted(checkpoint["networks"]["actors/speaker_0"]))
'''),
    code(r'''
print("hyperparameters:",
      {k: round(v, 5) if isinstance(v, float) else v for k, v in checkpoint["hyperparameters"].items()})
print("lineage (generation, parent index):", checkpoint["bookkeeping"]["lineage"])
print(f"file size: {(run_dir / 'elite.pt').stat().st_size / 1024:.0f} KiB")
''', tags=IGNORE),
    md(r"""
`MATD3.load` rebuilds the agent from it (architectures first, from each network's `config`, since
mutations may have changed them; then the weights, optimizers and bookkeeping). The reloaded elite must
act exactly like the member that was saved, the best member of the final population by its last
evaluation:
"""),
    code(r'''
elite = MATD3.load(run_dir / "elite.pt")
saved = pop[int(np.argmax([np.mean(agent.fitness[-TRAIN["eval_loop"]:]) for agent in pop]))]
elite.set_training_mode(False)  # greedy: no exploration noise
saved.set_training_mode(False)

with SyncPettingZooVecEnv([make_speaker_listener] * 8) as check_env:
    obs, info = check_env.reset(seed=SEED + 1)
actions_reloaded = elite.get_action(obs)[0]
actions_saved = saved.get_action(obs)[0]
print("reloaded elite == saved member, same index:", elite.index == saved.index)
print("same actions on 8 fresh observations:",
      all(np.array_equal(actions_reloaded[a], actions_saved[a]) for a in elite.agent_ids))
'''),
    md(r"""
## 8.6 How good is the elite, really?

The fitness values above are not a fair measure of the elite. Each is a single evaluation (16 episodes)
and the elite was *chosen* because its latest ones were the highest, so that number is biased upwards
(the winner's curse). A fair test plays fresh episodes the elite was not selected on, enough of them,
and the same episodes for every policy compared. We play 100 episodes, one per sub-environment of a vector
env seeded with a seed not used in training, with three policies:

* the **trained elite**, acting greedily;
* a **random policy**, uniform over each action box;
* **standing still**: all-zero actions (the listener does not move, the speaker says nothing), the
  simplest policy a trained team must beat;
* two hand-written listeners that steer with a damped push, $\mathrm{clip}(3\,d - v)$ towards a point
  $d$ (relative position, from the listener's own observation; $v$ its velocity). **Centre** heads for
  the centre of the three landmarks: the best a listener can roughly do *without* communication, since
  it does not know which landmark is the goal. **Told the goal** heads for the goal landmark, which it
  reads from the speaker's observation (the goal's colour): a team whose communication is perfect.

Both agents receive the same reward each step (minus the squared distance between the listener and
the target landmark), and an episode always lasts 25 steps (it is truncated, never terminated), so the
episode length cannot tell the policies apart; the return does.
"""),
    code(r'''
def play_episodes(policy, num_episodes, seed):
    """One episode in each of num_episodes sub-envs; returns (returns (E, num_agents), lengths (E,))."""
    with SyncPettingZooVecEnv([make_speaker_listener] * num_episodes) as eval_env:
        obs, info = eval_env.reset(seed=seed)
        returns = np.zeros((num_episodes, len(eval_env.agents)))
        lengths = np.zeros(num_episodes, dtype=int)
        playing = np.ones(num_episodes, dtype=bool)  # sub-envs still in their first episode
        while playing.any():
            obs, reward, termination, truncation, info = eval_env.step(policy(obs, info))
            returns[playing] += np.stack([np.nan_to_num(reward[a]) for a in eval_env.agents], -1)[playing]
            lengths[playing] += 1
            playing &= ~episode_dones(termination, truncation)
    return returns, lengths


def steer(target, velocity, gain=3.0):
    """Listener actions (B, 5) = [no-op, -x, +x, -y, +y] pushing towards target (B, 2), damped by velocity."""
    push = np.clip(gain * target - velocity, -1.0, 1.0)
    actions = np.zeros((len(push), 5), np.float32)
    actions[:, 2], actions[:, 1] = push[:, 0].clip(0), (-push[:, 0]).clip(0)
    actions[:, 4], actions[:, 3] = push[:, 1].clip(0), (-push[:, 1]).clip(0)
    return actions


def scripted(told_the_goal):
    """A hand-written team: the speaker says nothing; the listener steers to the centre or to the goal."""
    def policy(obs, info):
        listener = obs["listener_0"]  # (E, 11): velocity (2), the 3 landmarks relative to it (6), message (3)
        landmarks = listener[:, 2:8].reshape(-1, 3, 2)
        if told_the_goal:  # the speaker observes the goal's colour; its largest entry is the goal's index
            target = landmarks[np.arange(len(landmarks)), obs["speaker_0"].argmax(-1)]
        else:
            target = landmarks.mean(axis=1)
        return {"speaker_0": np.zeros((len(listener), 3), np.float32), "listener_0": steer(target, listener[:, :2])}
    return policy


spaces = dict(zip(elite.agent_ids, action_spaces))
rng = np.random.default_rng(SEED)
policies = {
    "trained elite": lambda obs, info: elite.get_action(obs, infos=info)[0],
    "random policy": lambda obs, info: {
        a: rng.uniform(s.low, s.high, (EVAL_EPISODES, *s.shape)).astype(np.float32) for a, s in spaces.items()},
    "standing still": lambda obs, info: {a: np.zeros((EVAL_EPISODES, *s.shape), np.float32) for a, s in spaces.items()},
    "centre": scripted(told_the_goal=False),
    "told the goal": scripted(told_the_goal=True),
}
EVAL_SEED = 12_345  # not used in training
results = {name: play_episodes(policy, EVAL_EPISODES, EVAL_SEED) for name, policy in policies.items()}

print(f"{'policy':<16}{'episodes':>9}{'mean summed return':>20}{'std':>7}{'min':>8}{'max':>8}{'mean length':>13}")
for name, (returns, lengths) in results.items():
    total = returns.sum(-1)  # summed over the two agents, as in training
    print(f"{name:<16}{len(total):>9}{total.mean():>20.2f}{total.std():>7.2f}{total.min():>8.2f}{total.max():>8.2f}"
          f"{lengths.mean():>13.1f}")
print("both agents always receive the same reward:",
      all(np.allclose(returns[:, 0], returns[:, 1]) for returns, _ in results.values()))
''', tags=IGNORE),
    md(r"""
Read against the baselines, on the same 100 episodes: the elite (-31.2) is far better than moving at
random (-77.9) or standing still (-70.6), and about as good as the hand-written centre listener
(-28.4): with a standard deviation of about 21 per episode, the difference of 2.8 is within one and a
half standard errors. That baseline explains the guide's target: -30 is about what a listener scores
when it parks at the centre of the landmarks, without knowing which one is the goal, while a team
whose communication worked would score near the told-the-goal listener's -12.8. So this run reached
the target the way the rule measures it, and a fresh test puts it *at* the target, not beyond: the
elite's training evaluations (-23.8 and -23.5) were flattered by selection. (The README evaluates the
four final members of this run on 1,000 fresh episodes: -30.2 to -31.7, against -29.1 for the centre
listener on the same episodes.)
What does the elite actually do? Its
actions in 4 fresh episodes (the listener's action is `[no-op, -x, +x, -y, +y]`; the environment
pushes it by $(a_2 - a_1,\; a_4 - a_3)$):
"""),
    code(r'''
with SyncPettingZooVecEnv([make_speaker_listener] * 4) as look_env:
    obs, info = look_env.reset(seed=EVAL_SEED)
actions = elite.get_action(obs)[0]
listener = actions["listener_0"]
print("goal colour in 4 episodes (the speaker's observation):", obs["speaker_0"].argmax(-1))
print("speaker's message in 4 episodes:\n", actions["speaker_0"])
with SyncPettingZooVecEnv([make_speaker_listener] * 16) as many_env:
    colours = np.unique(many_env.reset(seed=EVAL_SEED)[0]["speaker_0"], axis=0)  # the 3 goal colours (RGB)
print("speaker's message for each goal colour:")
for colour, message in zip(colours, elite.get_action({"speaker_0": colours})[0]["speaker_0"]):
    print(f"  goal colour {colour} (landmark {colour.argmax()}) -> message {message}")
print("listener's action in 4 episodes:\n", listener)
print("listener's push (x, y):\n", np.stack([listener[:, 2] - listener[:, 1], listener[:, 4] - listener[:, 3]], -1))
''', tags=IGNORE),
    md(r"""
The speaker sends a different message for each goal colour: the three rows differ from each other by
0.31 to 0.65 in their most different component, so the goal is in the message. The listener pushes at nearly
full force (most of its actions sit close to 0 or 1, a bang-bang controller) in a direction that depends
on what it observes. Its score says it does not yet use the message much: it plays about as well as the
centre listener. Listening is the harder half. The message is three numbers in the listener's
observation, and its critic must learn that *which* landmark pays depends on them. The guide's example
trains for 2,000,000 steps per member; exercise 6 is a place to start.
"""),
    md(r"""
## Summary

* A preset is the guide's set-up as plain dictionaries; the guide's code turns it into an environment,
  a population, a shared buffer, a tournament and a mutation operator, and `train_multi_agent_off_policy`
  runs the generations.
* A run leaves a record (`generations.jsonl`, `run.json`) from which the fitness curve, the hyperparameter
  trajectories and the family tree are drawn, and an elite checkpoint that loads with
  `weights_only=True`.
* Training fitness is a noisy, selected number. Judge a policy on fresh seeded episodes against
  baselines, and check a stopping rule instead of assuming it was met.

## Exercises

1. **The stopping rule (code).** Write `all_members_reached(fitness_histories, target, window=3)`, the
   early-stopping rule of section 8.3. The check compares your function with marlkit's
   `target_reached` on cases chosen to catch the usual mistakes (the best member instead of every
   member, the last evaluation instead of the mean of the window, `>` instead of `>=`).
2. **Seeds.** Run the quick mode with `SEED = 1` and `SEED = 2`. How much do the final best fitness
   and the elite's evaluation change? What does that say about comparing two settings with one run
   each?
3. **A population of one.** Set `INIT_HP["POP_SIZE"] = 1` (and multiply `TRAIN["max_steps"]` by 4, so
   the single agent gets all the env steps). Is the result better or worse than the elite of four? Which is the
   fairer comparison: equal env steps or equal wall time?
4. **MADDPG instead of MATD3.** `get_preset(PRESET, algo="MADDPG")` gives the same set-up for MADDPG.
   Compare the two at equal env steps; where in `matd3.py` does the difference come from?
5. **Read the record.** Using `record.generations` only, count how often each kind of mutation
   appears among the members of generations 1 and later, and how often among the members that were
   selected as parents of the next generation. Which mutations survive selection more often than
   chance?
6. **Towards communication.** The target is reached at the centre listener's level; the next step is a
   speaker whose message reliably names the goal. Try a longer run (`TRAIN["max_steps"] = 250_000` per member
   and `TARGET = None`, so the run does not stop at -30), `INIT_HP["GAMMA"] = 0.9`, or the speaker's
   noise at 0.0 or 0.3 (`INIT_HP["EXPL_NOISE"]`). After each run, print the speaker's message for each
   goal colour as in section 8.6 before you look at the return. Does the elite beat the centre listener
   on the 100 evaluation episodes by more than two standard errors?
"""),
    code(EXERCISES["all_members_reached"].stub),
    code(r'''
from marlkit.exercises import check_all_members_reached

check_all_members_reached(all_members_reached)
'''),
]


# ==================================================================================================
# 09: Space Invaders
# ==================================================================================================
CH09 = [
    md(r"""
# 9. A complete evolutionary run: Space Invaders with MADDPG

Two players share one Atari Space Invaders screen, each steering its own cannon. The agents see pixels,
so their networks start with convolutional encoders; the replay buffer holds images, so how it stores
them decides whether the run fits in memory at all; and every learning step runs several CNNs forward and
backward, so on a CPU the budget is tight. This chapter runs the `space-invaders` preset (MADDPG, a
population of four) with a budget chosen to fit about 25 minutes of a 2-core CPU, then watches the
trained agents play and measures them against a random policy.

Be warned about the scale. DQN learned Atari games from 50 million frames; the full run of this chapter
takes 50,000 agent steps (200,000 frames with frame skip 4), 250 times fewer, shared among four
population members. The point here is the machinery, and an honest measurement of what such a small
budget buys.

**Learning goals.** After this chapter you can

1. explain each step of the Atari preprocessing (flicker max-pool, frame skip, reward clipping,
   grayscale, 84 x 84 resize, a stack of 4 frames, channels first) and check its output;
2. configure CNN encoders with `net_config` and read the resulting actors and centralised critics;
3. compute what a replay buffer of images costs, and why it stores `uint8`;
4. choose a training budget from a measured throughput instead of a guess;
5. watch a trained team play and compare it with a random policy on the same episodes.
"""),
    code(r'''
import os

QUICK = os.environ.get("MARLKIT_QUICK", "0") == "1"  # the one knob: quick run (CI) or full run
SEED = 0
PRESET = "space-invaders"
# Full run: what fits in about 25 minutes on a 2-core CPU (see 9.4): 5 generations of 4 x 2,500 env steps.
# Quick run: 2 generations of 4 x 100 env steps, learning from step 200 (well under a minute and a half).
# max_steps is each member's budget, as in the guide: 4 x 12,500 = 50,000 env steps in all (quick: 4 x 200).
FULL_TRAIN = {"max_steps": 12_500, "evo_steps": 2_500}
QUICK_TRAIN = {"max_steps": 200, "evo_steps": 100, "learning_delay": 200, "eval_steps": 50}
EVAL_EPISODES = 10  # fresh episodes per policy in the final comparison
EVAL_MAX_STEPS = 100 if QUICK else 1_000  # cap on an evaluation episode (agent steps; 4 frames each)
GIF_FRAMES = 100  # agent steps in the animation of the trained agents
''', tags=["parameters"]),
    code(r'''
import io
import tempfile
import time
from functools import partial
from pathlib import Path
from pprint import pformat

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Image, display
from PIL import Image as PILImage

from marlkit import (
    MADDPG,
    HyperparameterConfig,
    MultiAgentReplayBuffer,
    Mutations,
    SyncPettingZooVecEnv,
    TournamentSelection,
    create_population,
    make_multi_agent_vect_envs,
    make_space_invaders,
    train_multi_agent_off_policy,
)
from marlkit.algorithms.base import episode_dones
from marlkit.plotting import plot_fitness, plot_hyperparameters
from marlkit.presets import get_preset
from marlkit.training.records import RunRecord
from marlkit.widgets import LiveTrainingView, count_parameters, describe_network

torch.manual_seed(SEED)
torch.set_num_threads(1)  # one thread: the other core steps the emulators (and a 2nd thread measured slower)
plt.rcParams["figure.dpi"] = 80
# Run directories go to a temporary folder here; pass run_dir="runs/..." to keep yours.
RUNS = Path(tempfile.mkdtemp(prefix="marlkit-ch09-"))
'''),
    md(r"""
## 9.1 What the agents see

`make_space_invaders` wraps PettingZoo's two-player Space Invaders in the standard DQN preprocessing
(innermost first; its docstring explains why the order matters):

1. **max over the last two raw frames**, because Atari sprites flicker (some are drawn only every other
   frame);
2. **frame skip 4**: each decision is repeated for 4 emulator frames and the rewards are summed;
3. **reward clipping** to $[-1, 1]$ per agent step, so one learning rate suits every game's score scale;
4. **grayscale**, then **resize** to $84 \times 84$;
5. a **stack of the last 4 frames**, so that motion (which way a bullet flies) is visible in one
   observation;
6. **channels first**: $(84, 84, 4) \to (4, 84, 84)$, the layout PyTorch convolutions expect.

Each agent chooses one of 6 actions: no-op, fire, right, left, right and fire, left and fire.
"""),
    code(r'''
demo = make_space_invaders(render_mode="rgb_array")
obs, infos = demo.reset(seed=SEED)
for agent in demo.possible_agents:
    print(f"{agent}: observation {demo.observation_space(agent)}, action {demo.action_space(agent)}")
for _ in range(40):  # play a little (both fire and move) so that the frames differ
    previous = obs
    obs, rewards, terminations, truncations, infos = demo.step({"first_0": 4, "second_0": 5})
raw = demo.render()
print("raw screen:", raw.dtype, raw.shape, "-> observation:", obs["first_0"].dtype, obs["first_0"].shape)
print("the stack moves by one frame per step (new channels 0..2 == old channels 1..3):",
      np.array_equal(obs["first_0"][:3], previous["first_0"][1:]))
print("both agents see the same screen:", np.array_equal(obs["first_0"], obs["second_0"]))
demo.close()

fig, axes = plt.subplots(1, 5, figsize=(12, 3.2))
axes[0].imshow(raw)
axes[0].set_title(f"raw screen {raw.shape[0]}x{raw.shape[1]} RGB")
for k in range(4):
    axes[k + 1].imshow(obs["first_0"][k], cmap="gray", vmin=0, vmax=255)
    axes[k + 1].set_title(f"channel {k}" + (" (oldest)" if k == 0 else " (newest)" if k == 3 else ""))
for ax in axes:
    ax.set_xlabel("x (pixels)")
axes[0].set_ylabel("y (pixels)")
fig.suptitle("Space Invaders: the raw screen and the 4 stacked 84x84 frames an agent observes")
fig.tight_layout()
plt.show()
'''),
    md(r"""
## 9.2 CNN encoders

The preset's `NET_CONFIG` is single-level (both agents see the same kind of input, so one architecture
serves both): the Nature-DQN convolution stack, 32, 64 and 64 channels with kernels 8, 4, 3 and
strides 4, 2, 1, turns $4 \times 84 \times 84$ into $64 \times 7 \times 7 = 3{,}136$ features (chapter 3
computed this by hand), then a linear layer to a latent of 64 and an MLP head.
"""),
    code(r'''
preset = get_preset(PRESET)  # the full run's settings; the parameters cell sets the training budget
ALGO = preset["algo"]
INIT_HP = preset["INIT_HP"]
NET_CONFIG = preset["NET_CONFIG"]
MUT_P = preset["MUT_P"]
hp_config = HyperparameterConfig.from_dict(preset["hp_config"])
print(f"ALGO = {ALGO!r}")
print("NET_CONFIG =", pformat(NET_CONFIG, sort_dicts=False))
print("INIT_HP =", pformat(INIT_HP, sort_dicts=False))
print("hp_config =", pformat(hp_config.to_dict(), sort_dicts=False))
print("MUT_P =", pformat(MUT_P, sort_dicts=False))
'''),
    md(r"""
Compared with Speaker Listener: smaller learning rates ($10^{-4}$), a longer horizon (`GAMMA: 0.99`), a
smaller batch (32) and learning every 16 steps, because every learning step is expensive here. The
architecture mutations are switched off (`ARCH_MUT: 0`, `NEW_LAYER: 0`): growing a CNN is possible but
slow on a CPU, and evolution only tunes the learning rates and the batch size.

Environment, population, memory, tournament and mutations are made exactly as in chapter 8, from these
dictionaries. The vector environment runs 4 emulators in worker processes.
"""),
    code(r'''
TRAIN = dict(preset["train"], **(QUICK_TRAIN if QUICK else FULL_TRAIN))
num_envs = TRAIN["num_envs"]
env = make_multi_agent_vect_envs(make_space_invaders, num_envs=num_envs)
env.reset(seed=SEED)
observation_spaces = [env.single_observation_space(agent) for agent in env.agents]
action_spaces = [env.single_action_space(agent) for agent in env.agents]
INIT_HP["AGENT_IDS"] = env.agents

pop = create_population(ALGO, observation_spaces, action_spaces, NET_CONFIG, INIT_HP, hp_config,
                        population_size=INIT_HP["POP_SIZE"], num_envs=num_envs, seed=SEED)
FIELDS = ["state", "action", "reward", "next_state", "done"]
memory = MultiAgentReplayBuffer(INIT_HP["MEMORY_SIZE"], field_names=FIELDS, agent_ids=INIT_HP["AGENT_IDS"], seed=SEED)
tournament = TournamentSelection(TRAIN["tournament_size"], TRAIN["elitism"], INIT_HP["POP_SIZE"], TRAIN["eval_loop"],
                                 rand_seed=SEED)
mutations = Mutations(MUT_P["NO_MUT"], MUT_P["ARCH_MUT"], MUT_P["NEW_LAYER"], MUT_P["PARAMS_MUT"], MUT_P["ACT_MUT"],
                      MUT_P["RL_HP_MUT"], mutation_sd=MUT_P["MUT_SD"], rand_seed=SEED)

total = 0
for name, net in pop[0].networks().items():
    total += count_parameters(net)
    if name.startswith(("actors/first_0", "critics/first_0")):
        print(f"{name}: {count_parameters(net):,} parameters\n  {describe_network(net)}")
print(f"one MADDPG agent (2 actors, 2 critics and their targets): {total:,} parameters; population: {len(pop)} agents")
'''),
    md(r"""
Each actor reads its own stack of frames. Each *centralised* critic has one CNN encoder per agent (the
two observations), concatenates their latents with both agents' one-hot actions (6 + 6 = 12 features),
and outputs one $Q$ value: twice the convolution work of an actor, which is where the training time
goes (section 9.4).

## 9.3 A replay buffer of images

Chapter 4 showed the arithmetic in general; here it is for this run's buffer. The buffer allocates its
arrays on the first save, in the dtype of the data, so we save one transition into a buffer of the same
size to look at the bill:
"""),
    code(r'''
with SyncPettingZooVecEnv([make_space_invaders]) as one_env:
    o, info = one_env.reset(seed=SEED)
    actions = {a: np.zeros(1, dtype=np.int64) for a in one_env.agents}
    o2, r, term, trunc, info = one_env.step(actions)
sized = MultiAgentReplayBuffer(INIT_HP["MEMORY_SIZE"], FIELDS, one_env.agents)
sized.save_to_memory(o, actions, r, o2, term, is_vectorised=True)

M, n_agents = INIT_HP["MEMORY_SIZE"], len(one_env.agents)
frame_stack = int(np.prod(observation_spaces[0].shape))  # 4 x 84 x 84 = 28,224 pixels
print(f"{'field':<11}{'dtype':>8}{'bytes per transition and agent':>32}")
per_transition = 0
for field, batch in zip(FIELDS, sized.sample(1)):
    t = batch[one_env.agents[0]]
    per_transition += n_agents * t[0].numel() * t.element_size()
    print(f"{field:<11}{str(t.dtype).replace('torch.', ''):>8}{t[0].numel() * t.element_size():>32,}")
print(f"\nmemory.nbytes = {sized.nbytes:,} bytes = {M:,} transitions x {per_transition:,} bytes:",
      sized.nbytes == M * per_transition)
pixels = M * n_agents * 2 * frame_stack  # state and next_state, both agents, 1 byte per pixel
print(f"observations as uint8:   {M:,} x {n_agents} agents x 2 (state, next_state) x {frame_stack:,}"
      f" = {pixels / 1e9:.2f} GB")
print(f"observations as float32: 4 bytes per pixel = {4 * pixels / 1e9:.2f} GB")
'''),
    md(r"""
The preset's 50,000 transitions take 5.6 GB as `uint8`; as `float32` they would take 22.6 GB, about all
the memory (23 GB) of the machine this book was built on. The arrays are made with `np.empty`, which only reserves
address space: a page of memory is committed when it is first written, so the real cost grows with the
transitions actually stored (the full run below fills the buffer exactly). Sampled batches stay
`uint8` until the encoder divides by 255 inside the network.

## 9.4 The budget, measured

How many steps fit in 25 minutes? We measured it before choosing `max_steps`, with a short trial of
1,600 env steps with learning from the first step, on the same 2-core machine (shared with other jobs):

| what | measured |
|---|---|
| act + step 4 emulators + store, no learning | about 244 env steps/s |
| one `learn` call, batch 32 | about 300 ms (up to 600 ms when the other core is busy) |
| training with `learn_step` 16 (one `learn` per 16 env steps) | **about 42 env steps/s** |
| one random two-player game | 422 agent steps |

At 42 steps/s, 25 minutes are about 60,000 env steps, less the evaluations. We chose **50,000 env steps in
5 generations** (`max_steps` 12,500 per member, 2,500 per generation). The preset's own `max_steps`,
500,000 per member (2,000,000 env steps in all), would take about 13 hours here; a GPU would run the
convolutions many times faster. `learning_delay` (5,000 steps of filling the buffer before learning
starts) and `eval_steps` (an evaluation episode is cut
after 1,000 vector steps) are the preset's.
"""),
    code(r'''
print("TRAIN =", pformat(TRAIN, sort_dicts=False))
learns = (INIT_HP["POP_SIZE"] * TRAIN["max_steps"] - TRAIN["learning_delay"]) // INIT_HP["LEARN_STEP"]
print(f"about {learns:,} learn() calls of batch {INIT_HP['BATCH_SIZE']} in the whole run, shared by "
      f"{INIT_HP['POP_SIZE']} members: about {learns // INIT_HP['POP_SIZE']:,} gradient steps per member")
''', tags=IGNORE),
    md(r"""
Each final member's weights will have been through roughly 700 gradient steps (its ancestors'
included); DQN takes about 3 million on one Atari game. Expect little:
perhaps a preference for some actions over others (firing more, staying under cover), not a strategy.

## 9.5 Training
"""),
    code(r'''
view = LiveTrainingView()
view_display = display(view, display_id=True)
run_dir = RUNS / f"{PRESET}-{ALGO}"

start = time.perf_counter()
pop, pop_fitnesses = train_multi_agent_off_policy(
    env,
    env_name=PRESET,
    algo=ALGO,
    pop=pop,
    memory=memory,
    INIT_HP=INIT_HP,
    MUT_P=MUT_P,
    net_config=NET_CONFIG,
    max_steps=TRAIN["max_steps"],
    evo_steps=TRAIN["evo_steps"],
    eval_steps=TRAIN["eval_steps"],
    eval_loop=TRAIN["eval_loop"],
    learning_delay=TRAIN["learning_delay"],
    target=TRAIN["target"],
    tournament=tournament,
    mutation=mutations,
    save_elite=True,
    verbose=False,
    seed=SEED,
    run_dir=run_dir,
    on_generation=view,
)
wall_time = time.perf_counter() - start
env.close()
view_display.update(view)  # the static page keeps the final table

record = RunRecord.load(run_dir)
total_steps = record.generations[-1]["global_steps"]
print(f"{total_steps:,} env steps in {len(record)} generations, {wall_time / 60:.1f} min of wall time "
      f"({total_steps / wall_time:.1f} env steps/s, evaluations included)")
print(f"replay buffer: {len(memory):,} transitions stored, {memory.nbytes / 1e9:.2f} GB reserved")
''', tags=IGNORE),
    md(r"""
**The stored full run**: 50,000 env steps in 5 generations and 32.5 minutes of wall time, 25.7 env
steps/s with the evaluations included. That is slower than the trial's 42 steps/s because other jobs
shared the two cores for most of the run; the budget was chosen for 25 minutes. The buffer holds all
50,000 transitions, so the 5.6 GB of section 9.3 were really committed.

The fitness values are small whole numbers, and many members share one (19). A fitness is the
evaluation return with clipped rewards summed over both players, so roughly the number of invaders
the two shot. It is a whole number because the emulator is deterministic: a greedy policy plays the
*same* game in all 4 evaluation sub-environments, so each fitness is one game's score, and members
whose policies act alike score alike.
"""),
    code(r'''
plot_fitness(record)
'''),
    code(r'''
plot_hyperparameters(record, names=list(hp_config))
'''),
    md(r"""
Fitness does not trend upwards. The best member scores 27 in generation 0, 19 for the next three
generations and 31 in the last; the mean moves between 12.8 and 19. With one deterministic game per
evaluation and about 700 gradient steps per lineage, the curve shows selection among policies of
nearly equal worth more than it shows learning. Evolution changed little: `lr_actor` never moved,
`lr_critic` rose by 20% (then 44%) in some lineages, and the elite's lineage runs with `batch_size` 26
instead of 32. The elite (agent 15) descends from member 3 of generation 0; its last change before
training in generation 4 was a `params` mutation, Gaussian noise on its weights.
"""),
    md(r"""
## 9.6 Watching the trained agents

The elite checkpoint loads with `weights_only=True` (inside `MADDPG.load`), as in chapter 8. We let it play
100 agent steps (400 frames, about 7 seconds of game time) greedily, keep every screen at three
quarters of its size as a GIF, and count the actions each agent chose:
"""),
    code(r'''
elite = MADDPG.load(run_dir / "elite.pt")
elite.set_training_mode(False)  # greedy actions: no Gumbel sampling
print(f"elite: agent {elite.index}, {elite.steps[-1]:,} env steps of its own (its ancestors' included), "
      f"last evaluation {elite.fitness[-1]:.1f}")

ACTION_NAMES = ["no-op", "fire", "right", "left", "right+fire", "left+fire"]
frames, chosen = [], {agent: [] for agent in elite.agent_ids}
with SyncPettingZooVecEnv([partial(make_space_invaders, render_mode="rgb_array")]) as render_env:
    obs, info = render_env.reset(seed=SEED)
    for _ in range(GIF_FRAMES):
        frames.append(PILImage.fromarray(render_env.render()).resize((120, 158), PILImage.Resampling.BOX))
        action = elite.get_action(obs, infos=info)[0]
        for agent in elite.agent_ids:
            chosen[agent].append(int(action[agent][0]))
        obs, reward, termination, truncation, info = render_env.step(action)
gif = io.BytesIO()
frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:], duration=70, loop=0)
print(f"{len(frames)} frames of {frames[0].size[0]}x{frames[0].size[1]} pixels, {gif.tell() / 1024:.0f} KiB")
for agent, actions in chosen.items():
    counts = np.bincount(actions, minlength=len(ACTION_NAMES))
    print(f"{agent} chose: " + ", ".join(f"{name} {n}" for name, n in zip(ACTION_NAMES, counts) if n))
display(Image(data=gif.getvalue(), format="gif"))
''', tags=IGNORE),
    md(r"""
## 9.7 Trained elite against a random policy

The comparison plays 10 fresh episodes per policy, one per sub-environment of a vector env seeded with a
seed not used in training. Three details make the numbers mean something:

* **random no-op starts.** The Atari emulator is deterministic (PettingZoo turns sticky actions off),
  so a greedy policy plays the *same* game in every sub-environment, whatever the seed: ten episodes
  would be one episode ten times. As in the DQN paper, each episode therefore starts with a random
  number (0 to 30) of no-op steps, the same numbers for every policy. The first row shows what happens
  without them.
* rewards are **not clipped** (`clip_rewards=False`): the returns are game points (5 to 30 per invader,
  more for the mothership), while training saw each step's reward clipped to $[-1, 1]$; the policies do
  not depend on the reward, so this changes only what we report;
* an episode is **capped** at `EVAL_MAX_STEPS` agent steps (1,000 in the full run, 4,000 frames, about
  67 seconds of play), so that an agent that never loses cannot stall the evaluation; the table counts
  how many episodes hit the cap.
"""),
    code(r'''
def play_episodes(policy, noops, seed, max_steps):
    """One episode per sub-env, sub-env i starting with noops[i] no-op steps and capped at max_steps.

    Returns (returns (E, num_agents), lengths (E,)) with E = len(noops).
    """
    make_eval_env = partial(make_space_invaders, clip_rewards=False, max_cycles=max_steps)
    with SyncPettingZooVecEnv([make_eval_env] * len(noops)) as eval_env:
        obs, info = eval_env.reset(seed=seed)
        returns = np.zeros((len(noops), len(eval_env.agents)))
        lengths = np.zeros(len(noops), dtype=int)
        playing = np.ones(len(noops), dtype=bool)  # sub-envs still in their first episode
        while playing.any():
            actions = {a: np.where(lengths < noops, 0, act) for a, act in policy(obs, info).items()}  # 0 = no-op
            obs, reward, termination, truncation, info = eval_env.step(actions)
            returns[playing] += np.stack([np.nan_to_num(reward[a]) for a in eval_env.agents], -1)[playing]
            lengths[playing] += 1
            playing &= ~episode_dones(termination, truncation)
    return returns, lengths


EVAL_SEED = 12_345  # not used in training
rng = np.random.default_rng(EVAL_SEED)
noops = rng.integers(0, 31, EVAL_EPISODES)  # the same random starts for every policy


def elite_policy(obs, info):
    return elite.get_action(obs, infos=info)[0]


def random_policy(obs, info):
    return {a: rng.integers(0, 6, EVAL_EPISODES) for a in elite.agent_ids}


start = time.perf_counter()
results = {
    "elite, no no-op start": play_episodes(elite_policy, np.zeros(EVAL_EPISODES, dtype=int), EVAL_SEED, EVAL_MAX_STEPS),
    "trained elite": play_episodes(elite_policy, noops, EVAL_SEED, EVAL_MAX_STEPS),
    "random policy": play_episodes(random_policy, noops, EVAL_SEED, EVAL_MAX_STEPS),
}


def mean_std(x):
    return f"{x.mean():.1f} ± {x.std():.1f}"


print(f"{'policy':<23}{'episodes':>9}{'first_0 return':>17}{'second_0 return':>17}{'episode length':>17}{'capped':>8}")
for name, (returns, lengths) in results.items():
    print(f"{name:<23}{len(lengths):>9}{mean_std(returns[:, 0]):>17}{mean_std(returns[:, 1]):>17}"
          f"{mean_std(lengths):>17}{int((lengths >= EVAL_MAX_STEPS).sum()):>8}")
print(f"(mean ± standard deviation over episodes; game points, unclipped; {time.perf_counter() - start:.0f} s)")
''', tags=IGNORE),
    md(r"""
What the elite learned is visible in the action counts of section 9.6: **each player always takes the
same action**: `first_0` moves right and fires, `second_0` moves left and fires, whatever the
screen shows. A policy that ignores its observation plays the same game from every start, so even with
random no-op starts its 10 episodes are identical (standard deviation 0): the table has one episode of
the elite, repeated, against 10 different episodes of the random policy.

Measured on those games, the constant strategy is not useless. The elite's games last 733 agent steps
against 417 ± 123 for random play, and the team scores 1,030 points against 857 (270 + 760 for the
elite, 407.5 + 449.5 for random play), though `first_0` alone scores less than a random player.
Moving to one side and firing nonstop is a crude strategy, and an untrained actor is already close to
it: the greedy action of a freshly initialised MADDPG actor is the same for every screen (exercise 6
checks this). So this run cannot tell how much of the elite's behaviour came from learning and how
much from selecting the luckiest constant policy. That is the honest reading of 50,000 steps: the
machinery works end to end (preprocessing, CNN encoders, `uint8` replay, evolution, checkpoints), and
learning to *react* to the screen would take a budget hundreds of times larger, and so a GPU.
"""),
    md(r"""
## Summary

* Pixels need preprocessing before a network sees them: max over flicker, frame skip, clipped rewards,
  84 x 84 grayscale, a stack of 4 frames for motion, channels first.
* A single-level `net_config` with `channel_size`, `kernel_size` and `stride_size` gives every agent a CNN
  encoder; MADDPG's centralised critic gets one encoder per agent.
* A replay buffer of frames must stay `uint8`: 5.6 GB instead of 22.6 GB for this preset's 50,000
  transitions.
* Measure throughput, then set the budget. On a 2-core CPU, half an hour buys 50,000 agent steps, far
  too few for Atari: the elite plays one fixed action per player. Report what was measured, against a
  baseline, look at the behaviour, and say how small the run was.

## Exercises

1. **Buffer bill (code).** Write `observation_nbytes(memory_size, num_agents, obs_shape, dtype)`: the
   bytes a replay buffer reserves for the `state` and `next_state` fields. The check builds real
   `MultiAgentReplayBuffer`s and compares.
2. **Budget.** From the throughput measured in section 9.4, how long would the preset's 2,000,000 env
   steps take on this machine? Which part dominates, and which two hyperparameters would you change to
   halve the time? What does each change cost the learner?
3. **Motion.** Make the environment with `frame_stack=1` and look at one observation. Which parts of
   the game's state can an agent no longer infer, and why does DQN's preprocessing stack 4 frames?
4. **A stronger baseline.** Add an "always fire, moving randomly" policy (actions 1, 4 and 5 only) to
   the comparison of section 9.7. Does the trained elite beat it? What would you conclude if it did not?
5. **On a GPU.** `create_population(..., device="cuda")` and `MultiAgentReplayBuffer(..., device="cuda")`
   move the networks and sampled batches to a GPU. Rerun 9.5 there with the preset's `evo_steps` and
   compare the throughput with the table of section 9.4.
6. **Constant policies.** Create a fresh population with `create_population` (as in section 9.2), collect
   50 different screens by playing randomly, and count the greedy actions each member's actors choose
   on them (`agent.set_training_mode(False)`, then `np.bincount` of `agent.get_action(batch)[0][agent_id]`).
   How many different actions does an untrained actor use? What does that mean for the fitness of
   generation 0, and for exploration, given that in training mode a MADDPG actor samples its action
   from the softmax of the same outputs (Gumbel-Softmax)?
"""),
    code(EXERCISES["observation_nbytes"].stub),
    code(r'''
from marlkit.exercises import check_observation_nbytes

check_observation_nbytes(observation_nbytes)
'''),
]

NOTEBOOK_CELLS = {
    "08_speaker_listener_evolutionary_run.ipynb": CH08,
    "09_space_invaders_maddpg.ipynb": CH09,
}


def build(cells) -> nbformat.NotebookNode:
    nb = new_notebook(cells=cells)
    nb.metadata = nbformat.from_dict(
        {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}}
    )
    return nb


def refresh_markdown(path: Path, cells) -> None:
    """Replace the markdown cells of an executed notebook; refuse if its code cells differ from ``cells``."""
    nb = nbformat.read(path, as_version=4)
    if len(nb.cells) != len(cells):
        raise SystemExit(f"{path.name}: {len(nb.cells)} cells stored, {len(cells)} here; rebuild and re-execute")
    for i, (stored, new) in enumerate(zip(nb.cells, cells)):
        if stored.cell_type != new.cell_type or (new.cell_type == "code" and stored.source != new.source):
            raise SystemExit(f"{path.name} cell {i}: code changed; rebuild and re-execute instead")
        if new.cell_type == "markdown":
            stored.source = new.source
    nbformat.validate(nb)
    nbformat.write(nb, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--markdown-only", action="store_true", help="refresh the prose of the executed notebooks")
    parser.add_argument("--only", choices=("08", "09"), help="just this chapter")
    args = parser.parse_args(argv)
    for name, cells in NOTEBOOK_CELLS.items():
        if args.only and not name.startswith(args.only):
            continue
        path = NOTEBOOKS / name
        if args.markdown_only:
            refresh_markdown(path, cells)
        else:
            nbformat.write(build(cells), path)
        print(f"wrote {path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
