"""ID→OOD patching of a GPT-2 (HookedTransformer), batched through the engine vs one run per patch.

Every experiment patches one site of one (paraphrase) pair: the residual stream at each of the last 8
positions of every layer, every head, every attention and MLP output — what ``reasonlens lm patching``
runs. The looped path is a source run, a baseline run and a patched run per experiment; the batched path
runs sources and targets once and all patched runs as rows of a batch. Results must agree (checked).
Without ``--checkpoint`` it uses a freshly initialised GPT-2 of the ``small`` preset with a tokenizer
trained on a few prompts: speed does not depend on the weights.

    python benchmarks/lm_patch_sweep.py [--checkpoint DIR] [--pairs 1 8] [--size small] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from measure import machine, timed  # benchmarks/ is the script's folder

from reasonlens.interp import Experiment, run_sweep
from reasonlens.interp.sweep import run_looped
from reasonlens.lm.analysis.hooks import LMAdapter, PromptSet
from reasonlens.lm.analysis.patching import counterfactual_pairs, patch_sites
from reasonlens.lm.config.analysis_config import AnalysisConfig
from reasonlens.lm.config.task_config import TaskConfig
from reasonlens.lm.config.training_config import ModelConfig
from reasonlens.lm.models.conversion import to_hooked_transformer
from reasonlens.lm.models.lm_loader import build_model, save_checkpoint
from reasonlens.lm.models.tokenizer import tokenizer_for_datasets
from reasonlens.lm.tasks.dataset import build_sft_datasets
from reasonlens.utils.io import write_json


def fresh_checkpoint(folder: Path, size: str) -> Path:
    datasets = build_sft_datasets(TaskConfig(n_train=500, n_val=10, n_test=10, n_ood=10))
    tokenizer = tokenizer_for_datasets(datasets)
    return save_checkpoint(build_model(ModelConfig(size=size), tokenizer), tokenizer, folder / "model")


def measure(model, tokenizer, pairs: int, chunk_size: int, device: torch.device) -> dict:
    examples = counterfactual_pairs(TaskConfig(), "paraphrase", pairs, seed=pairs)
    prompts = PromptSet.build(tokenizer, [a for a, _ in examples] + [b for _, b in examples], model.cfg.n_ctx)
    sites = patch_sites(model.cfg, AnalysisConfig(patch_positions=8), prompts.width)
    experiments = [Experiment(pairs + i, i, (intervention,)) for _, intervention in sites for i in range(pairs)]
    adapter = LMAdapter(model, prompts)

    batched_s, (baselines, batched) = timed(lambda: run_sweep(adapter, experiments, chunk_size=chunk_size), device)
    looped_s, (_, looped) = timed(lambda: run_looped(adapter, experiments), device)
    gap = max(abs(a["logit_diff"] - b["logit_diff"]) for a, b in zip(batched, looped))
    effect = np.mean([abs(p["logit_diff"] - baselines[e.target]["logit_diff"]) for p, e in zip(batched, experiments)])
    return {
        "pairs": pairs,
        "experiments": len(experiments),
        "batched_s": round(batched_s, 3),
        "looped_s": round(looped_s, 3),
        "speedup": round(looped_s / batched_s, 1),
        "max_abs_difference": float(gap),
        "mean_abs_patch_effect": float(effect),  # the patches do change the output: the check is not vacuous
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", help="a GPT-2 checkpoint directory (default: a fresh model)")
    parser.add_argument("--size", default="small", help="model preset when no checkpoint is given")
    parser.add_argument("--pairs", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--chunk-size", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="benchmarks/out/lm_patch_sweep.json")
    args = parser.parse_args()
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint or fresh_checkpoint(Path(tmp), args.size)
        model, tokenizer = to_hooked_transformer(checkpoint, device)
        rows = [measure(model, tokenizer, pairs, args.chunk_size, device) for pairs in args.pairs]
    header = f"{'pairs':>6} {'patches':>8} {'batched s':>10} {'looped s':>10} {'speed-up':>9} {'max |Δ|':>9}"
    print(header + f" {'mean effect':>12}")
    for row in rows:
        print(
            f"{row['pairs']:>6} {row['experiments']:>8} {row['batched_s']:>10.3f} {row['looped_s']:>10.3f}"
            f" {row['speedup']:>8.1f}x {row['max_abs_difference']:>9.1e} {row['mean_abs_patch_effect']:>12.3f}"
        )
    write_json(
        args.out, {"machine": machine(device), "checkpoint": str(args.checkpoint or f"fresh {args.size}"), "rows": rows}
    )
    print(f"wrote {args.out}")
    assert all(np.isfinite(r["max_abs_difference"]) and r["max_abs_difference"] < 1e-3 for r in rows)


if __name__ == "__main__":
    main()
