"""Forward + backward time of marlkit's networks on the guide's two tutorial settings.

* simple_speaker_listener (MADDPG/MATD3): speaker obs 3 / action Box(0, 1, (3,)), listener obs 11 /
  action Box(0, 1, (5,)), the guide's net_config (encoder [32, 32] ReLU, head [32]); each actor and the
  centralised QCritic, at batch 32 and 256.
* Space Invaders: a 4x84x84 uint8 observation, 6 discrete actions, the default ("Nature") CNN; the
  DeterministicActor (MADDPG) and StochasticActor (IPPO) at batch 128.

Each row is also timed for a plain `nn.Sequential` built from the *same* layers, so the `overhead`
column is what marlkit's forward adds (input checks, preprocessing, the encoder/head split).

    python benchmarks/networks.py [--threads N] [--repeats R]

Prints a table and writes benchmarks/results/networks.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from gymnasium.spaces import Box, Discrete
from torch import nn

from marlkit.networks import DeterministicActor, EvolvableCNN, EvolvableNetwork, QCritic, StochasticActor

NET_CONFIG = {  # the guide's speaker-listener net_config, per agent
    "encoder_config": {"hidden_size": [32, 32], "activation": "ReLU"},
    "head_config": {"hidden_size": [32]},
}
SPEAKER_OBS, LISTENER_OBS = Box(-np.inf, np.inf, (3,), np.float32), Box(-np.inf, np.inf, (11,), np.float32)
SPEAKER_ACT, LISTENER_ACT = Box(0, 1, (3,), np.float32), Box(0, 1, (5,), np.float32)
INVADERS_OBS, INVADERS_ACT = Box(0, 255, (4, 84, 84), np.uint8), Discrete(6)
RESULTS = Path(__file__).parent / "results" / "networks.json"


def as_sequential(net: EvolvableNetwork) -> nn.Sequential:
    """The same layers as `net`, chained in a plain nn.Sequential (no checks, no preprocessing)."""
    enc, head = net.encoder, net.head
    layers: list[nn.Module] = []
    if isinstance(enc, EvolvableCNN):
        layers += [m for conv in enc.convs for m in (conv, enc.act)] + [nn.Flatten()]
    else:
        layers += [m for linear in enc.hidden for m in (linear, enc.act)]
    layers += [enc.output, enc.output_act]
    layers += [m for linear in head.hidden for m in (linear, head.act)] + [head.output, head.output_act]
    return nn.Sequential(*layers)


def time_pair(ours, baseline, params, repeats: int, inner: int) -> tuple[float, float]:
    """Best-of-`repeats` ms of one forward + backward for `ours` and `baseline`, timed alternately.

    Alternating the two keeps a busy (shared) machine from favouring whichever ran second.
    """

    def run(step) -> float:
        start = time.perf_counter()
        for _ in range(inner):
            for p in params:
                p.grad = None
            step()
        return (time.perf_counter() - start) / inner * 1e3

    run(ours), run(baseline)  # warm-up (allocator, lazy init)
    pairs = [(run(ours), run(baseline)) for _ in range(repeats)]
    return min(a for a, _ in pairs), min(b for _, b in pairs)


def encoder_layers(enc) -> list[nn.Module]:
    return [m for linear in enc.hidden for m in (linear, enc.act)] + [enc.output, enc.output_act]


def cases(batch_sizes: tuple[int, ...]):
    """(name, batch, marlkit step, plain-torch step, parameters) for every benchmark row."""
    torch.manual_seed(0)
    speaker = DeterministicActor(SPEAKER_OBS, SPEAKER_ACT, NET_CONFIG)
    listener = DeterministicActor(LISTENER_OBS, LISTENER_ACT, NET_CONFIG)
    critic = QCritic([SPEAKER_OBS, LISTENER_OBS], [SPEAKER_ACT, LISTENER_ACT], NET_CONFIG)
    for batch in batch_sizes:
        obs_s, obs_l = torch.randn(batch, 3), torch.randn(batch, 11)
        act_s, act_l = torch.rand(batch, 3), torch.rand(batch, 5)
        for name, actor, obs in (("speaker actor", speaker, obs_s), ("listener actor", listener, obs_l)):
            plain = as_sequential(actor.net)

            def ours(actor=actor, obs=obs):
                actor(obs).sum().backward()

            def baseline(actor=actor, plain=plain, obs=obs):
                (actor.action_bias + actor.action_scale * plain(obs)).sum().backward()

            yield name, batch, ours, baseline, list(actor.parameters())

        enc_s, enc_l = (nn.Sequential(*encoder_layers(e)) for e in critic.net.encoders)
        head = nn.Sequential(*[m for lin in critic.net.head.hidden for m in (lin, critic.net.head.act)],
                             critic.net.head.output)

        def ours_critic(obs_s=obs_s, obs_l=obs_l, act_s=act_s, act_l=act_l):
            critic([obs_s, obs_l], [act_s, act_l]).sum().backward()

        def baseline_critic(obs_s=obs_s, obs_l=obs_l, act_s=act_s, act_l=act_l, enc_s=enc_s, enc_l=enc_l, head=head):
            head(torch.cat([enc_s(obs_s), enc_l(obs_l), act_s, act_l], dim=-1)).squeeze(-1).sum().backward()

        yield "centralised critic", batch, ours_critic, baseline_critic, list(critic.parameters())

    batch = 128
    obs = torch.randint(0, 256, (batch, 4, 84, 84), dtype=torch.uint8)
    for name, actor in (("invaders CNN actor (det.)", DeterministicActor(INVADERS_OBS, INVADERS_ACT)),
                        ("invaders CNN actor (stoch.)", StochasticActor(INVADERS_OBS, INVADERS_ACT))):
        plain = as_sequential(actor.net)
        actions = torch.randint(0, 6, (batch,))

        def ours_cnn(actor=actor, actions=actions):
            out = actor(obs)
            (out.sum() if isinstance(out, torch.Tensor) else out.log_prob(actions).sum()).backward()

        def baseline_cnn(plain=plain):
            plain(obs.float() / 255.0).sum().backward()

        yield name, batch, ours_cnn, baseline_cnn, list(actor.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: stable on a shared CPU)")
    parser.add_argument("--repeats", type=int, default=7, help="timings per row (the fastest is reported)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON output path")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows = []
    header = f"{'network':<28}{'batch':>6}{'marlkit ms':>12}{'plain ms':>10}{'overhead':>10}"
    print(header)
    print("-" * len(header))
    for name, batch, ours, baseline, params in cases((32, 256)):
        inner = 10 if "CNN" in name else 200
        ours_ms, plain_ms = time_pair(ours, baseline, params, args.repeats, inner)
        rows.append({"network": name, "batch": batch, "forward_backward_ms": round(ours_ms, 4),
                     "plain_torch_ms": round(plain_ms, 4), "overhead": round(ours_ms / plain_ms, 3)})
        print(f"{name:<28}{batch:>6}{ours_ms:>12.3f}{plain_ms:>10.3f}{ours_ms / plain_ms:>9.2f}x")

    result = {
        "benchmark": "networks: forward + backward, best-of-repeats ms per call",
        "torch": torch.__version__,
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.processor(),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
