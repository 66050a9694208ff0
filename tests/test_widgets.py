"""The notebook widgets, driven from Python: set child controls, click buttons, read .value and .summary()."""

from __future__ import annotations

import copy
import html
import re

import pytest
import torch
import yaml
from gymnasium.spaces import Box, Discrete

from marlkit import MADDPG, Mutations, resolve_net_config
from marlkit.networks import DeterministicActor, StochasticActor
from marlkit.widgets import (
    LiveTrainingView,
    MutationPanel,
    NetConfigBuilder,
    config_diff,
    count_parameters,
    describe_network,
)

# the guide's bob/fred example
AGENT_IDS = ["bob_0", "bob_1", "fred_0", "fred_1"]
OBS = [Box(-1, 1, (16,)), Box(-1, 1, (16,)), Box(-1, 1, (32,)), Box(-1, 1, (32,))]
ACT = [Discrete(2)] * 4
GUIDE_PER_GROUP = {
    "bob": {"latent_dim": 32, "encoder_config": {"hidden_size": [32], "activation": "ReLU"},
            "head_config": {"hidden_size": [32]}},
    "fred": {"latent_dim": 32, "encoder_config": {"hidden_size": [64, 64], "activation": "ReLU"},
             "head_config": {"hidden_size": [32]}},
}


def shown_text(widget):
    """What the widget's own text panel shows, as text."""
    return html.unescape(re.sub(r"<[^>]+>", "", widget.text.value))


def check_display(widget):
    bundle = widget._repr_mimebundle_()
    assert bundle["text/plain"] == widget.summary() == repr(widget)
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert shown_text(widget) == widget.summary()


# --------------------------------------------------------------------------------------------------
# NetConfigBuilder
# --------------------------------------------------------------------------------------------------
def test_builder_defaults_resolve_and_report_parameter_counts():
    builder = NetConfigBuilder(AGENT_IDS, OBS, ACT)
    value = builder.value
    assert set(value) == {"latent_dim", "encoder_config", "head_config"}  # single-level form
    assert builder.error is None
    summary = builder.summary()
    for agent, obs, act in zip(AGENT_IDS, OBS, ACT):
        actor = DeterministicActor(obs, act, builder.resolved[agent])
        assert f"{agent}: " in summary and f"[{count_parameters(actor):,} parameters]" in summary
    check_display(builder)


def test_builder_per_group_reproduces_the_guide_and_builds_maddpg():
    builder = NetConfigBuilder(AGENT_IDS, OBS, ACT)
    builder.form.value = "per group"
    assert list(builder.entries) == ["bob", "fred"]
    builder.entries["bob"].encoder_hidden.value = "32"
    builder.entries["fred"].encoder_hidden.value = "64, 64"
    for name in ("bob", "fred"):
        builder.entries[name].head_hidden.value = "[32]"
    assert builder.value == GUIDE_PER_GROUP
    assert yaml.safe_load(builder.yaml()) == GUIDE_PER_GROUP
    assert "fred_0: obs (32,) -> MLP [64, 64] ReLU -> latent 32 -> head MLP [32] ReLU -> 2 outputs" in builder.summary()
    # the parameter counts shown are those of the actors MADDPG builds from this net_config
    agent = MADDPG(OBS, ACT, AGENT_IDS, net_config=builder.value)
    for name in AGENT_IDS:
        assert f"[{count_parameters(agent.actors[name]):,} parameters]" in builder.summary()
    check_display(builder)


def test_builder_controls_change_value_and_summary():
    builder = NetConfigBuilder(AGENT_IDS, OBS, ACT, form="per agent")
    before = builder.summary()
    controls = builder.entries["bob_1"]
    controls.activation.value = "Tanh"
    controls.latent_dim.value = 16
    assert builder.value["bob_1"]["encoder_config"]["activation"] == "Tanh"
    assert builder.value["bob_1"]["latent_dim"] == 16
    assert builder.resolved["bob_1"]["latent_dim"] == 16
    assert builder.summary() != before and "MLP [64] Tanh -> latent 16" in builder.summary()
    assert "MLP [64] Tanh -> latent 16" in shown_text(builder)
    # switching forms and back keeps what was typed
    builder.form.value = "single"
    builder.form.value = "per agent"
    assert builder.value["bob_1"]["latent_dim"] == 16


def test_builder_shows_errors_instead_of_raising():
    builder = NetConfigBuilder(AGENT_IDS, OBS, ACT, share_parameters=True, form="per agent")
    assert builder.error is None  # every member of a group starts with the same config: one network can have it
    builder.entries["bob_1"].encoder_hidden.value = "64, 64"
    assert "per-agent, but IPPO shares parameters within group 'bob'; configure 'bob' instead" in builder.error
    assert "error: net_config key 'bob_0' is per-agent" in builder.summary()
    assert builder.resolved == {}
    builder.form.value = "per group"  # the fix the error suggests
    assert builder.error is None
    assert re.search(r"\n  bob \(bob_0, bob_1\): +obs \(16,\) -> MLP", builder.summary())
    assert "StochasticActor" in builder.summary()
    actor = StochasticActor(OBS[0], ACT[0], builder.resolved["bob"])
    assert f"[{count_parameters(actor):,} parameters]" in builder.summary()

    builder.entries["fred"].encoder_hidden.value = "64, x"
    assert "encoder sizes of 'fred': expected layer sizes such as '64, 64', got '64, x'" in builder.error
    assert "error: encoder sizes of 'fred'" in shown_text(builder)
    builder.entries["fred"].encoder_hidden.value = "64"
    assert builder.error is None


def test_builder_images_and_no_action_spaces():
    ids = ["pilot_0", "radar_0"]
    spaces = [Box(0, 255, (32, 32, 3), dtype="uint8"), Box(-1, 1, (6,))]
    builder = NetConfigBuilder(ids, spaces)  # no action spaces: a bare EvolvableNetwork with one output
    assert builder.entries["all agents"].encoder_hidden.disabled  # one entry for both: no MLP sizes
    assert "hidden_size" not in builder.value["encoder_config"]
    builder.form.value = "per agent"
    assert builder.entries["pilot_0"].encoder_hidden.disabled
    assert not builder.entries["radar_0"].encoder_hidden.disabled
    summary = builder.summary()
    assert "pilot_0: obs (32, 32, 3) -> CNN channels" in summary
    assert "radar_0: obs (6,) -> MLP [64] ReLU" in summary and "-> 1 output " in summary
    assert builder.error is None


def test_builder_text_is_deterministic():
    def interact():
        b = NetConfigBuilder(AGENT_IDS, OBS, ACT, form="per group")
        b.entries["fred"].head_hidden.value = "16, 16"
        return b.summary()

    assert interact() == interact()


def test_builder_rejects_mismatched_spaces():
    with pytest.raises(ValueError, match="one space per agent"):
        NetConfigBuilder(AGENT_IDS, OBS[:3])


# --------------------------------------------------------------------------------------------------
# MutationPanel
# --------------------------------------------------------------------------------------------------
def test_panel_value_builds_mutations_and_shows_its_normalisation():
    panel = MutationPanel()
    assert set(panel.value) == {"no_mutation", "architecture", "new_layer_prob", "parameters", "activation",
                                "rl_hp", "mutation_sd"}
    Mutations(**panel.value)  # usable as is
    assert panel.mut_p["NO_MUT"] == panel.value["no_mutation"]
    panel.sliders["architecture"].value = 0.6
    assert panel.value["architecture"] == 0.6
    probabilities = Mutations(**panel.value).probabilities
    assert f"architecture  {probabilities['architecture']:6.3f}" in panel.summary()
    assert f"no mutation   {probabilities['None']:6.3f}" in panel.summary()
    assert "activation     0.000    (disabled)" in panel.summary()
    check_display(panel)


def test_panel_all_zero_is_an_error_not_an_exception():
    panel = MutationPanel()
    panel.value = {"no_mutation": 0, "architecture": 0, "parameters": 0, "activation": 0, "rl_hp": 0}
    assert "error: Mutations needs at least one option with a positive probability" in panel.summary()
    panel.preview_button.click()
    assert "preview 1 (rand_seed=[0, 0]): error: Mutations needs at least one option" in panel.summary()
    with pytest.raises(ValueError, match="unknown Mutations option"):
        panel.value = {"new_layer": 0.5}


def test_panel_architecture_preview_mutates_a_copy():
    panel = MutationPanel(no_mutation=0, architecture=1, parameters=0, rl_hp=0)
    original = copy.deepcopy(panel.network.config)
    panel.preview_button.click()
    preview = panel.last_preview
    assert preview["option"] == "architecture" and preview["label"].startswith("arch actors/network ")
    assert preview["record"]["method"] in panel.network.mutation_methods
    assert preview["before"]["network"] != preview["after"]["network"]
    assert panel.network.config == original  # only the copy changed
    summary = panel.summary()
    assert f"record: {preview['record']}" in summary and "  before: obs (8,)" in summary
    assert preview["changes"][0] in summary
    # the preview is exactly the record replayed on a fresh copy
    twin = panel.network.clone()
    twin.apply_mutation(preview["record"])
    assert describe_network(twin) in preview["after"]["network"]
    # changing the sliders discards the preview drawn with the old probabilities
    panel.sliders["rl_hp"].value = 0.5
    assert panel.last_preview is None and "press 'preview a mutation'" in panel.summary()


def test_panel_previews_other_options_and_is_repeatable():
    def previews(**options):
        off = dict.fromkeys(("no_mutation", "architecture", "parameters", "activation", "rl_hp"), 0.0)
        panel = MutationPanel(seed=3, **{**off, **options})
        texts = []
        for _ in range(3):
            panel.preview_button.click()
            texts.append(panel.summary())
        return texts

    rl = previews(rl_hp=1.0)
    assert rl == previews(rl_hp=1.0)  # same seed, same clicks: same text (nbval compares it)
    assert "drew 'rl_hp' -> agent.mut = 'rl_hp" in rl[0] and "changed: " in rl[0]
    params = previews(parameters=1.0, mutation_sd=0.5)
    assert "agent.mut = 'params'" in params[0] and "numbers perturbed" in params[0]
    act = previews(activation=1.0)
    assert "change_activation" in act[0] and "activation: ReLU ->" in act[0]


def test_panel_previews_an_agent_without_changing_it():
    agent = MADDPG([Box(-1, 1, (4,)), Box(-1, 1, (3,))], [Discrete(2), Box(-1, 1, (2,))], ["a_0", "b_0"], seed=0)
    configs = {name: copy.deepcopy(net.config) for name, net in agent.networks().items()}
    weights = [p.detach().clone() for p in agent.actors["a_0"].parameters()]
    panel = MutationPanel(agent, no_mutation=0, architecture=1, parameters=0, rl_hp=0)
    panel.preview()
    assert panel.last_preview["label"].startswith("arch ")
    assert any(name in panel.summary() for name in agent.networks())
    panel.value = {"architecture": 0, "parameters": 1}
    panel.preview()
    assert "actors/a_0: " in panel.summary() and "numbers perturbed" in panel.summary()
    assert {name: net.config for name, net in agent.networks().items()} == configs
    assert all(torch.equal(a, b) for a, b in zip(weights, agent.actors["a_0"].parameters()))


def test_widgets_leave_torch_random_stream_alone():
    state = torch.get_rng_state()
    NetConfigBuilder(AGENT_IDS, OBS, ACT, form="per agent").entries["bob_0"].latent_dim.value = 24
    panel = MutationPanel(no_mutation=0, architecture=1, parameters=0, rl_hp=0)
    for _ in range(3):
        panel.preview()
    assert torch.equal(torch.get_rng_state(), state)


def test_config_diff_names_nested_keys():
    assert config_diff({"a": {"b": [1], "c": [{"x": 1}, {"x": 2}]}}, {"a": {"b": [1, 2], "c": [{"x": 1}, {"x": 3}]}}) \
        == ["a.b: [1] -> [1, 2]", "a.c[1].x: 2 -> 3"]


# --------------------------------------------------------------------------------------------------
# LiveTrainingView
# --------------------------------------------------------------------------------------------------
def member(index, fitness, parent=None):
    return {"index": index, "steps": 100, "fitness": fitness, "mean_fitness": fitness,
            "hyperparameters": {"lr_actor": 1e-3}, "mutation": None, "parent": parent}


GENERATIONS = [
    {"generation": 0, "global_steps": 300, "wall_time": 1.0, "eval_loop": 1,
     "members": [member(0, -50.0), member(1, -20.0), member(2, None)]},
    {"generation": 1, "global_steps": 600, "wall_time": 2.5, "eval_loop": 1,
     "members": [member(1, -18.0, 1), member(3, -10.0, 1), member(4, -30.0, 2)]},
]


def test_live_view_table_value_and_figure():
    view = LiveTrainingView()
    assert "waiting for the first generation" in view.summary()
    view(GENERATIONS[0])
    first_png = bytes(view.image.value)
    assert first_png.startswith(b"\x89PNG")
    view(GENERATIONS[1])
    assert bytes(view.image.value) != first_png  # redrawn
    assert view.value["best"] == [-20.0, -10.0]
    assert view.value["mean"] == [-35.0, pytest.approx(-58 / 3)]
    assert view.value["global_steps"] == [300, 600]
    assert view.value["generations"] == GENERATIONS
    lines = view.summary().splitlines()
    assert lines[0] == "LiveTrainingView (fitness): 2 generations, 600 env steps; best -10.00 (agent 3, generation 1)"
    assert lines[2] == "   0        300    -20.00    -35.00   0: -50.00  1: -20.00  2: n/a"
    assert "wall" not in view.summary()  # wall time differs run to run; the text must not
    check_display(view)
    view.reset()
    assert view.value["generations"] == [] and "waiting" in view.summary()


def test_live_view_keeps_the_last_rows_and_replays_a_record(tmp_path):
    from marlkit.training.records import RunRecord

    record = RunRecord(tmp_path / "run")
    for g in range(5):
        record.log({**GENERATIONS[1], "generation": g, "global_steps": 300 * (g + 1)})
    view = LiveTrainingView(plot=False, max_rows=2).extend(RunRecord.load(tmp_path / "run").generations)
    assert "... 3 earlier generations" in view.summary()
    assert len(view.value["generations"]) == 5 and bytes(view.image.value) == b""


def test_live_view_as_on_generation_callback(tmp_path):
    from mpe2 import simple_speaker_listener_v4

    from marlkit import (
        MultiAgentReplayBuffer,
        SyncPettingZooVecEnv,
        TournamentSelection,
        create_population,
        train_multi_agent_off_policy,
    )

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    env = SyncPettingZooVecEnv([lambda: simple_speaker_listener_v4.parallel_env(continuous_actions=True)])
    try:
        env.reset(seed=0)
        agents = env.agents
        net = {"encoder_config": {"hidden_size": [16]}, "head_config": {"hidden_size": [16]}}
        init_hp = {"BATCH_SIZE": 8, "LEARN_STEP": 10, "POP_SIZE": 2, "AGENT_IDS": agents}
        pop = create_population("MADDPG", [env.single_observation_space(a) for a in agents],
                                [env.single_action_space(a) for a in agents], net, init_hp, population_size=2,
                                num_envs=1, seed=0)
        memory = MultiAgentReplayBuffer(1000, ["state", "action", "reward", "next_state", "done"], agents, seed=0)
        view = LiveTrainingView()
        train_multi_agent_off_policy(
            env, "simple_speaker_listener_v4", "MADDPG", pop, memory, INIT_HP=init_hp, net_config=net,
            max_steps=100, evo_steps=50, eval_steps=10, learning_delay=20,  # 2 generations: 100 steps per member
            tournament=TournamentSelection(2, True, 2, 1, rand_seed=0), mutation=MutationPanel(seed=0).mutations(0),
            verbose=False, seed=0, run_dir=tmp_path / "run", on_generation=view,
        )
    finally:
        env.close()
        torch.set_num_threads(threads)
    assert len(view.value["generations"]) == 2
    assert view.value["global_steps"] == [100, 200]
    assert view.summary().startswith("LiveTrainingView (fitness): 2 generations, 200 env steps")


def test_resolve_net_config_used_by_builder_matches_library():
    builder = NetConfigBuilder(AGENT_IDS, OBS, ACT, form="per group")
    assert builder.resolved == resolve_net_config(builder.value, AGENT_IDS, OBS)
