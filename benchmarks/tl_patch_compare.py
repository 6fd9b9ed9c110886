"""The engine against TransformerLens's own patching functions, on the same GPT-2 and the same prompts.

TransformerLens (``transformer_lens.patching``) runs one forward per patch: ``get_act_patch_resid_pre``
(layer × position), ``get_act_patch_mlp_out`` (layer × position) and
``get_act_patch_attn_head_out_by_pos`` (layer × position × head; here on the last ``--head-positions``
positions: its ``generic_activation_patch`` with the same setter and an ``index_df``). The engine runs
the same patches as the rows of batched forwards, each resumed from the block it patches (prefix
reuse), and without reuse for comparison. Prompts: clean and corrupted card-game
prompts of one token length with opposite answers, so no padding; the metric is the logit difference
``BIG − SMALL`` at the last position, averaged over the pairs. Every engine result must equal
TransformerLens's (checked); times include the clean run or cache each side needs. Models are freshly
initialised presets (speed does not depend on the weights; ``--checkpoint`` takes a trained one).

    python benchmarks/tl_patch_compare.py [--sizes small medium gpt2] [--pairs 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections import Counter
from pathlib import Path

import pandas as pd
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from lm_patch_sweep import fresh_checkpoint  # benchmarks/ is the script's folder
from measure import machine, timed
from transformer_lens import patching

from reasonlens.interp import Experiment, Intervention, run_sweep
from reasonlens.lm.analysis.hooks import LMAdapter, PromptSet, answer_tokens
from reasonlens.lm.config.task_config import TaskConfig
from reasonlens.lm.models.conversion import to_hooked_transformer
from reasonlens.lm.tasks.dataset import build_examples
from reasonlens.lm.tasks.formatting import decision_text
from reasonlens.utils.io import write_json

patching.tqdm = lambda rows: rows  # its patching functions draw a progress bar per call; the table is the output


def clean_and_corrupted(tokenizer, pairs: int, n_ctx: int) -> tuple[PromptSet, int, int]:
    """2·pairs prompts of the most common token length: clean (answer BIG) then corrupted (SMALL); every
    row scores BIG − SMALL. Returns the set and the two answer tokens."""
    examples = build_examples(TaskConfig(n_train=10, n_val=10, n_test=400, n_ood=10, seed=1))["test"]
    lengths = [len(tokenizer(decision_text(e), add_special_tokens=False)["input_ids"]) for e in examples]
    width = Counter(lengths).most_common(1)[0][0]
    same = [e for e, n in zip(examples, lengths) if n == width]
    clean = [e for e in same if e["label"] == "BIG"][:pairs]
    corrupted = [e for e in same if e["label"] == "SMALL"][:pairs]
    if len(clean) < pairs or len(corrupted) < pairs:
        raise SystemExit(f"only {min(len(clean), len(corrupted))} pairs of {width}-token prompts; ask for fewer")
    prompts = PromptSet.build(tokenizer, clean + corrupted, n_ctx)
    tokens = answer_tokens(tokenizer)
    prompts.correct[:] = tokens["BIG"]
    prompts.wrong[:] = tokens["SMALL"]
    return prompts, tokens["BIG"], tokens["SMALL"]


def engine_experiments(kind: str, n_layers: int, positions: list[int], heads: int, d_head: int, pairs: int):
    experiments = []
    for layer in range(n_layers):
        for position in positions:
            if kind == "head_out":
                for head in range(heads):
                    units = tuple(range(head * d_head, (head + 1) * d_head))
                    site = Intervention(f"blocks.{layer}.attn.hook_z", positions=(position,), units=units)
                    experiments += [Experiment(pairs + i, i, (site,)) for i in range(pairs)]
            else:
                hook = "hook_resid_pre" if kind == "resid_pre" else "hook_mlp_out"
                site = Intervention(f"blocks.{layer}.{hook}", positions=(position,))
                experiments += [Experiment(pairs + i, i, (site,)) for i in range(pairs)]
    return experiments


def measure(model, tokenizer, pairs: int, head_positions: int, chunk_size: int, device) -> list[dict]:
    prompts, big, small = clean_and_corrupted(tokenizer, pairs, model.cfg.n_ctx)
    clean, corrupted = prompts.input_ids[:pairs].to(device), prompts.input_ids[pairs:].to(device)
    width, cfg = prompts.width, model.cfg
    adapter = LMAdapter(model, prompts)

    def metric(logits):
        return (logits[:, -1, big] - logits[:, -1, small]).mean()

    last = list(range(width - head_positions, width))
    rows = []
    for kind, positions in (("resid_pre", list(range(width))), ("head_out", last), ("mlp_out", list(range(width)))):

        def peer(kind=kind, positions=positions):
            with torch.inference_mode():
                _, cache = model.run_with_cache(clean)
                if kind == "resid_pre":
                    return patching.get_act_patch_resid_pre(model, corrupted, cache, metric)
                if kind == "mlp_out":
                    return patching.get_act_patch_mlp_out(model, corrupted, cache, metric)
                index = pd.DataFrame(
                    [(layer, p, h) for layer in range(cfg.n_layers) for p in positions for h in range(cfg.n_heads)],
                    columns=["layer", "pos", "head"],
                )
                return patching.generic_activation_patch(  # get_act_patch_attn_head_out_by_pos on these rows
                    model,
                    corrupted,
                    cache,
                    metric,
                    patch_setter=patching.layer_pos_head_vector_patch_setter,
                    activation_name="z",
                    index_df=index,
                )

        experiments = engine_experiments(kind, cfg.n_layers, positions, cfg.n_heads, cfg.d_head, pairs)
        shape = (cfg.n_layers, len(positions), cfg.n_heads) if kind == "head_out" else (cfg.n_layers, len(positions))

        def engine(reuse: bool, experiments=experiments, shape=shape):
            _, patched = run_sweep(adapter, experiments, chunk_size=chunk_size, reuse_prefix=reuse)
            values = torch.tensor([p["logit_diff"] for p in patched]).reshape(-1, pairs).mean(1)  # pairs averaged
            return values.reshape(shape)

        engine(True)  # warm-up (first calls allocate)
        peer_s, expected = timed(peer, device)
        expected = expected.reshape(shape).cpu()
        reuse_s, reused = timed(lambda: engine(True), device)
        full_s, full = timed(lambda: engine(False), device)
        row = {
            "function": f"get_act_patch_{kind}" + ("_by_pos" if kind == "head_out" else ""),
            "patches": len(experiments) // pairs,
            "transformer_lens_s": round(peer_s, 3),
            "engine_s": round(reuse_s, 3),
            "engine_no_reuse_s": round(full_s, 3),
            "speedup": round(peer_s / reuse_s, 1),
            "speedup_no_reuse": round(peer_s / full_s, 1),
            "max_abs_difference": float(max((reused - expected).abs().max(), (full - expected).abs().max())),
        }
        assert row["max_abs_difference"] < 1e-3, row  # the same patches, the same results
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["small", "medium", "gpt2"], help="model presets")
    parser.add_argument("--checkpoint", help="a trained GPT-2 checkpoint instead of fresh presets")
    parser.add_argument("--pairs", type=int, default=1, help="clean/corrupted pairs (TransformerLens batches them)")
    parser.add_argument("--head-positions", type=int, default=8, help="last positions of the per-head patches")
    parser.add_argument("--chunk-size", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="benchmarks/out/tl_patch_compare.json")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    report = {
        "machine": machine(device),
        "pairs": args.pairs,
        "models": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for size in [args.checkpoint] if args.checkpoint else args.sizes:
            checkpoint = args.checkpoint or fresh_checkpoint(Path(tmp) / size, size)
            model, tokenizer = to_hooked_transformer(checkpoint, device)
            rows = measure(model, tokenizer, args.pairs, args.head_positions, args.chunk_size, device)
            cfg = model.cfg
            report["models"][size] = {
                "layers": cfg.n_layers,
                "d_model": cfg.d_model,
                "heads": cfg.n_heads,
                "rows": rows,
            }
            print(
                f"{size}: {cfg.n_layers} layers x {cfg.d_model}, {args.pairs} pair(s) on {report['machine']['device']}"
            )
            header = f"{'TL s':>8} {'engine s':>9} {'no reuse s':>10} {'speed-up':>9} {'max |Δ|':>8}"
            print(f"  {'function':<38} {'patches':>7} {header}")
            for r in rows:
                print(
                    f"  {r['function']:<38} {r['patches']:>7} {r['transformer_lens_s']:>8.2f} {r['engine_s']:>9.2f}"
                    f" {r['engine_no_reuse_s']:>10.2f} {r['speedup']:>8.1f}x {r['max_abs_difference']:>8.1e}"
                )
    write_json(args.out, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
