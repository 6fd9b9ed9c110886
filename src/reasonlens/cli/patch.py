"""The seed-000 patching commands: argument parsing for HRM activation patching, with the flags of seed 000 exactly
(``--checkpoint --source_puzzle_idx --target_puzzle_idx --patch_level --patch_steps --patch_positions
--max_steps --output_dir --device``; batch: ``--num_puzzles --patch_levels --patch_steps_configs --mode``).
``scripts/activation_patching.py``, ``scripts/batch_activation_patching.py`` and ``reasonlens patch`` /
``reasonlens patch-batch`` all call :func:`main_single` / :func:`main_batch`."""

from __future__ import annotations

import argparse

from reasonlens.cli.errors import exit_code
from reasonlens.hrm.analysis.adapter import HRMAdapter
from reasonlens.hrm.analysis.patching import run_patch_sweep, run_single_patch
from reasonlens.hrm.data.format import load_split
from reasonlens.interp import InterpError

DEFAULT_CHECKPOINT = "runs/demo"  # what `reasonlens demo` trains


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint",
        default=DEFAULT_CHECKPOINT,
        help="our run directory / model.safetensors, or an official checkpoint (default: runs/demo)",
    )
    parser.add_argument("--data", default=None, help="dataset folder (default: the one the checkpoint was trained on)")
    parser.add_argument("--max_steps", type=int, default=None, help="ACT steps to run (default: the trained value)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto")


def single_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="activation_patching.py", description="Patch z_H / z_L of a source puzzle into a target puzzle's run."
    )
    _common(parser)
    parser.add_argument(
        "--source_puzzle_idx", type=int, required=True, help="index of the source puzzle in the test set"
    )
    parser.add_argument(
        "--target_puzzle_idx", type=int, required=True, help="index of the target puzzle in the test set"
    )
    parser.add_argument("--patch_level", choices=["H", "L", "both"], default="both", help="which states to patch")
    parser.add_argument("--patch_steps", default="all", help="ACT steps to patch, e.g. 0,1,2 or all")
    parser.add_argument("--patch_positions", default="all", help="puzzle cells to patch, e.g. 0,1,2 or all")
    parser.add_argument("--source_data", default=None, help="take the source puzzle from this dataset instead")
    parser.add_argument("--output_dir", default="results/activation_patching", help="where to write results")
    return parser


def batch_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="batch_activation_patching.py", description="Run many patching experiments through the batched engine."
    )
    _common(parser)
    parser.add_argument("--num_puzzles", type=int, default=10, help="how many test puzzles to use")
    parser.add_argument("--patch_levels", default="H,L,both", help="comma-separated levels (H, L, both)")
    parser.add_argument(
        "--patch_steps_configs",
        default="all,0,1,2",
        help="comma-separated step configs; one config may join steps with '+' (e.g. 0+1)",
    )
    parser.add_argument("--mode", choices=["pairwise", "one_to_many"], default="pairwise")
    parser.add_argument("--chunk_size", type=int, default=64, help="experiments per batched forward")
    parser.add_argument(
        "--method",
        choices=["exact", "attribution"],
        default="exact",
        help="exact patching, or the attribution estimate of every experiment at once (a screen)",
    )
    parser.add_argument("--output_dir", default="results/activation_patching_batch", help="where to write results")
    return parser


def main_single(argv: list[str] | None = None) -> int:
    args = single_parser().parse_args(argv)

    def go():
        adapter = HRMAdapter.from_checkpoint(args.checkpoint, args.data, max_steps=args.max_steps, device=args.device)
        source = None
        if args.source_data:
            source_cells = load_split(args.source_data, "test")[0].seq_len
            if source_cells != adapter.metadata.seq_len:
                raise InterpError(
                    f"source puzzles have {source_cells} cells and target puzzles "
                    f"{adapter.metadata.seq_len}: patching needs source and target of the same shape"
                )
            source = HRMAdapter(adapter.model, args.source_data, max_steps=adapter.max_steps, device=adapter.device)
        result = run_single_patch(
            adapter,
            args.source_puzzle_idx,
            args.target_puzzle_idx,
            args.patch_level,
            args.patch_steps,
            args.patch_positions,
            args.output_dir,
            source_adapter=source,
        )
        print(f"wrote {result['files']['yaml']}, {result['files']['activations']}, {result['files']['board']}")

    return exit_code(go)


def main_batch(argv: list[str] | None = None) -> int:
    args = batch_parser().parse_args(argv)

    def go():
        adapter = HRMAdapter.from_checkpoint(args.checkpoint, args.data, max_steps=args.max_steps, device=args.device)
        levels = [level.strip() for level in args.patch_levels.split(",") if level.strip()]
        steps = [s.strip().replace("+", ",") for s in args.patch_steps_configs.split(",") if s.strip()]
        run_patch_sweep(
            adapter, args.num_puzzles, levels, steps, args.mode, args.output_dir, args.chunk_size, method=args.method
        )

    return exit_code(go)
