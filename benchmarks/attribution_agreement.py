"""How well attribution patching screens for exact patching, on each family: Spearman's rank correlation
of the estimated and the exact metric changes, the overlap of their top-k, and the time of each.

- **HRM** (default: the ``reasonlens demo`` run): seed 000's batch — every ordered pair of N test
  puzzles × levels H, L, both × ACT steps all, 0, 1, 2 — and ``z_H`` at every cell of every ACT step
  for the first pairs; metric ``label_log_prob`` (mean log-probability of the labels). Gradients run
  through every cycle and ACT step.
- **GPT-2** (``--lm-checkpoint``; default: a fresh ``small`` preset): ID→OOD paraphrase pairs, every site
  of ``reasonlens lm patching`` (residual stream × last positions, heads, attention and MLP outputs);
  metric ``logit_diff``.
- **Q-network** (``--agent``; default: a fresh agent of the seed's shape on random observations): every
  unit of ``q_net.0`` and ``q_net.2`` patched alone from clean into corrupted; metric ``greedy_q``, the
  Q-value of the action the target takes unpatched.

    python benchmarks/attribution_agreement.py [--checkpoint runs/demo] [--lm-checkpoint DIR] [--agent DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from agent_patch_sweep import fresh_agent
from lm_patch_sweep import fresh_checkpoint
from measure import machine, timed

from reasonlens.agents.agent import Agent
from reasonlens.agents.experiment import QNetAdapter
from reasonlens.hrm.analysis.adapter import HRMAdapter
from reasonlens.hrm.analysis.patching import build_experiments
from reasonlens.interp import Experiment, Intervention, run_sweep
from reasonlens.interp.attribution import agreement, attribution_sweep
from reasonlens.lm.analysis.hooks import LMAdapter, PromptSet
from reasonlens.lm.analysis.patching import counterfactual_pairs, patch_sites
from reasonlens.lm.config.analysis_config import AnalysisConfig
from reasonlens.lm.config.task_config import TaskConfig
from reasonlens.lm.models.conversion import to_hooked_transformer
from reasonlens.utils.io import write_json


def compare(adapter, experiments, metric: str, chunk_size: int = 256, top_k: int = 20) -> dict:
    """Exact and estimated changes of ``metric`` per experiment, their agreement and times."""
    device = next(adapter.model.parameters()).device
    exact_s, (exact_base, exact) = timed(lambda: run_sweep(adapter, experiments, chunk_size=chunk_size), device)
    estimate_s, (base, estimated) = timed(lambda: attribution_sweep(adapter, experiments, metric, chunk_size), device)
    exact_changes = [p[metric] - exact_base[e.target][metric] for p, e in zip(exact, experiments)]
    estimated_changes = [p[metric] - base[e.target][metric] for p, e in zip(estimated, experiments)]
    return {
        **agreement(exact_changes, estimated_changes, k=top_k),
        "exact_seconds": round(exact_s, 3),
        "attribution_seconds": round(estimate_s, 3),
    }


def hrm_rows(checkpoint: str, num_puzzles: int, device: str) -> dict:
    adapter = HRMAdapter.from_checkpoint(checkpoint, device=device)
    batch = build_experiments(adapter, num_puzzles, ["H", "L", "both"], ["all", "0", "1", "2"])
    cells = adapter.metadata.seq_len
    per_cell = [
        Experiment(t, s, (Intervention("z_H", positions=(adapter.prefix_len + cell,), calls=(step,)),))
        for s, t in ((0, 1), (1, 0), (2, 3))
        for step in range(adapter.max_steps)
        for cell in range(cells)
    ]
    return {
        "seed 000 batch": compare(adapter, batch, "label_log_prob"),
        "z_H per cell and step": compare(adapter, per_cell, "label_log_prob"),
    }


def lm_rows(checkpoint: str, pairs: int, device: str) -> dict:
    model, tokenizer = to_hooked_transformer(checkpoint, device)
    examples = counterfactual_pairs(TaskConfig(), "paraphrase", pairs, seed=0)
    prompts = PromptSet.build(tokenizer, [a for a, _ in examples] + [b for _, b in examples], model.cfg.n_ctx)
    sites = patch_sites(model.cfg, AnalysisConfig(patch_positions=8), prompts.width)
    experiments = [Experiment(pairs + i, i, (intervention,)) for _, intervention in sites for i in range(pairs)]
    return {"ID→OOD paraphrase, every site": compare(LMAdapter(model, prompts), experiments, "logit_diff")}


class GreedyQAdapter(QNetAdapter):
    """The Q-network scored also by ``greedy_q``: the Q-value of the action each input takes unpatched."""

    def __init__(self, agent: Agent, observations: torch.Tensor):
        super().__init__(agent, observations)
        with torch.inference_mode():
            self.greedy = self.model(self.observations).argmax(-1)  # (N,)

    def batch(self, indices):
        return {**super().batch(indices), "greedy": self.greedy[list(indices)]}

    def score(self, outputs, batch):
        greedy_q = outputs.float().gather(1, batch["greedy"][:, None])[:, 0]  # (B, actions) -> (B,)
        return {**super().score(outputs, batch), "greedy_q": greedy_q}


def agent_rows(agent: Agent, pairs: int) -> dict:
    generator = torch.Generator().manual_seed(0)
    observations = torch.randint(0, 11, (2 * pairs, agent.obs_dim), generator=generator).float()
    adapter = GreedyQAdapter(agent, observations)  # rows 0..pairs-1 corrupted targets, then their clean sources
    experiments = [
        Experiment(r, pairs + r, (Intervention(layer, units=(unit,)),))
        for layer in agent.hidden_layers()
        for unit in range(agent.layers()[layer])
        for r in range(pairs)
    ]
    return {"single units of q_net.0 and q_net.2": compare(adapter, experiments, "greedy_q", chunk_size=8192)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default="runs/demo", help="HRM run")
    parser.add_argument("--num-puzzles", type=int, default=10)
    parser.add_argument("--lm-checkpoint", help="GPT-2 checkpoint (default: a fresh small preset)")
    parser.add_argument("--lm-pairs", type=int, default=16)
    parser.add_argument("--agent", help="agent directory (default: a fresh agent)")
    parser.add_argument("--agent-pairs", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="benchmarks/out/attribution_agreement.json")
    args = parser.parse_args()
    report = {"machine": machine(torch.device(args.device)), "families": {}}
    with tempfile.TemporaryDirectory() as tmp:
        families = report["families"]
        families["hrm"] = {"model": args.checkpoint, **hrm_rows(args.checkpoint, args.num_puzzles, args.device)}
        lm = args.lm_checkpoint or fresh_checkpoint(Path(tmp), "small")
        families["gpt2"] = {
            "model": str(args.lm_checkpoint or "fresh small"),
            **lm_rows(lm, args.lm_pairs, args.device),
        }
        agent = Agent.load(args.agent, args.device) if args.agent else fresh_agent(Path(tmp) / "agent", args.device)
        families["q_network"] = {"model": args.agent or "fresh 147-128-128-3", **agent_rows(agent, args.agent_pairs)}
    print(f"{'family':<10} {'sweep':<38} {'n':>6} {'Spearman':>9} {'top-20':>7} {'exact s':>8} {'attribution s':>14}")
    for family, rows in report["families"].items():
        for sweep, row in rows.items():
            if sweep == "model":
                continue
            print(
                f"{family:<10} {sweep:<38} {row['n']:>6} {row['spearman']:>9.3f} {row['top_k_overlap']:>7.2f}"
                f" {row['exact_seconds']:>8.2f} {row['attribution_seconds']:>14.2f}"
            )
    write_json(args.out, report)


if __name__ == "__main__":
    main()
