"""Train-step time and memory of HRM-ACT-v1, eager and compiled, and memory against recursion depth.

One "step" is the official ``train_batch``: ACT loss head forward on the persistent carry (segment +
target-Q pass), backward of loss / batch, AdamATan2 and sparse SignSGD steps.

Cases:
- ``sudoku``: the official Sudoku config (27.3M parameters), batch 768, bf16 — CUDA only. Reference,
  official code on one H200: 78.7 ms/step compiled (9,760 samples/s, 10.6 GiB peak), 214.6 ms eager.
- ``sudoku`` on CPU: the same model at batch 8 in float32 (what a laptop can do; 3 timed steps).
- ``tiny``: the ``reasonlens demo`` model (4×4 Sudoku, 263k parameters), batch 64, float32 — any device.
- ``cpu``: the CPU matrix that chose the trainer's CPU defaults — threads (1, all) × float32 / bfloat16 ×
  eager / compiled, for the demo model and the 9×9 recipe (``configs/train/cpu_sudoku_9x9.yaml``), on an
  idle machine and (``--load``) beside one busy process on another core. Reports the median step, the
  first (compiling) step and each row's speed-up over today's default (all threads, float32, eager).
- ``cycles``: memory at H_cycles = L_cycles = 2, 4, 8 with the 1-step gradient, a 2-step gradient and
  full backpropagation through the segment (``gradient_steps``). On CUDA: peak allocated memory;
  everywhere: bytes autograd saves for backward. The 1-step gradient's must be flat (O(1) in depth);
  BPTT's grows with H_cycles·L_cycles.

    python benchmarks/hrm_step.py                       # every case the device supports
    python benchmarks/hrm_step.py --cases tiny cycles --steps 20 --out benchmarks/out/hrm_step.json
    python benchmarks/hrm_step.py --cases cpu --load idle busy --out benchmarks/out/hrm_step_cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

from reasonlens.cli.demo import DemoConfig, demo_train_config
from reasonlens.hrm import ACTLossHead, AdamATan2, CastedSparseEmbeddingSignSGD_Distributed, HRMACTv1
from reasonlens.utils.memory import count_saved_bytes

SUDOKU = dict(
    seq_len=81,
    vocab_size=11,
    puzzle_emb_ndim=512,
    num_puzzle_identifiers=1,
    hidden_size=512,
    num_heads=8,
    H_layers=4,
    L_layers=4,
    H_cycles=2,
    L_cycles=2,
    expansion=4,
    halt_max_steps=16,
    halt_exploration_prob=0.1,
    forward_dtype="bfloat16",
)
# the reasonlens demo model on 4x4 Sudoku (seq 16, vocab 6), taken from the demo's own config
TINY = {
    **demo_train_config(DemoConfig(), Path(".")).model,
    "seq_len": 16,
    "vocab_size": 6,
    "num_puzzle_identifiers": 1,
    "forward_dtype": "float32",
}

# the 9×9 recipe's model, taken from its config file
RECIPE_9X9 = {
    **yaml.safe_load(Path("configs/train/cpu_sudoku_9x9.yaml").read_text())["model"],
    "seq_len": 81,
    "vocab_size": 11,
    "num_puzzle_identifiers": 1,
    "forward_dtype": "float32",
}
BUSY_LOOP = "while True: pass"  # one competing process: a pure-Python loop keeps one core busy


def make_batch(config, batch_size, device, generator):
    shape = (batch_size, config["seq_len"])
    return {
        "inputs": torch.randint(1, config["vocab_size"], shape, generator=generator).to(device),
        "labels": torch.randint(1, config["vocab_size"], shape, generator=generator).to(device),
        "puzzle_identifiers": torch.randint(
            0, config["num_puzzle_identifiers"], (batch_size,), generator=generator, dtype=torch.int32
        ).to(device),
    }


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_train_step(config, batch_size, device, steps, warmup, compile_model):
    torch.manual_seed(0)
    model = HRMACTv1({**config, "batch_size": batch_size}).to(device)
    head = ACTLossHead(model)
    step_fn = torch.compile(head, dynamic=False) if compile_model else head
    dense = AdamATan2(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=1.0)
    sparse = CastedSparseEmbeddingSignSGD_Distributed(
        model.puzzle_emb.parameters(), world_size=1, lr=1e-4, weight_decay=1.0
    )
    generator = torch.Generator().manual_seed(0)
    batches = [make_batch(config, batch_size, device, generator) for _ in range(4)]
    carry = head.initial_carry(batches[0])
    model.train()
    times = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for i in range(warmup + steps):
        sync(device)
        start = time.perf_counter()
        carry, loss, _, _, _ = step_fn(carry, batches[i % 4])
        (loss / batch_size).backward()
        for optimizer in (dense, sparse):
            optimizer.step()
            optimizer.zero_grad()
        sync(device)
        if i == 0:
            first = time.perf_counter() - start  # includes compilation
        if i >= warmup:
            times.append(time.perf_counter() - start)
    ms = statistics.median(times) * 1e3
    result = {
        "ms_per_step": round(ms, 2),
        "first_step_s": round(first, 2),
        "samples_per_s": round(batch_size / ms * 1e3, 1),
        "steps": steps,
    }
    if device.type == "cuda":
        result["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    return result


def cpu_matrix(models, loads, steps, warmup, compile_too=True, dtypes=("float32", "bfloat16")):
    """Rows of (label, result): every model × load × threads × dtype × eager/compiled, with the speed-up over
    the default of the same model and load (all threads, float32, eager)."""
    all_threads = torch.get_num_threads()
    rows = []
    for load in loads:
        busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) if load == "busy" else None
        try:
            for name, config, batch_size in models:
                baseline = None
                for threads in sorted({1, all_threads}, reverse=True):
                    for dtype in dtypes:
                        for compiled in (False, True) if compile_too else (False,):
                            torch.set_num_threads(threads)
                            label = f"{name} {load} threads={threads} {dtype} {'compiled' if compiled else 'eager'}"
                            try:
                                result = bench_train_step(
                                    {**config, "forward_dtype": dtype},
                                    batch_size,
                                    torch.device("cpu"),
                                    steps,
                                    warmup,
                                    compiled,
                                )
                            except Exception as err:  # no compiler here is a result, not a crash
                                result = {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"}
                            if baseline is None and "ms_per_step" in result:
                                baseline = result["ms_per_step"]
                            if "ms_per_step" in result:
                                result["speedup_vs_default"] = round(baseline / result["ms_per_step"], 2)
                            print(f"{label}: {result}", flush=True)
                            rows.append((label, result))
        finally:
            torch.set_num_threads(all_threads)
            if busy is not None:
                busy.kill()
                busy.wait()
    return rows


def saved_activation_bytes(config, batch_size, device):
    torch.manual_seed(0)
    model = HRMACTv1({**config, "batch_size": batch_size}).to(device).train()
    head = ACTLossHead(model)
    batch = make_batch(config, batch_size, device, torch.Generator().manual_seed(0))
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    with count_saved_bytes() as saved:
        _, loss, *_ = head(head.initial_carry(batch), batch)
    (loss / batch_size).backward()
    result = {"saved_for_backward_mib": round(saved.total / 2**20, 3)}
    if device.type == "cuda":
        result["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--cases", nargs="+", default=["sudoku", "tiny", "cycles"], choices=["sudoku", "tiny", "cycles", "cpu"]
    )
    parser.add_argument("--load", nargs="+", default=["idle", "busy"], choices=["idle", "busy"], help="cpu case")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"])
    parser.add_argument("--models", nargs="+", default=["demo", "9x9"], choices=["demo", "9x9"], help="cpu case")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled runs")
    parser.add_argument("--out", default="benchmarks/out/hrm_step.json")
    args = parser.parse_args()
    device = torch.device(args.device)

    machine = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    rows, results = [], {"machine": machine, "cases": {}}

    def run(name, config, batch_size, steps=args.steps, warmup=args.warmup):
        for compiled in (False, True):
            if compiled and args.no_compile:
                continue
            label = f"{name} bs{batch_size} {'compiled' if compiled else 'eager'}"
            try:
                result = bench_train_step(config, batch_size, device, steps, warmup, compiled)
            except Exception as err:  # a compile backend missing on this machine is a result, not a crash
                result = {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"}
            results["cases"][label] = result
            rows.append((label, result))

    if "sudoku" in args.cases:
        if device.type == "cuda":
            run("sudoku 27.3M bf16", SUDOKU, 768)
        else:
            results["cases"]["sudoku 27.3M bf16 bs768"] = {"skipped": "needs CUDA"}
            rows.append(("sudoku 27.3M bf16 bs768", results["cases"]["sudoku 27.3M bf16 bs768"]))
            run("sudoku 27.3M fp32", {**SUDOKU, "forward_dtype": "float32"}, 8, steps=3, warmup=1)
    if "tiny" in args.cases:
        run("demo model 263k fp32", TINY, 64)
    if "cpu" in args.cases:
        models = {"demo": ("demo model", TINY, 64), "9x9": ("9x9 recipe", RECIPE_9X9, 64)}
        for label, result in cpu_matrix(
            [models[m] for m in args.models], args.load, args.steps, args.warmup, not args.no_compile, args.dtypes
        ):
            results["cases"][label] = result
            rows.append((label, result))
    if "cycles" in args.cases:
        base, batch_size = (SUDOKU, 768) if device.type == "cuda" else (TINY, 64)
        for cycles in (2, 4, 8):
            for mode, steps in (("1-step", 1), ("2-step", 2), ("BPTT", cycles * cycles)):
                label = f"cycles H=L={cycles} {mode} ({'sudoku' if base is SUDOKU else 'tiny'})"
                config = {**base, "H_cycles": cycles, "L_cycles": cycles, "gradient_steps": steps}
                result = saved_activation_bytes(config, batch_size, device)
                results["cases"][label] = result
                rows.append((label, result))

    width = max(len(label) for label, _ in rows)
    print(f"{machine}")
    for label, result in rows:
        print(f"{label:<{width}}  " + "  ".join(f"{k}={v}" for k, v in result.items()))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
