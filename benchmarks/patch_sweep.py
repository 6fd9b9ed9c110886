"""Batched patching sweep vs a per-pair loop, on an HRM checkpoint (default: the `reasonlens demo` run).

The sweep is seed 000's batch experiment: every ordered pair of N test puzzles × levels (H, L, both) ×
step configs (all, 0, 1, 2). The loop does what one script call per experiment implies — a source run,
a baseline run and a patched run per experiment; the batched engine runs each source and each target
once and the patched runs as batch rows, each resumed from the last latent update before its first
patched call (prefix reuse), and once more without reuse. All must give the same results (checked);
the FLOPs of both batched paths are counted (``torch.utils.flop_counter``) in a separate, untimed run.
The batched paths are timed as the median of 3 runs, the loop once.

    python benchmarks/patch_sweep.py [--checkpoint runs/demo] [--num_puzzles 10] [--device cpu]
"""

from __future__ import annotations

import argparse

import torch
from measure import flop_count, machine, timed

from reasonlens.hrm.analysis.adapter import HRMAdapter
from reasonlens.hrm.analysis.patching import build_experiments
from reasonlens.interp.sweep import run_looped, run_sweep
from reasonlens.utils.io import write_json


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default="runs/demo")
    parser.add_argument("--num_puzzles", type=int, default=10)
    parser.add_argument("--levels", default="H,L,both")
    parser.add_argument("--steps_configs", default="all,0,1,2")
    parser.add_argument("--chunk_size", type=int, default=256)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default="benchmarks/out/patch_sweep.json")
    args = parser.parse_args()

    adapter = HRMAdapter.from_checkpoint(args.checkpoint, device=args.device)
    experiments = build_experiments(adapter, args.num_puzzles, args.levels.split(","), args.steps_configs.split(","))
    paths = {
        "batched": lambda: run_sweep(adapter, experiments, chunk_size=args.chunk_size),
        "batched_no_reuse": lambda: run_sweep(adapter, experiments, chunk_size=args.chunk_size, reuse_prefix=False),
        "looped": lambda: run_looped(adapter, experiments),
    }
    run_sweep(adapter, experiments[:64], chunk_size=args.chunk_size)  # warm-up
    timings, results = {}, {}
    for name, function in paths.items():
        repeats = 1 if name == "looped" else 3  # the batched paths: the median of 3 (one run is noisy)
        timings[name], (_, results[name]) = timed(function, adapter.device, repeats)
    same = all(
        a["correct"] == b["correct"] == c["correct"]
        for a, b, c in zip(results["batched"], results["batched_no_reuse"], results["looped"])
    )
    flops = {name: flop_count(paths[name]) for name in ("batched", "batched_no_reuse")}
    report = {
        "machine": machine(adapter.device),
        "checkpoint": args.checkpoint,
        "experiments": len(experiments),
        "batched_seconds": round(timings["batched"], 3),
        "batched_no_reuse_seconds": round(timings["batched_no_reuse"], 3),
        "looped_seconds": round(timings["looped"], 3),
        "speedup": round(timings["looped"] / timings["batched"], 1),
        "speedup_no_reuse": round(timings["looped"] / timings["batched_no_reuse"], 1),
        "experiments_per_second_batched": round(len(experiments) / timings["batched"], 1),
        "gflops_batched": round(flops["batched"] / 1e9, 3),
        "gflops_batched_no_reuse": round(flops["batched_no_reuse"] / 1e9, 3),
        "flops_saved_by_reuse": round(1 - flops["batched"] / flops["batched_no_reuse"], 3),
        "same_results": same,
    }
    print(
        f"{len(experiments)} experiments ({args.num_puzzles} puzzles pairwise x {args.levels} x {args.steps_configs}) "
        f"on {report['machine']['device']}"
    )
    for name, label, speedup in (
        ("batched", "batched", "speedup"),
        ("batched_no_reuse", "no reuse", "speedup_no_reuse"),
    ):
        print(f"  {label:<17} {timings[name]:8.2f} s  {report[speedup]:5.1f}x  {flops[name] / 1e9:8.2f} GFLOP")
    print(f"  {'looped':<17} {timings['looped']:8.2f} s")
    print(f"  prefix reuse saves {report['flops_saved_by_reuse']:.1%} of the FLOPs; same results: {same}")
    write_json(args.out, report)


if __name__ == "__main__":
    main()
