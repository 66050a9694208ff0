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
# 8. A complete evolutionary run: Simple Speaker Listener learns to communicate

The previous chapters built every piece on its own: vectorised environments, networks configured with
`net_config`, the replay buffer, MADDPG and MATD3, tournament selection and mutations. This chapter puts
them together the way the guide does and runs them for real: a population of four MATD3 agents learns
Simple Speaker Listener while evolution tunes their learning rates, batch sizes and learning frequencies.

Simple Speaker Listener is a test of **communication**. Only the speaker sees which of the three
landmarks is the goal (its observation is the goal's colour); only the listener can move (it sees the
landmarks and the speaker's message, three numbers, but not which landmark is the goal). Both receive the
same reward, minus the squared distance between the listener and the goal. So the task is to invent a code:
the speaker must say something different for each goal, and the listener must act on it.

There is a trap. A listener that ignores the speaker and parks at the *centre* of the three landmarks
already scores about as well as the guide's target of -30. Lowe et al. (2017) describe exactly this failure
("the listener learns to ignore the speaker and simply moves to the middle of all observed landmarks"), and
this course's previous preset fell into it. This chapter shows a run that communicates, and how to *prove*
that it does: on fresh episodes, against the centre listener, and with the speaker shown the wrong goal.

**Learning goals.** After this chapter you can

1. set up a complete evolutionary off-policy run in the guide's words (`INIT_HP`, `NET_CONFIG`,
   `hp_config` with `RLParameter`, `create_population`, `MultiAgentReplayBuffer`, `TournamentSelection`,
   `Mutations`) from a preset of plain dictionaries;
2. train it with `train_multi_agent_off_policy`, watch it with `LiveTrainingView`, and say what the run
   leaves on disk;
3. read a run from its record: the fitness curve against baselines, the hyperparameter trajectories, the
   family tree;
4. save, reload and check an elite checkpoint that holds only tensors and plain data
   (`torch.load(..., weights_only=True)`);
5. tell communication from the centre trick: fresh seeded episodes, baselines, the wrong-message ablation,
   the speaker's code and the listener's answer, and more than one training seed.

The guide's sections this chapter covers: *Evolutionary Hyperparameter Optimisation*, *Creating a
Population of Agents*, *Experience Replay* and *Training Loop*.
"""),
    code(r'''
import os

QUICK = os.environ.get("MARLKIT_QUICK", "0") == "1"  # the one knob: quick run (CI) or full run
SEED = 0
PRESET = "speaker-listener"
# Full run: the preset as it stands (at most 500,000 env steps per member, 25,000 per generation, target -16).
# Quick run: two generations of 6,400 steps per member (about a minute).
QUICK_TRAIN = {"max_steps": 12_800, "evo_steps": 6_400, "target": None}
EVAL_EPISODES = 200 if QUICK else 1_000  # fresh episodes for the final comparison
EVAL_SEED = 50_000  # sub-env i of the evaluation is seeded EVAL_SEED + i: episodes no member trained on
''', tags=["parameters"]),
    code(r'''
import inspect
import json
import tempfile
import time
from pathlib import Path
from pprint import pformat

import numpy as np
import torch
from IPython.display import display

import marlkit.presets
from marlkit import (
    MATD3,
    HyperparameterConfig,
    MultiAgentReplayBuffer,
    Mutations,
    RLParameter,
    SpeakerListenerVecEnv,
    TournamentSelection,
    create_population,
    train_multi_agent_off_policy,
)
from marlkit.evaluation import (
    LANDMARK_COLORS,
    SUCCESS_RADIUS,
    agent_policy,
    baselines,
    communication_report,
    evaluate_team,
    scripted_team,
    shown_wrong_goal,
)
from marlkit.plotting import plot_family_tree, plot_fitness, plot_hyperparameters
from marlkit.presets import get_preset
from marlkit.training.evolution import target_reached
from marlkit.training.records import RunRecord
from marlkit.widgets import LiveTrainingView, count_parameters, describe_network

torch.manual_seed(SEED)
torch.set_num_threads(1)  # small MLPs: one thread is fastest
np.set_printoptions(precision=2, suppress=True)
# Run directories go to a temporary folder here; pass run_dir="runs/..." to keep yours.
RUNS = Path(tempfile.mkdtemp(prefix="marlkit-ch08-"))
'''),
    md(r"""
## 8.1 The set-up, as plain data

A *preset* (`marlkit/presets.py`) is the guide's set-up written down as plain dictionaries:
`INIT_HP` (initial hyperparameters, the guide's upper-case names), `NET_CONFIG` (the network
architecture), the bounds of the hyperparameters evolution may change, the mutation probabilities `MUT_P`,
and the arguments of the training loop. `get_preset(name, algo, quick)` returns a deep copy, so editing it
changes nothing else; `marlkit train --preset speaker-listener` on the command line reads the same
dictionaries.
"""),
    code(r'''
preset = get_preset(PRESET)  # the full run's settings; the quick run shortens the training loop below
ALGO = preset["algo"]
INIT_HP = preset["INIT_HP"]
NET_CONFIG = preset["NET_CONFIG"]
MUT_P = preset["MUT_P"]
print(f"ALGO = {ALGO!r}")
print("INIT_HP =", pformat(INIT_HP, sort_dicts=False))
print("NET_CONFIG =", pformat(NET_CONFIG, sort_dicts=False))
print("MUT_P =", pformat(MUT_P, sort_dicts=False))
'''),
    md(r"""
Reading a few entries. `LEARN_STEP: 100` and `BATCH_SIZE: 1024`: one `learn` call every 100 environment
steps, on 1,024 transitions from a buffer of the population's last `MEMORY_SIZE` transitions. Both learning
rates are `0.01`, a hundred times the previous preset's actor rate: **this is what makes the team
communicate** (section 8.7 shows the measurements). `POLICY_FREQ: 2` is MATD3's delayed actor update.
`O_U_NOISE: False` explores with Gaussian noise, and `EXPL_NOISE` gives each agent its own standard
deviation, relative to the half-range of its action box: the speaker's 0.1 keeps the message it sends
while training close to the one it sends greedily, so the message can carry the goal; the listener's 1.2
pushes it hard in random directions, so the critics see what every kind of move is worth. `NET_CONFIG` is
single-level: every actor and critic gets one hidden layer of 64 units in its encoder and one in its head.

The training loop's settings (the last ones depend on the quick/full knob):
"""),
    code(r'''
TRAIN = dict(preset["train"])
if QUICK:
    TRAIN.update(QUICK_TRAIN)
TARGET = TRAIN["target"]  # the early-stopping target of the full run, -16
print("TRAIN =", pformat(TRAIN, sort_dicts=False))
generations = -(-TRAIN["max_steps"] // TRAIN["evo_steps"])
print(f"one generation = {INIT_HP['POP_SIZE']} members x {TRAIN['evo_steps']:,} env steps; at most "
      f"{generations} generations ({INIT_HP['POP_SIZE'] * generations * TRAIN['evo_steps']:,} env steps in all)")
''', tags=IGNORE),
    md(r"""
`max_steps` is the budget of *each member*, as in the guide. `eval_loop: 1` makes each evaluation one
greedy episode in each of the 64 sub-environments, and the early-stopping rule averages a member's last 3
evaluations: 192 episodes. The `target` of -16 is one that the centre trick cannot reach by luck: a
centre-trick team scores about -29 with a standard deviation of about 20 per episode, so its 192-episode
mean lies about 9 standard errors below -16. The guide's own target, -30, is reached *without*
communicating, so meeting it proves nothing.

The guide writes the hyperparameter bounds with `RLParameter`; here they are, written out as in the
guide, and compared with the preset's plain form:
"""),
    code(r'''
hp_config = HyperparameterConfig(
    lr_actor=RLParameter(min=1e-3, max=3e-2),
    lr_critic=RLParameter(min=1e-3, max=3e-2),
    batch_size=RLParameter(min=256, max=2048, dtype=int),
    learn_step=RLParameter(min=50, max=200, dtype=int, grow_factor=1.5, shrink_factor=0.75),
)
print("the preset's hp_config:", preset["hp_config"])
print("same bounds as the preset:",
      hp_config.to_dict() == HyperparameterConfig.from_dict(preset["hp_config"]).to_dict())
'''),
    md(r"""
## 8.2 Environment, population, memory, tournament, mutations

Now the guide's code, line for line, fed from the preset. (`marlkit.cli.build_run` makes the same calls;
it is what `marlkit train` runs.) The vector environment is `SpeakerListenerVecEnv`: 64 copies of Simple
Speaker Listener with continuous actions, stepped as numpy arrays in one call. It is mpe2's environment
step for step (chapter 2, section 2.6, shows the equality test), only faster; the guide's
`AsyncPettingZooVecEnv` over `mpe2` envs gives the same transitions (`marlkit train --env-impl mpe2`).
"""),
    code(r'''
num_envs = TRAIN["num_envs"]
env = SpeakerListenerVecEnv(num_envs, continuous_actions=True)
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
actions (3 + 11 observation features and 3 + 5 action features). Notice what that means for the
listener's critic: it sees the speaker's observation, the goal's colour. The critic knows the goal; the
listener's actor does not, and can learn it only from the message.

## 8.3 Training, with a live view

`train_multi_agent_off_policy` runs generations until every member has taken `max_steps` env steps or the
target is reached. In one generation each member in turn acts for `evo_steps` steps, saving every
transition into the buffer that the whole population shares and learning every `learn_step` steps; then
every member is evaluated, the generation is written to the run record, the best member is saved as
`elite.pt`, and tournament selection and mutation make the next population.

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
print(f"{total_steps:,} env steps ({total_steps // INIT_HP['POP_SIZE']:,} per member) in {len(record)} generations, "
      f"{wall_time / 60:.1f} min of wall time ({total_steps / wall_time:,.0f} env steps/s on this machine)")
print("files in the run directory:", sorted(p.name for p in run_dir.iterdir()))
''', tags=IGNORE),
    md(r"""
The cell prints what the stored full run took on a 2-core CPU, learning and evaluation included. The run
is seeded and reproducible: `marlkit train --preset speaker-listener --seed 0` on the command line gives
exactly the same fitness values. The run record (`generations.jsonl`, one JSON line per generation, and
`run.json`, the settings) is what every plot below is drawn from; it is also all you need to plot a run
that is still going or that crashed.

Did it reach the target? The rule that stops training early is strict: **every** member's mean over its
last 3 evaluations must be at least -16. We check it ourselves rather than trust the loop's exit (a run
that does not reach it stops at `max_steps`):
"""),
    code(r'''
for agent in pop:
    print(f"agent {agent.index}: evaluations {np.round(agent.fitness[-3:], 1)} -> mean of the last 3 "
          f"{np.mean(agent.fitness[-3:]):7.2f}")
print(f"target {TARGET} reached by every member: {TARGET is not None and target_reached(pop, TARGET)}")
''', tags=IGNORE),
    md(r"""
A met stopping rule is not yet a result: the evaluations it averages are short, and the members were
*selected* for scoring well on them. Section 8.6 tests the elite properly.

## 8.4 Reading the run

First the baselines, on the fresh evaluation episodes that section 8.6 uses: hand-written teams whose
speaker says nothing. **Centre**: the listener steers to the centre of the three landmarks, the best it can
roughly do *without* communication. **Told the goal**: the listener steers to the goal, which it reads from
the speaker's observation: a team whose communication is perfect. Both steer with a damped push,
$\mathrm{clip}(3\,d - v)$ towards a point $d$ (relative to the listener; $v$ its velocity):
"""),
    code(r'''
print(inspect.getsource(scripted_team))
reference = baselines(EVAL_EPISODES, EVAL_SEED)  # on real mpe2 envs
for name, result in reference.items():
    print(f"{name:<36} {result.mean:7.2f} (standard error {result.stderr:.2f})")
''', tags=IGNORE),
    md(r"""
**Fitness.** Each grey dot is one member's evaluation; the thin lines follow the ancestry of each final
member back to generation 0; the thick lines are the population's best and mean; the dotted lines are the
two scripted listeners. A curve that flattens at the red line is the centre trick; communication has to
go *below* it towards the green one.
"""),
    code(r'''
plot_fitness(record, levels={"centre listener": reference["centre listener (no communication)"].mean,
                             "listener told the goal": reference["listener told the goal"].mean})
'''),
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

with SpeakerListenerVecEnv(8) as check_env:
    obs, info = check_env.reset(seed=SEED + 1)
actions_reloaded = elite.get_action(obs)[0]
actions_saved = saved.get_action(obs)[0]
print("reloaded elite == saved member, same index:", elite.index == saved.index)
print("same actions on 8 fresh observations:",
      all(np.array_equal(actions_reloaded[a], actions_saved[a]) for a in elite.agent_ids))
'''),
    md(r"""
## 8.6 Does the elite communicate?

The fitness values above are not a fair measure of the elite: each is a short evaluation, and the elite was
*chosen* because its latest ones were the highest (the winner's curse). A fair test plays fresh episodes
the elite was not selected on, enough of them, and the same episodes for every policy compared: here
`EVAL_EPISODES` episodes on real `mpe2` envs, each seeded with a seed never used in training. Beside the
baselines of section 8.4, two more policies: the **trained elite**, acting greedily, and the **same elite
with its speaker shown a wrong goal** (another landmark's colour; `marlkit.evaluation.shown_wrong_goal`).
That ablation is what separates communication from the centre trick: a listener that follows the message
now drives to the wrong landmark and the score collapses; a listener that ignores it does not care.

The table gives each policy's mean return (summed over both agents, 25 steps), a 95% confidence interval
(1.96 standard errors) and the listener's success rate: at the last step it touches the goal landmark
(centres within `SUCCESS_RADIUS`, the two radii added).
"""),
    code(r'''
results = {**communication_report(elite, EVAL_EPISODES, EVAL_SEED), **reference}
print(f"success: listener within {SUCCESS_RADIUS:.3f} of the goal at the last step; {EVAL_EPISODES} fresh episodes\n")
print(f"{'policy':<42}{'mean return':>12}{'95% interval':>20}{'success':>9}")
for name, result in results.items():
    low, high = result.mean - 1.96 * result.stderr, result.mean + 1.96 * result.stderr
    print(f"{name:<42}{result.mean:>12.2f}{f'[{low:.1f}, {high:.1f}]':>20}{result.success_rate:>9.0%}")
''', tags=IGNORE),
    md(r"""
Read the rows against each other. The trained team must beat the centre listener by far more than the
intervals' width, or it has learned navigation, not communication. The wrong-goal row is the decisive one:
if the listener ignored the message, showing the speaker another colour would change nothing; a collapse
far below the centre listener means the listener goes where the message says. The told-the-goal listener is
a ceiling for a listener that steers this way; the elite's listener steers differently (harder, and it has
to decode the message first).

**What does the speaker say, and what does the listener do with it?** The speaker's greedy message for each
goal colour (the code the pair invented), and, over the evaluation episodes, which landmark the listener
ends nearest to, first with the true message and then with the speaker shown the next landmark's colour:
"""),
    code(r'''
messages = elite.get_action({"speaker_0": LANDMARK_COLORS.astype(np.float32),
                             "listener_0": np.zeros((3, 11), np.float32)})[0]["speaker_0"]
print("speaker's message (3 numbers in [0, 1]) for each goal:")
for goal, (colour, message) in enumerate(zip(LANDMARK_COLORS, messages)):
    print(f"  goal landmark {goal} (colour {colour}) -> message {message}")


def ends_nearest(policy, episodes, seed):
    """Per goal landmark: the fraction of episodes in which the listener ends nearest each landmark."""
    result = evaluate_team(policy, episodes, seed, env="batched")  # the same episodes as the table above
    return np.array([[np.mean(result.final_nearest[result.goal == g] == k) for k in range(3)] for g in range(3)])


policy = agent_policy(elite)
teams = {"true message": policy, "speaker shown the next landmark's colour": shown_wrong_goal(policy, 1)}
for title, team in teams.items():
    table = ends_nearest(team, EVAL_EPISODES, EVAL_SEED)
    print(f"\nlistener ends nearest to landmark 0 / 1 / 2 ({title}):")
    for g, row in enumerate(table):
        print(f"  goal {g}: " + " / ".join(f"{share:4.0%}" for share in row))
''', tags=IGNORE),
    md(r"""
With the true message, each row should put most of its weight on the diagonal (the listener ends at the
goal); with the wrong message, on the *next* landmark: the listener follows what it is told.

**More than one training seed.** One run can be lucky. `benchmarks/speaker_listener_target.py` trains the
preset with three seeds (and, for comparison, MADDPG and the discrete-action variant), each judged like
this on 1,000 fresh mpe2 episodes, and writes `benchmarks/results/speaker_listener_target.json`; its
results:
"""),
    code(r'''
# the repository's benchmarks/ folder, next to the marlkit package of this checkout
results = Path(marlkit.presets.__file__).resolve().parents[1] / "benchmarks" / "results"
bench = json.loads((results / "speaker_listener_target.json").read_text())
print(f"{bench['episodes']} fresh episodes per policy (± standard error)\n")
print(f"{'run':<22}{'env steps':>11}{'wall s':>8}{'elite':>14}{'wrong goal':>14}{'success':>9}")
for run in bench["runs"]:
    name = f"{run['algo']} seed {run['seed']}" + (" discrete" if run["discrete"] else "")
    elite_, wrong = run["elite"], run["elite_wrong_goal"]
    success = f"{elite_['success_rate']:.0%}" if "success_rate" in elite_ else "-"
    print(f"{name:<22}{run['env_steps']:>11,}{run['wall_s']:>8.0f}{elite_['mean']:>8.1f} ± {elite_['stderr']:<3.1f}"
          f"{wrong['mean']:>8.1f} ± {wrong['stderr']:<3.1f}{success:>9}")
for name, b in bench["baselines"].items():
    print(f"{name:<36}{b['mean']:>16.1f} ± {b['stderr']:.1f}")
'''),
    md(r"""
## 8.7 Why the previous preset learned the centre trick

The previous version of this preset reached the guide's -30 and stopped there: its elite scored the same
with the true message and with a wrong one. The measurements that found the cause are in the comments of
`marlkit/presets.py`, printed here from the source so that the two cannot disagree:
"""),
    code(r'''
source = inspect.getsource(marlkit.presets)
start = source.index("# Speaker Listener, MADDPG/MATD3")
print(source[start:source.index("_SPEAKER_LISTENER_HP = {")].replace("# ", "").replace("#", ""))
'''),
    md(r"""
The credit path explains why speed matters. The speaker's message at step $t$ reaches the listener's
observation at step $t+1$, and changes the reward only after the listener has acted on it: the speaker
learns what its words are worth only through its critic's *bootstrapped* value, a weak and slow signal.
The listener's critic, meanwhile, sees the goal directly (the speaker's observation is part of its input)
and pulls the listener towards wherever the goal tends to be. While the messages are uninformative, that is
the centre of the landmarks. With slow actors the listener settles there before the speaker's messages
differ enough to be worth reading, and once it ignores them, the speaker's critic learns that its words do
not matter: a stable, bad equilibrium. With fast actors the two find a code first.

`marlkit.envs.probes.CommunicationEnv` reduces Speaker Listener to exactly this credit path (two steps: the
speaker speaks, the listener answers), and `tests/test_communication.py` checks that MADDPG and MATD3
solve it and that a listener that cannot hear the message cannot.

## Summary

* A preset is the guide's set-up as plain dictionaries; the guide's code turns it into an environment,
  a population, a shared buffer, a tournament and a mutation operator, and `train_multi_agent_off_policy`
  runs the generations.
* A run leaves a record (`generations.jsonl`, `run.json`) from which the fitness curve, the hyperparameter
  trajectories and the family tree are drawn, and an elite checkpoint that loads with
  `weights_only=True`.
* A score is not a skill. Judge a team on fresh seeded episodes, against the baseline that exposes its
  failure mode (here the centre listener), with the ablation that removes the skill (the wrong message),
  and over more than one training seed.

## Exercises

1. **The stopping rule (code).** Write `all_members_reached(fitness_histories, target, window=3)`, the
   early-stopping rule of section 8.3. The check compares your function with marlkit's
   `target_reached` on cases chosen to catch the usual mistakes (the best member instead of every
   member, the last evaluation instead of the mean of the window, `>` instead of `>=`).
2. **Seeds.** Run the quick mode with `SEED = 1` and `SEED = 2`. How much do the final best fitness
   and the elite's evaluation change? What does that say about comparing two settings with one run
   each?
3. **The centre trick, reproduced.** Set `INIT_HP["LR_ACTOR"] = 1e-4` and `INIT_HP["LR_CRITIC"] = 1e-3`
   (the previous preset's rates) and run the full mode with `TARGET = None`. Compare the elite with and
   without the wrong message. Which row of the table in 8.7 did you reproduce?
4. **MADDPG instead of MATD3.** `get_preset(PRESET, algo="MADDPG")` gives the same set-up for MADDPG.
   Compare the two at equal env steps (the benchmark's table has one run of each); where in `matd3.py`
   does the difference come from?
5. **Read the record.** Using `record.generations` only, count how often each kind of mutation
   appears among the members of generations 1 and later, and how often among the members that were
   selected as parents of the next generation. Which mutations survive selection more often than
   chance?
6. **A second ablation.** Replace the speaker's message by a constant (e.g. the average of its three
   messages) instead of a wrong one. Where does the listener go now, and how does its score compare with
   the centre listener's? What does that tell you about what the listener does when the message is
   uninformative?
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
