"""Every code block of the guide, run with its imports changed to marlkit (and tiny budgets).

The code is read from the guide itself (``../shared/reference/multi_agent_training.rst``), so the tests
follow the guide rather than a copy of it. The only edits: import lines (``IMPORTS``), and numbers that
set a budget or a size shrunk by text substitution (each test's ``shrink``); every substituted text must
still be in the guide. A few names the guide uses before (or without) defining them are supplied the way
a reader would: ``tournament`` and ``mutations`` by the guide's own statements from its custom loop, the
rest (``is_vectorised``, ``sum_scores``, ``MUTATION_PARAMS``, ``accelerator``) as plain values.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO.parent / "shared" / "reference" / "multi_agent_training.rst"

IMPORTS = {
    "from pettingzoo.mpe import simple_speaker_listener_v4": "from mpe2 import simple_speaker_listener_v4",
    "from agilerl.components.multi_agent_replay_buffer import MultiAgentReplayBuffer": (
        "from marlkit import MultiAgentReplayBuffer"
    ),
    "from agilerl.hpo.mutation import Mutations": "from marlkit import Mutations",
    "from agilerl.hpo.tournament import TournamentSelection": "from marlkit import TournamentSelection",
    "from agilerl.utils.utils import create_population": "from marlkit import create_population",
    "from agilerl.utils.utils import make_multi_agent_vect_envs": "from marlkit import make_multi_agent_vect_envs",
    "from agilerl.vector.pz_async_vec_env import AsyncPettingZooVecEnv": "from marlkit import AsyncPettingZooVecEnv",
    "from agilerl.algorithms.core.registry import HyperparameterConfig, RLParameter": (
        "from marlkit import HyperparameterConfig, RLParameter"
    ),
    "from agilerl.training.train_multi_agent_off_policy import train_multi_agent_off_policy": (
        "from marlkit import train_multi_agent_off_policy"
    ),
    "from agilerl.training.train_multi_agent_on_policy import train_multi_agent_on_policy": (
        "from marlkit import train_multi_agent_on_policy"
    ),
}
# The MADDPG population block uses HyperparameterConfig and RLParameter without importing them (the IPPO
# block, later, imports them): a reader adds the IPPO block's import line.
MISSING_IMPORT = "from agilerl.algorithms.core.registry import HyperparameterConfig, RLParameter"

# Sizes shared by the blocks that build the MADDPG set-up: 2 sub-envs, a population of 2.
SMALL_SETUP = {
    "num_envs = 8": "num_envs = 2",
    '"POP_SIZE": 4': '"POP_SIZE": 2',
    '"MEMORY_SIZE": 100000': '"MEMORY_SIZE": 5000',
}


@pytest.fixture(autouse=True)
def _small_and_local(tmp_path, monkeypatch):
    if not GUIDE.is_file():
        message = f"the guide is not at {GUIDE} (CI clones the repository with ../shared beside it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    monkeypatch.chdir(tmp_path)  # run records (runs/...) go to a temporary folder
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    np.random.seed(0)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------------ reading the guide
def code_blocks(language: str = "python") -> list[str]:
    """Every ``.. code-block:: <language>`` of the guide, dedented, in order."""
    lines = GUIDE.read_text().splitlines()
    blocks = []
    for i, line in enumerate(lines):
        if line.strip() != f".. code-block:: {language}":
            continue
        indent = len(line) - len(line.lstrip())
        body = []
        for following in lines[i + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break  # the first line indented no deeper than the directive ends the block
            body.append(following)
        blocks.append(textwrap.dedent("\n".join(body)).strip("\n") + "\n")
    return blocks


def block(containing: str, language: str = "python") -> str:
    """The one guide block that contains ``containing``."""
    found = [b for b in code_blocks(language) if containing in b]
    assert len(found) == 1, f"expected one {language} block of the guide with {containing!r}, found {len(found)}"
    return found[0]


def for_marlkit(code: str, shrink: dict[str, str] | None = None) -> str:
    """The guide's code with its imports changed to marlkit and the ``shrink`` substitutions applied."""
    for old, new in {**IMPORTS, **(shrink or {})}.items():
        if old in IMPORTS and old not in code:
            continue  # an import this block does not have
        assert old in code, f"the guide no longer contains {old!r}"
        code = code.replace(old, new)
    leftover = [line for line in code.splitlines() if re.search(r"\bagilerl\b", line)]
    assert not leftover, f"imports from agilerl without a marlkit replacement: {leftover}"
    return code


def run(code: str, namespace: dict, name: str) -> dict:
    exec(compile(code, f"guide: {name}", "exec"), namespace)
    return namespace


def guide_statements(code: str, *names: str) -> str:
    """The top-level imports and the assignments to ``names`` of a guide block, in order."""
    tree = ast.parse(code)
    keep = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom)) or (
        isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id in names for t in node.targets))]
    assert {t.id for node in keep if isinstance(node, ast.Assign) for t in node.targets} == set(names)
    return "\n".join(ast.get_source_segment(code, node) for node in keep) + "\n"


def selection_objects(namespace: dict) -> dict:
    """``tournament`` and ``mutations``, made by the guide's own statements in its custom loop block."""
    code = guide_statements(custom_loop_block(), "device", "tournament", "mutations")
    return run(for_marlkit(code), namespace, "tournament and mutations (custom training loop)")


def custom_loop_block() -> str:
    return block("while np.less([agent.steps[-1] for agent in pop], max_steps).all():")


def close_env(namespace: dict) -> None:
    env = namespace.get("env")
    if env is not None and not env.closed:
        env.close()


# ------------------------------------------------------------------------------------- vectorised environments
def test_vectorised_environment_block():
    namespace = run(for_marlkit(block("env = make_multi_agent_vect_envs(make_env, num_envs=8)")), {}, "vector env")
    env = namespace["env"]
    try:
        obs, _ = env.reset(seed=0)
        assert env.num_envs == 8 and set(obs) == {"speaker_0", "listener_0"}
        assert obs["listener_0"].shape == (8, 11)
    finally:
        env.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="'fork' for unguarded scripts is Linux only")
def test_vectorised_environment_block_as_an_unguarded_script(tmp_path):
    """``python vec.py`` with the guide's first block and no ``if __name__ == "__main__":`` guard."""
    script = tmp_path / "vec.py"
    script.write_text(for_marlkit(block("env = make_multi_agent_vect_envs(make_env, num_envs=8)")))
    assert "__main__" not in script.read_text()
    marker = f"marlkit-guide-test-{uuid.uuid4()}"  # every process the script starts inherits it
    env = {**os.environ, "MARLKIT_TEST_MARKER": marker, "PYTHONPATH": str(REPO)}
    with open(tmp_path / "log.txt", "w") as log:  # a file, not a pipe: a leftover worker would hold a pipe open
        result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, stdout=log, stderr=log,
                                timeout=120)
    output = (tmp_path / "log.txt").read_text()
    assert result.returncode == 0, output
    assert "Traceback" not in output, output
    deadline = time.monotonic() + 5.0
    while (leftovers := processes_with_marker(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert leftovers == [], f"processes left behind by the script: {leftovers}"


def processes_with_marker(marker: str) -> list[int]:
    """Live processes whose environment holds ``marker`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                state = next(line for line in (entry / "status").read_text().splitlines() if line.startswith("State"))
                if "zombie" not in state:
                    found.append(int(entry.name))
        except (OSError, StopIteration):
            continue  # gone meanwhile, or not ours to read
    return found


# -------------------------------------------------------------------------------- configuring network architectures
def test_net_config_forms_of_the_guide():
    from marlkit import IPPO, MADDPG

    namespace = run(block('agent_ids = ["bob_0", "bob_1", "fred_0", "fred_1"]'), {}, "environment definition")
    per_agent, per_group, single = (yaml.safe_load(code) for code in code_blocks("yaml"))  # the guide's order
    assert (list(per_agent), list(per_group)) == (namespace["agent_ids"], ["bob", "fred"]) and "latent_dim" in single
    spaces = namespace["observation_spaces"], namespace["action_spaces"], namespace["agent_ids"]

    def hidden(net):
        return net.net.net_config["encoder_config"]["hidden_size"]

    expected = {
        "per agent": (per_agent, {"bob_0": [32], "bob_1": [64, 64], "fred_0": [64, 64], "fred_1": [64, 64]}),
        "per group": (per_group, {"bob_0": [32], "bob_1": [32], "fred_0": [64, 64], "fred_1": [64, 64]}),
        "single": (single, dict.fromkeys(namespace["agent_ids"], [32])),
    }
    for form, (config, sizes) in expected.items():
        maddpg = MADDPG(*spaces, net_config=config)
        assert {agent: hidden(maddpg.actors[agent]) for agent in sizes} == sizes, form
    # Parameter sharing: "we could only use the latter configuration" (per group; single-level works too).
    ippo = IPPO(*spaces, net_config=per_group)
    assert {group: hidden(actor) for group, actor in ippo.actors.items()} == {"bob": [32], "fred": [64, 64]}
    assert {group: hidden(actor) for group, actor in IPPO(*spaces, net_config=single).actors.items()} == {
        "bob": [32], "fred": [32]}
    with pytest.raises(ValueError, match="net_config key 'bob_0' is per-agent, but IPPO shares parameters"):
        IPPO(*spaces, net_config=per_agent)  # bob_0 and bob_1 differ: one shared network cannot be both


# ------------------------------------------------------------------------------------------ off-policy training
def maddpg_population(namespace: dict) -> dict:
    code = MISSING_IMPORT + "\n" + block('"MADDPG",\n    observation_spaces,\n    action_spaces,\n    NET_CONFIG,\n'
                                         '    INIT_HP,\n    hp_config,')
    return run(for_marlkit(code, SMALL_SETUP), namespace, "create a population of MADDPG agents")


def test_maddpg_population_replay_buffer_and_training_function():
    namespace = maddpg_population({})
    try:
        pop = namespace["pop"]
        assert len(pop) == 2 and all(agent.algo == "MADDPG" for agent in pop)
        assert set(pop[0].hp_config.names()) == {"lr_actor", "lr_critic", "batch_size", "learn_step"}
        run(for_marlkit(block('import MultiAgentReplayBuffer\n\nfield_names')),
            namespace, "experience replay")
        assert namespace["memory"].agent_ids == namespace["INIT_HP"]["AGENT_IDS"]
        selection_objects(namespace)
        shrink = {"max_steps=2000000": "max_steps=400", "evo_steps=10000": "evo_steps=200",
                  "learning_delay=1000": "learning_delay=100"}
        run(for_marlkit(block("trained_pop, pop_fitnesses = train_multi_agent_off_policy("), shrink), namespace,
            "off-policy training loop")
        trained, fitnesses = namespace["trained_pop"], namespace["pop_fitnesses"]
        # max_steps=400 is each member's budget: 2 generations of 200 env steps per member
        assert len(fitnesses) == 2 and [agent.steps[-1] for agent in trained] == [400, 400]
        assert np.isfinite(fitnesses).all() and len(namespace["memory"]) == 2 * 2 * 200
    finally:
        close_env(namespace)


def test_custom_training_loop(capsys):
    shrink = {**SMALL_SETUP, "max_steps = 1000000": "max_steps = 400", "evo_steps = 10000": "evo_steps = 200"}
    # The loop reads two names it never defines; a reader of the guide sets them like this.
    namespace = {"is_vectorised": True, "sum_scores": True}
    try:
        run(for_marlkit(custom_loop_block(), shrink), namespace, "custom training loop")
    finally:
        close_env(namespace)
    pop = namespace["pop"]
    assert len(pop) == 2
    assert all(len(agent.fitness) == 2 and np.isfinite(agent.fitness).all() for agent in pop)
    # the guide's budget is per member: every member stopped at max_steps
    assert [agent.steps[-1] for agent in pop] == [400, 400] and namespace["total_steps"] == 2 * 400
    assert "--- Global steps 800 ---" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------- on-policy training
def test_ippo_population_and_training_function():
    namespace = maddpg_population({})  # the IPPO block reuses INIT_HP from the off-policy section
    close_env(namespace)
    try:
        code = block('"IPPO",\n    observation_spaces,')
        run(for_marlkit(code, {"num_envs = 8": "num_envs = 2", "population_size = 4": "population_size = 2"}),
            namespace, "create a population of IPPO agents")
        pop = namespace["pop"]
        assert len(pop) == 2 and all(agent.algo == "IPPO" for agent in pop)
        # the guide's per-agent keys name the only member of their groups: one network per group, as configured
        assert all(list(agent.actors) == ["speaker", "listener"] for agent in pop)
        assert all(actor.net.net_config["encoder_config"]["hidden_size"] == [32, 32]
                   for agent in pop for actor in agent.actors.values())
        selection_objects(namespace)
        namespace.update(MUTATION_PARAMS={"NO_MUT": 0.2, "ARCH_MUT": 0.2, "NEW_LAYER": 0.2, "PARAMS_MUT": 0.2,
                                          "ACT_MUT": 0.0, "RL_HP_MUT": 0.2}, accelerator=None)
        shrink = {"max_steps=1000000": "max_steps=400", "evo_steps=10000": "evo_steps=200"}
        run(for_marlkit(block("trained_pop, pop_fitnesses = train_multi_agent_on_policy("), shrink), namespace,
            "on-policy training loop")
        trained, fitnesses = namespace["trained_pop"], namespace["pop_fitnesses"]
        assert len(fitnesses) == 2 and [agent.steps[-1] for agent in trained] == [400, 400]
        assert np.isfinite(fitnesses).all()
    finally:
        close_env(namespace)


def test_every_python_block_of_the_guide_is_run_here():
    """A new code block in the guide needs a test here: each block is found by text some test uses."""
    used = [
        "env = make_multi_agent_vect_envs(make_env, num_envs=8)",
        'agent_ids = ["bob_0", "bob_1", "fred_0", "fred_1"]',
        '"MADDPG",\n    observation_spaces,\n    action_spaces,\n    NET_CONFIG,\n    INIT_HP,\n    hp_config,',
        'import MultiAgentReplayBuffer\n\nfield_names',
        "trained_pop, pop_fitnesses = train_multi_agent_off_policy(",
        "while np.less([agent.steps[-1] for agent in pop], max_steps).all():",
        '"IPPO",\n    observation_spaces,',
        "trained_pop, pop_fitnesses = train_multi_agent_on_policy(",
    ]
    blocks = code_blocks("python")
    assert sorted(blocks.index(block(text)) for text in used) == list(range(len(blocks)))
    assert len(code_blocks("yaml")) == 3  # the three net_config forms, all in test_net_config_forms_of_the_guide
