"""The contract every algorithm shares: checkpoints, clones, hyperparameters, mutations, population."""

import numpy as np
import pytest
import torch
from gymnasium import spaces

from marlkit import (
    MADDPG,
    MATD3,
    HyperparameterConfig,
    MultiAgentReplayBuffer,
    Mutations,
    RLParameter,
    create_population,
)
from marlkit.algorithms.base import read_checkpoint

AGENTS = ["speaker_0", "listener_0"]
OBS = [spaces.Box(-np.inf, np.inf, (3,), np.float32), spaces.Box(-np.inf, np.inf, (11,), np.float32)]
ACT_BOX = [spaces.Box(0.0, 1.0, (3,), np.float32), spaces.Box(0.0, 1.0, (5,), np.float32)]
ACT_DISCRETE = [spaces.Discrete(3), spaces.Discrete(5)]
NET = {"encoder_config": {"hidden_size": [16]}, "head_config": {"hidden_size": [16]}}
OFF_POLICY = [MADDPG, MATD3]


def make(cls, actions=ACT_BOX, **kw):
    return cls(OBS, actions, AGENTS, vect_noise_dim=2, net_config=NET, batch_size=8, seed=0, **kw)


def random_obs(n=2, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "speaker_0": rng.standard_normal((n, 3)).astype(np.float32),
        "listener_0": rng.standard_normal((n, 11)).astype(np.float32),
    }


def filled_memory(agent, n=64):
    memory = MultiAgentReplayBuffer(256, ["s", "a", "r", "n", "d"], AGENTS, seed=0)
    for t in range(n // 2):
        obs = random_obs(seed=t)
        _, raw = agent.get_action(obs)
        memory.save_to_memory(
            obs,
            raw,
            {a: np.ones(2) for a in AGENTS},
            random_obs(seed=t + 1),
            {a: np.zeros(2) for a in AGENTS},
            is_vectorised=True,
        )
    return memory


def greedy(agent, obs):
    agent.set_training_mode(False)
    return agent.get_action(obs)[0]


@pytest.mark.parametrize("cls", OFF_POLICY)
@pytest.mark.parametrize("actions", [ACT_BOX, ACT_DISCRETE])
def test_get_action_shapes_and_bounds(cls, actions):
    agent = make(cls, actions)
    action, raw = agent.get_action(random_obs())
    for a, space in zip(AGENTS, actions):
        if isinstance(space, spaces.Box):
            assert action[a].shape == (2, *space.shape) and action[a].dtype == np.float32
            assert np.all(action[a] >= space.low) and np.all(action[a] <= space.high)
        else:
            assert action[a].shape == (2,) and np.all((action[a] >= 0) & (action[a] < space.n))
    # an un-batched observation gives an un-batched action
    single = greedy(agent, {a: o[0] for a, o in random_obs().items()})
    assert single["speaker_0"].shape == (() if actions is ACT_DISCRETE else (3,))


def test_action_mask_is_respected():
    agent = make(MADDPG, ACT_DISCRETE)
    mask = np.zeros((2, 5), dtype=np.int8)
    mask[:, 3] = 1  # only action 3 allowed for the listener
    for training in (True, False):
        agent.set_training_mode(training)
        action, _ = agent.get_action(random_obs(), infos={"listener_0": {"action_mask": mask}})
        assert np.all(action["listener_0"] == 3)


@pytest.mark.parametrize("cls", OFF_POLICY)
def test_learn_returns_losses_and_changes_weights(cls):
    agent = make(cls)
    memory = filled_memory(agent)
    before = [p.detach().clone() for p in agent.critics["speaker_0"].parameters()]
    for _ in range(2):
        losses = agent.learn(memory.sample(8))
    assert set(losses["critic"]) == set(AGENTS) and set(losses["actor"]) == set(AGENTS)
    assert all(np.isfinite(v) for v in losses["critic"].values())
    after = list(agent.critics["speaker_0"].parameters())
    assert any(not torch.equal(b, a) for b, a in zip(before, after))


def test_matd3_delays_policy_updates():
    agent = make(MATD3, policy_freq=3)
    memory = filled_memory(agent)
    updated = [bool(agent.learn(memory.sample(8))["actor"]) for _ in range(6)]
    assert updated == [False, False, True, False, False, True]


def test_nan_placeholders_do_not_reach_the_losses():
    agent = make(MADDPG)
    memory = filled_memory(agent)
    batch = memory.sample(8)
    batch[0]["speaker_0"][0] = float("nan")  # an absent agent's observation
    batch[2]["listener_0"][1] = float("nan")  # ... its reward
    batch[4]["listener_0"][1] = float("nan")  # ... its done flag
    losses = agent.learn(batch)
    assert all(np.isfinite(v) for d in losses.values() for v in d.values())


@pytest.mark.parametrize("cls", OFF_POLICY)
def test_checkpoint_round_trip_weights_only(cls, tmp_path):
    agent = make(cls)
    agent.learn(filled_memory(agent).sample(8))
    agent.fitness, agent.scores, agent.steps = [1.0, 2.0], [3.0], [0, 100]
    agent.set_hyperparameter("lr_actor", 5e-4)
    path = tmp_path / "agent.pt"
    agent.save_checkpoint(path)
    torch.load(path, weights_only=True)  # no pickled code inside
    restored = cls.load(path)
    obs = random_obs()
    for a in AGENTS:
        np.testing.assert_array_equal(greedy(agent, obs)[a], greedy(restored, obs)[a])
    assert restored.fitness == [1.0, 2.0] and restored.steps == [0, 100] and restored.lr_actor == 5e-4
    assert restored.optimizers["actors/speaker_0"].param_groups[0]["lr"] == 5e-4
    # optimizer moments survive too
    state = restored.optimizers["critics/listener_0"].state_dict()["state"]
    assert len(state) > 0


def test_checkpoint_errors(tmp_path):
    agent = make(MADDPG)
    path = tmp_path / "agent.pt"
    agent.save_checkpoint(path)
    with pytest.raises(ValueError, match="MADDPG checkpoint, not MATD3"):
        MATD3.load(path)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="not a readable marlkit checkpoint"):
        read_checkpoint(truncated)
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a marlkit agent checkpoint"):
        MADDPG.load(tmp_path / "other.pt")


@pytest.mark.parametrize("cls", OFF_POLICY)
def test_clone_is_independent(cls):
    agent = make(cls)
    twin = agent.clone(index=7)
    assert twin.index == 7 and agent.index == 0
    obs = random_obs()
    np.testing.assert_array_equal(greedy(agent, obs)["listener_0"], greedy(twin, obs)["listener_0"])
    twin.learn(filled_memory(twin).sample(8))
    for p_a, p_t in zip(agent.actors["speaker_0"].parameters(), twin.actors["speaker_0"].parameters()):
        assert p_a is not p_t
    assert agent.learn_counter == 0 and twin.learn_counter == 1


@pytest.mark.parametrize("cls", OFF_POLICY)
def test_hyperparameter_takes_effect_at_once(cls):
    agent = make(cls)
    agent.set_hyperparameter("lr_critic", 0.0123)
    assert all(
        g["lr"] == 0.0123 for n, o in agent.optimizers.items() if n.startswith("critics") for g in o.param_groups
    )
    agent.set_hyperparameter("expl_noise", 0.5)
    assert all(n.scale == 0.5 for n in agent.noises.values())
    with pytest.raises(ValueError, match="'momentum' is not a mutable hyperparameter"):
        agent.set_hyperparameter("momentum", 0.9)


@pytest.mark.parametrize("cls", OFF_POLICY)
def test_per_agent_exploration_noise(cls, tmp_path):
    # by agent id, or by group id ("listener" covers listener_0); an agent's own entry wins
    agent = make(cls, O_U_noise=False, expl_noise={"speaker_0": 0.05, "listener": 1.5})
    assert agent.noises["speaker_0"].scale == 0.05 and agent.noises["listener_0"].scale == 1.5
    # the noise really differs: speaker actions stay near the greedy ones, listener actions do not
    obs = {a: np.zeros((2, s.shape[0]), np.float32) for a, s in zip(AGENTS, OBS)}
    agent.set_training_mode(False)
    greedy = agent.get_action(obs)[0]
    agent.set_training_mode(True)
    spread = {a: [] for a in AGENTS}
    for _ in range(50):
        noisy = agent.get_action(obs)[0]
        for a in AGENTS:
            spread[a].append(np.abs(noisy[a] - greedy[a]).mean())
    assert np.mean(spread["speaker_0"]) < 0.05 < 0.2 < np.mean(spread["listener_0"])
    # survives checkpoints (plain data) and clones
    agent.save_checkpoint(tmp_path / "a.pt")
    loaded = cls.load(tmp_path / "a.pt")
    assert loaded.noises["listener_0"].scale == 1.5 and loaded.expl_noise == {"speaker_0": 0.05, "listener": 1.5}
    assert agent.clone().noises["speaker_0"].scale == 0.05
    # one number again sets every agent; a dict can be set too
    agent.set_hyperparameter("expl_noise", 0.3)
    assert [n.scale for n in agent.noises.values()] == [0.3, 0.3]
    agent.set_hyperparameter("expl_noise", {"speaker_0": 0.0, "listener_0": 0.7})
    assert [agent.noises[a].scale for a in AGENTS] == [0.0, 0.7]


@pytest.mark.parametrize(
    "expl_noise, message",
    [
        ({"speaker_0": 0.1, "listner_0": 1.0}, r"unknown agent\(s\) \['listner_0'\]"),
        ({"speaker_0": 0.1}, "no value for agent 'listener_0'"),
        ({"speaker_0": 0.1, "listener_0": -1.0}, "agent 'listener_0' must be a non-negative number"),
        ({"speaker_0": 0.1, "listener_0": "big"}, "agent 'listener_0' must be a non-negative number"),
    ],
)
def test_per_agent_exploration_noise_errors(expl_noise, message):
    with pytest.raises(ValueError, match=message):
        make(MATD3, expl_noise=expl_noise)
    agent = make(MATD3)
    with pytest.raises(ValueError, match=message):
        agent.set_hyperparameter("expl_noise", expl_noise)
    assert agent.expl_noise == 0.1  # a refused value changes nothing


def test_per_agent_noise_cannot_be_evolved():
    agent = make(MATD3, expl_noise={"speaker_0": 0.1, "listener_0": 1.0})
    with pytest.raises(ValueError, match="hp_config key 'expl_noise'.*single numbers only"):
        HyperparameterConfig(expl_noise=RLParameter(min=0.0, max=2.0)).check(agent)


@pytest.mark.parametrize("cls", OFF_POLICY)
@pytest.mark.parametrize("actions", [ACT_BOX, ACT_DISCRETE])
def test_200_random_mutations_keep_a_working_agent(cls, actions):
    agent = make(cls, actions)
    agent.hp_config = HyperparameterConfig(
        lr_actor=RLParameter(min=1e-4, max=1e-2), batch_size=RLParameter(min=4, max=32, dtype=int)
    )
    mutations = Mutations(
        no_mutation=0.1, architecture=0.4, new_layer_prob=0.3, parameters=0.2, activation=0.1, rl_hp=0.2, rand_seed=0
    )
    memory = filled_memory(agent)
    pop = [agent]
    for i in range(200):
        pop = mutations.mutation(pop)
        if i % 20 == 0:
            pop[0].learn(memory.sample(pop[0].batch_size))
    agent = pop[0]
    assert 4 <= agent.batch_size <= 32 and 1e-4 <= agent.lr_actor <= 1e-2
    # actors and their targets kept identical architectures, so soft updates still line up
    for key in agent.actors:
        assert agent.actors[key].config == agent.actor_targets[key].config
        assert agent.critics[key].config == agent.critic_targets[key].config
    losses = agent.learn(memory.sample(agent.batch_size))
    assert all(np.isfinite(v) for v in losses["critic"].values())
    action, _ = agent.get_action(random_obs())
    assert action["listener_0"].shape[0] == 2


def test_mutation_probabilities_are_normalised_over_enabled_options():
    m = Mutations(no_mutation=1, architecture=1, new_layer_prob=0.5, parameters=0, activation=0, rl_hp=2)
    assert m.probabilities == {"None": 0.25, "architecture": 0.25, "parameters": 0.0, "activation": 0.0, "rl_hp": 0.5}
    with pytest.raises(ValueError, match="at least one option"):
        Mutations(0, 0, 0.5, 0, 0, 0)
    with pytest.raises(ValueError, match="new_layer_prob"):
        Mutations(1, 0, 1.5, 0, 0, 0)


def test_mutation_labels_and_elite_protection():
    pop = [make(MADDPG) for _ in range(3)]
    for i, agent in enumerate(pop):
        agent.index = i
        agent.hp_config = HyperparameterConfig(lr_actor=RLParameter(min=1e-4, max=1e-2))
    Mutations(0, 0, 0, 0, 0, rl_hp=1, mutate_elite=False, rand_seed=0).mutation(pop)
    assert pop[0].mut == "None" and pop[1].mut == "rl_hp lr_actor" and pop[0].lr_actor == 1e-3


def test_create_population_reads_the_guides_init_hp():
    init_hp = {
        "BATCH_SIZE": 32,
        "O_U_NOISE": True,
        "EXPL_NOISE": 0.1,
        "MEAN_NOISE": 0.0,
        "THETA": 0.15,
        "DT": 0.01,
        "LR_ACTOR": 0.001,
        "LR_CRITIC": 0.002,
        "GAMMA": 0.95,
        "MEMORY_SIZE": 100000,
        "LEARN_STEP": 100,
        "TAU": 0.01,
        "POLICY_FREQ": 2,
        "POP_SIZE": 4,
        "AGENT_IDS": AGENTS,
    }
    pop = create_population("MATD3", OBS, ACT_BOX, NET, init_hp, population_size=4, num_envs=8, seed=1)
    assert [a.index for a in pop] == [0, 1, 2, 3]
    assert pop[0].lr_critic == 0.002 and pop[0].policy_freq == 2 and pop[0].noises["speaker_0"].num_envs == 8
    maddpg = create_population("MADDPG", OBS, ACT_BOX, NET, init_hp, population_size=1)  # POLICY_FREQ tolerated
    assert maddpg[0].batch_size == 32
    with pytest.raises(ValueError, match="unknown INIT_HP key.*'LR_ACTR'"):
        create_population("MADDPG", OBS, ACT_BOX, NET, {**init_hp, "LR_ACTR": 1e-3})
    with pytest.raises(ValueError, match="unknown algorithm 'DQN'"):
        create_population("DQN", OBS, ACT_BOX, NET, init_hp)
    with pytest.raises(ValueError, match="hp_config key 'lr' is not a mutable hyperparameter"):
        create_population("MADDPG", OBS, ACT_BOX, NET, init_hp, HyperparameterConfig(lr=RLParameter(min=0, max=1)))
