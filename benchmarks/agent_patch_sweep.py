"""256 single-neuron patches of a DQN Q-network, batched through the engine vs one forward per patch.

Each experiment patches one unit of ``q_net.0`` or ``q_net.2`` (128 + 128 = 256 experiments per pair) from
a clean input into its corrupted twin. The looped path is what one ``activation_patching.py`` call per
neuron implies — a source run, a baseline run and a patched run per experiment; the batched path runs
every source and target once and all patched runs as rows of one batch, each resumed from the layer it
patches (prefix reuse; also timed without it, and the FLOPs both count). All must agree (checked here).
The batched paths are timed as the median of 5 calls after a warm-up, the looped path once.
Without ``--agent`` it uses a freshly initialised agent of the seed's shape (147 → 128 → 128 → 3) on
random observations: the speed of a Q-network does not depend on its weights.

    python benchmarks/agent_patch_sweep.py [--agent AGENT_DIR] [--pairs 1 16] [--device cpu]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from measure import flop_count, machine, timed

from reasonlens.agents.agent import AGENT_FILE, CONFIG_FILE, Agent
from reasonlens.agents.config import config_for
from reasonlens.agents.experiment import QNetAdapter
from reasonlens.agents.train import build_model
from reasonlens.interp import Experiment, Intervention, run_sweep
from reasonlens.interp.sweep import run_looped
from reasonlens.utils.io import write_json, write_yaml


def fresh_agent(folder: Path, device: str) -> Agent:
    config = config_for("MiniGrid-LavaCrossingS9N1-v0", device=device)
    torch.manual_seed(0)
    write_yaml(folder / CONFIG_FILE, config.model_dump())
    build_model(config).save(folder / AGENT_FILE)
    return Agent.load(folder, device=device)


def measure(agent: Agent, pairs: int, chunk_size: int) -> dict:
    generator = torch.Generator().manual_seed(pairs)
    observations = torch.randint(0, 11, (2 * pairs, agent.obs_dim), generator=generator).float()
    adapter = QNetAdapter(agent, observations)  # rows 0..pairs-1 corrupted targets, pairs..2·pairs-1 clean sources
    experiments = [
        Experiment(target=r, source=pairs + r, interventions=(Intervention(site=layer, units=(unit,)),))
        for layer in agent.hidden_layers()
        for unit in range(agent.layers()[layer])
        for r in range(pairs)
    ]
    paths = {
        "batched": lambda: run_sweep(adapter, experiments, chunk_size=chunk_size),
        "batched_no_reuse": lambda: run_sweep(adapter, experiments, chunk_size=chunk_size, reuse_prefix=False),
        "looped": lambda: run_looped(adapter, experiments),
    }
    timings, outputs = {}, {}
    for name, function in paths.items():
        function()  # warm-up
        repeats = 1 if name == "looped" else 5  # the batched paths take milliseconds: their median of 5
        timings[name], (_, outputs[name]) = timed(function, agent.device, repeats)
    q_values = {name: np.array([row["q_values"] for row in rows]) for name, rows in outputs.items()}
    flops = {name: flop_count(paths[name]) for name in ("batched", "batched_no_reuse")}
    return {
        "pairs": pairs,
        "experiments": len(experiments),
        "batched_seconds": round(timings["batched"], 4),
        "batched_no_reuse_seconds": round(timings["batched_no_reuse"], 4),
        "looped_seconds": round(timings["looped"], 4),
        "speedup": round(timings["looped"] / timings["batched"], 1),
        "speedup_no_reuse": round(timings["looped"] / timings["batched_no_reuse"], 1),
        "flops_saved_by_reuse": round(1 - flops["batched"] / flops["batched_no_reuse"], 3),
        "max_abs_difference": float(max(np.abs(q_values[n] - q_values["looped"]).max() for n in paths)),
        "same_actions": bool(all((q_values[n].argmax(-1) == q_values["looped"].argmax(-1)).all() for n in paths)),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agent", help="agent directory (default: a fresh agent of the seed's shape)")
    parser.add_argument("--pairs", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--chunk_size", type=int, default=8192)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default="benchmarks/out/agent_patch_sweep.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        agent = Agent.load(args.agent, args.device) if args.agent else fresh_agent(Path(folder), args.device)
        rows = [measure(agent, pairs, args.chunk_size) for pairs in args.pairs]
    report = {
        "machine": machine(torch.device(args.device)),
        "agent": args.agent or "fresh (147-128-128-3)",
        "rows": rows,
    }
    print(f"single-neuron patches of q_net.0 and q_net.2 on {report['machine']['device']} ({report['agent']})")
    columns = f"{'batched s':>10} {'no reuse s':>10} {'looped s':>10} {'speed-up':>8} {'FLOPs saved':>11}"
    print(f"{'pairs':>6} {'patches':>8} {columns}")
    for row in rows:
        print(
            f"{row['pairs']:>6} {row['experiments']:>8} {row['batched_seconds']:>10.3f} "
            f"{row['batched_no_reuse_seconds']:>10.3f} {row['looped_seconds']:>10.3f} {row['speedup']:>7.1f}x "
            f"{row['flops_saved_by_reuse']:>11.1%}"
        )
    write_json(args.out, report)


if __name__ == "__main__":
    main()
