"""256 single-neuron patches of a DQN Q-network, batched through the engine vs one forward per patch.

Each experiment patches one unit of ``q_net.0`` or ``q_net.2`` (128 + 128 = 256 experiments per pair) from
a clean input into its corrupted twin. The looped path is what one ``activation_patching.py`` call per
neuron implies — a source run, a baseline run and a patched run per experiment; the batched path runs
every source and target once and all patched runs as rows of one batch. Both must agree (checked here).
Without ``--agent`` it uses a freshly initialised agent of the seed's shape (147 → 128 → 128 → 3) on
random observations: the speed of a Q-network does not depend on its weights.

    python benchmarks/agent_patch_sweep.py [--agent AGENT_DIR] [--pairs 1 16] [--device cpu]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

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


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


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
    timings, outputs = {}, {}
    for name, function in (
        ("batched", lambda: run_sweep(adapter, experiments, chunk_size=chunk_size)),
        ("looped", lambda: run_looped(adapter, experiments)),
    ):
        function()  # warm-up
        synchronize(agent.device)
        start = time.perf_counter()
        outputs[name] = function()[1]
        synchronize(agent.device)
        timings[name] = time.perf_counter() - start
    batched = np.array([row["q_values"] for row in outputs["batched"]])
    looped = np.array([row["q_values"] for row in outputs["looped"]])
    return {
        "pairs": pairs,
        "experiments": len(experiments),
        "batched_seconds": round(timings["batched"], 4),
        "looped_seconds": round(timings["looped"], 4),
        "speedup": round(timings["looped"] / timings["batched"], 1),
        "max_abs_difference": float(np.abs(batched - looped).max()),
        "same_actions": bool((batched.argmax(-1) == looped.argmax(-1)).all()),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agent", help="agent directory (default: a fresh agent of the seed's shape)")
    parser.add_argument("--pairs", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--chunk_size", type=int, default=8192)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default="benchmarks/out/agent_patch_sweep.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        agent = Agent.load(args.agent, args.device) if args.agent else fresh_agent(Path(folder), args.device)
        rows = [measure(agent, pairs, args.chunk_size) for pairs in args.pairs]
    device = torch.device(args.device)
    report = {
        "machine": {
            "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "agent": args.agent or "fresh (147-128-128-3)",
        "rows": rows,
    }
    print(f"single-neuron patches of q_net.0 and q_net.2 on {report['machine']['device']} ({report['agent']})")
    print(f"{'pairs':>6} {'patches':>8} {'batched s':>10} {'looped s':>10} {'speedup':>8} {'max |diff|':>11}")
    for row in rows:
        print(
            f"{row['pairs']:>6} {row['experiments']:>8} {row['batched_seconds']:>10.3f} {row['looped_seconds']:>10.3f} "
            f"{row['speedup']:>7.1f}x {row['max_abs_difference']:>11.2e}"
        )
    write_json(args.out, report)


if __name__ == "__main__":
    main()
