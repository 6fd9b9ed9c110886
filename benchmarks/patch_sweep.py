"""Batched patching sweep vs a per-pair loop, on an HRM checkpoint (default: the `reasonlens demo` run).

The sweep is seed 000's batch experiment: every ordered pair of N test puzzles × levels (H, L, both) ×
step configs (all, 0, 1, 2). The loop does what one script call per experiment implies — a source run,
a baseline run and a patched run per experiment; the batched engine runs each source and each target
once and the patched runs as batch rows. Both must give the same results (checked here too).

    python benchmarks/patch_sweep.py [--checkpoint runs/demo] [--num_puzzles 10] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from reasonlens.hrm.analysis.adapter import HRMAdapter
from reasonlens.hrm.analysis.patching import build_experiments, sweep


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
    timings = {}
    results = {}
    for name, batched in (("batched", True), ("looped", False)):
        if adapter.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        results[name] = sweep(adapter, experiments, batched=batched, chunk_size=args.chunk_size)
        if adapter.device.type == "cuda":
            torch.cuda.synchronize()
        timings[name] = time.perf_counter() - start
    same = all(a.patched["correct"] == b.patched["correct"] for a, b in zip(results["batched"], results["looped"]))
    report = {
        "machine": {
            "device": torch.cuda.get_device_name() if adapter.device.type == "cuda" else platform.processor() or "cpu",
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "checkpoint": args.checkpoint,
        "experiments": len(experiments),
        "batched_seconds": round(timings["batched"], 3),
        "looped_seconds": round(timings["looped"], 3),
        "speedup": round(timings["looped"] / timings["batched"], 1),
        "experiments_per_second_batched": round(len(experiments) / timings["batched"], 1),
        "same_results": same,
    }
    print(
        f"{len(experiments)} experiments ({args.num_puzzles} puzzles pairwise x {args.levels} x {args.steps_configs}) "
        f"on {report['machine']['device']}"
    )
    print(f"  batched  {timings['batched']:8.2f} s   ({report['experiments_per_second_batched']:.0f} experiments/s)")
    print(f"  looped   {timings['looped']:8.2f} s")
    print(f"  speedup  {report['speedup']:.1f}x   same results: {same}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
