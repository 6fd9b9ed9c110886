"""Seed 000's activation patching of HRM-family models: one source → target patch with its metrics, saved
activations and board picture (``scripts/activation_patching.py``, ``reasonlens patch``), and batched sweeps
over many pairs (``scripts/batch_activation_patching.py``, ``reasonlens patch-batch``), all run by the
interp engine through :class:`~reasonlens.hrm.analysis.adapter.HRMAdapter`.

Levels ``H`` / ``L`` / ``both`` patch the aliases ``z_H`` / ``z_L`` (the state each ACT step produces) at
the chosen ACT steps; positions are *cell* positions, to which :func:`level_interventions` adds the
puzzle-embedding prefix. :class:`ActivationPatcher` is the seed's own vocabulary over the same machinery.
"""

from __future__ import annotations

import html
import itertools
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from reasonlens.hrm.analysis.adapter import HRMAdapter
from reasonlens.interp import ActivationCache, Experiment, InterpError, Intervention, PatchResult, apply, validate
from reasonlens.interp.attribution import attribution_sweep
from reasonlens.interp.hooks import capture
from reasonlens.interp.report import board_heatmap, grid_html, heatmap, table_html, write_html_report
from reasonlens.interp.results import aggregate, save_results
from reasonlens.interp.spec import parse_indices
from reasonlens.interp.sweep import run_looped, run_sweep
from reasonlens.utils.io import torch_save_atomic, write_json, write_yaml

LEVEL_SITES = {"H": ("z_H",), "L": ("z_L",), "both": ("z_H", "z_L")}


def parse_steps(text: str, max_steps: int) -> tuple[int, ...] | None:
    """``all`` → None (every step); ``0,1,2`` → (0, 1, 2); ranges ``0-3`` allowed."""
    steps = parse_indices(text, "step", f"--patch_steps {text}")
    if steps is not None and steps[-1] >= max_steps:
        raise InterpError(
            f"--patch_steps {text}: step {steps[-1]} is beyond the run's {max_steps} steps "
            f"(0..{max_steps - 1}); raise --max_steps or patch earlier steps"
        )
    return steps


def level_interventions(
    level: str, steps: tuple[int, ...] | None, positions: tuple[int, ...] | None, prefix_len: int
) -> tuple[Intervention, ...]:
    """Patch ``z_H`` / ``z_L`` / both at the given ACT steps and puzzle cells (prefix slots added)."""
    if level not in LEVEL_SITES:
        raise InterpError(f"patch level must be one of H, L, both; got {level!r}")
    state_positions = None if positions is None else tuple(p + prefix_len for p in positions)
    return tuple(Intervention(site, positions=state_positions, calls=steps) for site in LEVEL_SITES[level])


# --------------------------------------------------------------------------------------------
# The seed's ActivationPatcher


class ActivationPatcher:
    """Seed 000's ``ActivationPatcher``: run a source puzzle and cache its activations (z_H, z_L), then run a
    target puzzle with those activations patched in, selected by level (H / L / both), ACT step and cell
    position. A thin face over :class:`HRMAdapter` and :func:`reasonlens.interp.apply`.

    The seed replaces "the inner carry activations before each step"; here ``z_H@s`` / ``z_L@s`` are the
    states ACT step s *produces* — the carry step s + 1 starts from — so patching step s changes the
    answer read at step s and everything after it. Cached activations live on the CPU.

    >>> patcher = ActivationPatcher.from_checkpoint("runs/demo")                        # doctest: +SKIP
    >>> _, source = patcher.cache_activations(0)                                         # doctest: +SKIP
    >>> scores, _ = patcher.patched_run(1, source, level="H", steps=(2,))                # doctest: +SKIP
    """

    def __init__(self, adapter: HRMAdapter):
        self.adapter = adapter
        self.levels = ("z_H", "z_L") if "z_L" in adapter.aliases else ("z_H",)

    @classmethod
    def from_checkpoint(cls, checkpoint, data=None, max_steps: int | None = None, device="auto"):
        return cls(HRMAdapter.from_checkpoint(checkpoint, data, max_steps=max_steps, device=device))

    def cache_activations(self, puzzle_idx: int) -> tuple[dict[str, torch.Tensor], ActivationCache]:
        """Run one puzzle for ``max_steps`` ACT steps; its scores and its z_H / z_L after every step."""
        adapter = self.adapter
        batch = adapter.batch([puzzle_idx])
        with torch.inference_mode(), capture(adapter.model, self.levels, adapter.aliases) as cache:
            scores = adapter.score(adapter.run(batch), batch)
        return scores, cache

    def patched_run(
        self,
        target_idx: int,
        source: ActivationCache,
        level: str = "both",
        steps: tuple[int, ...] | None = None,
        positions: tuple[int, ...] | None = None,
    ) -> tuple[dict[str, torch.Tensor], ActivationCache]:
        """Run the target puzzle with the source's z_H / z_L (``level``) patched in at ``steps`` (None: all
        ACT steps) and cell ``positions`` (None: all cells); its scores and its own activations."""
        adapter = self.adapter
        interventions = level_interventions(level, steps, positions, adapter.prefix_len)
        batch = adapter.batch([target_idx])
        with (
            torch.inference_mode(),
            apply(adapter.model, interventions, adapter.aliases, source=source, sites=adapter.sites()),
            capture(adapter.model, self.levels, adapter.aliases) as cache,
        ):
            scores = adapter.score(adapter.run(batch), batch)
        return scores, cache


# --------------------------------------------------------------------------------------------
# Single experiment (scripts/activation_patching.py)


def run_single_patch(
    adapter: HRMAdapter,
    source_idx: int,
    target_idx: int,
    level: str,
    steps_text: str = "all",
    positions_text: str = "all",
    output_dir: str | os.PathLike = "results/activation_patching",
    source_adapter: HRMAdapter | None = None,
    log=print,
) -> dict:
    """One source → target patch: metrics YAML, cached activations (.pt), board picture, console analysis."""
    source_adapter = source_adapter or adapter
    if source_adapter.metadata.seq_len != adapter.metadata.seq_len:
        raise InterpError(
            f"source puzzles have {source_adapter.metadata.seq_len} cells and target puzzles "
            f"{adapter.metadata.seq_len}: patching needs source and target of the same shape"
        )
    steps = parse_steps(steps_text, adapter.max_steps)
    positions = parse_indices(positions_text, "position", f"--patch_positions {positions_text}")
    cells = adapter.metadata.seq_len
    if positions is not None and positions[-1] >= cells:  # said in cells, before the prefix is added
        raise InterpError(
            f"--patch_positions {positions_text}: cell {positions[-1]} is beyond the puzzle's {cells} cells "
            f"(0..{cells - 1})"
        )
    interventions = level_interventions(level, steps, positions, adapter.prefix_len)

    source_scores, source_cache = ActivationPatcher(source_adapter).cache_activations(source_idx)
    patcher = ActivationPatcher(adapter)
    baseline, target_cache = patcher.cache_activations(target_idx)
    patched, patched_cache = patcher.patched_run(target_idx, source_cache, level, steps, positions)
    target_batch = adapter.batch([target_idx])

    flips_good = (~baseline["correct"][0] & patched["correct"][0]).nonzero().flatten().tolist()
    flips_bad = (baseline["correct"][0] & ~patched["correct"][0]).nonzero().flatten().tolist()
    metrics = {
        "source_accuracy": float(source_scores["accuracy"][0]),
        "target_baseline_accuracy": float(baseline["accuracy"][0]),
        "target_patched_accuracy": float(patched["accuracy"][0]),
        "accuracy_change": float(patched["accuracy"][0] - baseline["accuracy"][0]),
        "source_exact": bool(source_scores["exact"][0]),
        "target_baseline_exact": bool(baseline["exact"][0]),
        "target_patched_exact": bool(patched["exact"][0]),
        "cells_fixed_by_patch": flips_good,
        "cells_broken_by_patch": flips_bad,
    }
    name = f"src{source_idx}_tgt{target_idx}_{level}_steps-{steps_text.replace(',', '-')}"
    if positions is not None:
        name += f"_pos-{positions_text.replace(',', '-')}"
    output_dir = Path(output_dir)
    record = {
        "metrics": metrics,
        "config": {
            "source_puzzle_idx": source_idx,
            "target_puzzle_idx": target_idx,
            "patch_level": level,
            "patch_steps": steps_text,
            "patch_positions": positions_text,
            "max_steps": adapter.max_steps,
            "spec": ";".join(str(i) for i in interventions),
            "data": str(adapter.dataset_dir),
        },
    }
    write_yaml(output_dir / f"patching_{name}.yaml", record)
    activations = {"source": source_cache, "target_baseline": target_cache, "target_patched": patched_cache}
    payload = {
        kind: {site: cache.stacked(site)[:, 0].cpu() for site in cache.sites()} for kind, cache in activations.items()
    }
    torch_save_atomic({"activations": payload, "config": record["config"]}, output_dir / f"activations_{name}.pt")
    picture = _board_picture(adapter, target_batch, baseline, patched, positions, output_dir / f"board_{name}.png")
    for line in console_analysis(metrics, level, steps_text):
        log(line)
    return {
        **record,
        "files": {
            "yaml": str(output_dir / f"patching_{name}.yaml"),
            "activations": str(output_dir / f"activations_{name}.pt"),
            "board": str(picture),
        },
    }


def _board_picture(adapter, batch, baseline, patched, positions, path):
    change = patched["correct"][0].float() - baseline["correct"][0].float()
    labels = batch["labels"][0].clamp_min(0).cpu().numpy()
    marks = np.zeros(len(labels), dtype=bool)
    if positions is not None:
        marks[list(positions)] = True
    return board_heatmap(
        adapter.grid(change.cpu().numpy()),
        path,
        "target cells: patched − baseline correctness",
        labels=adapter.grid(_cell_text(labels)),
        highlight=adapter.grid(marks),
        value_label="Δ correct",
    )


def _cell_text(tokens: np.ndarray) -> np.ndarray:
    return np.asarray([str(int(t)) for t in tokens], dtype=object)


def console_analysis(metrics: dict, level: str, steps: str) -> list[str]:
    change = metrics["accuracy_change"]
    lines = [
        f"patch level {level}, steps {steps}",
        f"  source accuracy           {metrics['source_accuracy']:.4f}  (exact {metrics['source_exact']})",
        f"  target baseline accuracy  {metrics['target_baseline_accuracy']:.4f}  "
        f"(exact {metrics['target_baseline_exact']})",
        f"  target patched accuracy   {metrics['target_patched_accuracy']:.4f}  "
        f"(exact {metrics['target_patched_exact']})",
        f"  accuracy change           {change:+.4f}  ({len(metrics['cells_broken_by_patch'])} cells broken, "
        f"{len(metrics['cells_fixed_by_patch'])} fixed)",
    ]
    if change < -0.05:
        lines.append("  → large drop: these activations carry puzzle-specific information the target needed")
    elif change > 0.05:
        lines.append("  → improvement: the source activations carried something useful the target lacked")
    else:
        lines.append("  → little change: the activations here are general, or the model recovers from the swap")
    return lines


# --------------------------------------------------------------------------------------------
# Sweeps (scripts/batch_activation_patching.py)


def build_experiments(
    adapter: HRMAdapter, num_puzzles: int, levels: Sequence[str], steps_configs: Sequence[str], mode: str = "pairwise"
) -> list[Experiment]:
    if not levels:
        raise InterpError("--patch_levels names no level; give one or more of H, L, both (e.g. H,L,both)")
    if not steps_configs:
        raise InterpError("--patch_steps_configs names no step config; give e.g. all,0,1,2 (0+1 joins steps)")
    if num_puzzles < 2 or num_puzzles > adapter.num_examples:
        raise InterpError(
            f"--num_puzzles must be between 2 and the split's {adapter.num_examples} puzzles, got {num_puzzles}"
        )
    if mode == "pairwise":
        pairs = [(s, t) for s, t in itertools.permutations(range(num_puzzles), 2)]
    elif mode == "one_to_many":
        pairs = [(0, t) for t in range(1, num_puzzles)]
    else:
        raise InterpError(f"--mode must be pairwise or one_to_many, got {mode!r}")
    experiments = []
    for steps_text in steps_configs:
        steps = parse_steps(steps_text, adapter.max_steps)
        for level in levels:
            interventions = level_interventions(level, steps, None, adapter.prefix_len)
            tags = {"level": level, "steps": steps_text}
            experiments += [Experiment(t, s, interventions, tags) for s, t in pairs]
    validate({i for e in experiments for i in e.interventions}, adapter.sites(), call_word="step")
    return experiments


METHODS = {"exact": "accuracy", "attribution": "label_log_prob"}  # method -> the metric its report reads


def sweep(
    adapter: HRMAdapter,
    experiments: Sequence[Experiment],
    batched: bool = True,
    chunk_size: int = 64,
    method: str = "exact",
) -> list[PatchResult]:
    """Exact patching (batched, or looped as the reference), or the attribution estimate of every
    experiment's ``label_log_prob`` (:mod:`reasonlens.interp.attribution`)."""
    if method == "attribution":
        baselines, patched = attribution_sweep(adapter, experiments, METHODS[method], chunk_size)
    elif batched:
        baselines, patched = run_sweep(adapter, experiments, chunk_size=chunk_size)
    else:
        baselines, patched = run_looped(adapter, experiments)
    return [
        PatchResult(
            target=e.target, source=e.source, spec=e.spec, baseline=baselines[e.target], patched=p, tags=dict(e.tags)
        )
        for e, p in zip(experiments, patched)
    ]


def run_patch_sweep(
    adapter: HRMAdapter,
    num_puzzles: int,
    levels: Sequence[str],
    steps_configs: Sequence[str],
    mode: str = "pairwise",
    output_dir: str | os.PathLike = "results/activation_patching_batch",
    chunk_size: int = 64,
    log=print,
    method: str = "exact",
) -> dict:
    """All (source, target) pairs × levels × step configs through the batched engine; writes one YAML per
    experiment, results.{json,csv}, summary.json, heatmaps and report.html. ``method="attribution"``
    estimates each experiment's change of ``label_log_prob`` instead (the screen; no per-cell board)."""
    if chunk_size < 1:
        raise InterpError(f"--chunk_size must be >= 1 (experiments per batched forward), got {chunk_size}")
    if method not in METHODS:
        raise InterpError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    metric = METHODS[method]
    output_dir = Path(output_dir)
    experiments = build_experiments(adapter, num_puzzles, levels, steps_configs, mode)
    started = time.perf_counter()
    results = sweep(adapter, experiments, batched=True, chunk_size=chunk_size, method=method)
    seconds = time.perf_counter() - started
    for stale in (output_dir / "experiments").glob("exp_*_src*_tgt*_steps-*.yaml"):  # a previous sweep's, ours
        stale.unlink()
    for number, result in enumerate(results):
        level, steps = result.tags["level"], result.tags["steps"].replace(",", "-")
        name = f"exp_{number:04d}_src{result.source}_tgt{result.target}_{level}_steps-{steps}"
        write_yaml(output_dir / "experiments" / f"{name}.yaml", result.to_dict())
    save_results(results, output_dir / "results.json")
    save_results(results, output_dir / "results.csv")

    table = aggregate(results, metric, ("level", "steps"))
    if method == "exact":
        exact = {(r["level"], r["steps"]): r["mean_change"] for r in aggregate(results, "exact", ("level", "steps"))}
        for row in table:
            row["mean_exact_change"] = exact[(row["level"], row["steps"])]
    disruptive = sorted(table, key=lambda r: r["mean_change"])[:5]
    baseline = float(np.mean([r.baseline["accuracy"] for r in results]))
    summary = {
        "method": method,
        "metric": metric,
        "config": {
            "num_puzzles": num_puzzles,
            "levels": list(levels),
            "steps_configs": list(steps_configs),
            "mode": mode,
            "max_steps": adapter.max_steps,
            "data": str(adapter.dataset_dir),
        },
        "num_experiments": len(results),
        "seconds": round(seconds, 2),
        "mean_target_baseline_accuracy": baseline,
        "aggregates": table,
        "most_disruptive": disruptive,
    }
    write_json(output_dir / "summary.json", summary)

    matrix = np.array(
        [
            [
                next((r["mean_change"] for r in table if r["level"] == level and r["steps"] == steps), np.nan)
                for steps in steps_configs
            ]
            for level in levels
        ]
    )
    words = metric.replace("_", " ")
    heat = heatmap(
        matrix,
        list(levels),
        [f"steps {s}" for s in steps_configs],
        output_dir / f"{metric}_change.png",
        f"mean {words} change (patched − baseline{', estimated' if method == 'attribution' else ''})",
        "patch level",
        "patched ACT steps",
        f"Δ {words}",
    )
    columns = ["level", "steps", "mean_change", "std_change", "min_change", "count"]
    sections = [
        (
            "Setup",
            f"<p>{len(results)} experiments ({mode}, {num_puzzles} puzzles, levels {', '.join(levels)}, "
            f"steps configs {', '.join(steps_configs)}, {adapter.max_steps} ACT steps; {method} patching of "
            f"{words}) in {seconds:.1f} s; mean target baseline accuracy {baseline:.4f}. "
            f"Data: {html.escape(str(adapter.dataset_dir))}</p>",
        ),
        (f"Mean {words} change by level and patched steps", heat),
        (
            "All configurations",
            table_html(table, columns[:5] + ["mean_exact_change"] * (method == "exact") + columns[5:]),
        ),
    ]
    if method == "exact":
        worst = disruptive[0]
        worst_results = [r for r in results if r.tags["level"] == worst["level"] and r.tags["steps"] == worst["steps"]]
        cell_change = np.mean(
            [np.array(r.patched["correct"], float) - np.array(r.baseline["correct"], float) for r in worst_results],
            axis=0,
        )
        board = board_heatmap(
            adapter.grid(cell_change),
            output_dir / "cells_most_disruptive.png",
            f"per-cell change, level {worst['level']}, steps {worst['steps']}",
            value_label="Δ correct",
        )
        sections.append(("Most disruptive: mean per-cell change on the board", board))
    puzzles = "".join(
        f"<div style='display:inline-block;margin:4px'><b>puzzle {i}</b>"
        f"{grid_html(adapter.grid(adapter.arrays.inputs[i] - 1))}</div>"
        for i in range(num_puzzles)
    )
    sections.append(("Puzzles (inputs; 0 = blank, tokens − 1)", puzzles))
    write_html_report(output_dir / "report.html", "HRM activation patching", sections)
    log(f"{len(results)} experiments in {seconds:.1f} s ({method}); mean target baseline accuracy {baseline:.4f}")
    for row in sorted(table, key=lambda r: (r["level"], r["steps"])):
        exact_part = f"  (exact {row['mean_exact_change']:+.4f})" if method == "exact" else ""
        log(
            f"  level {row['level']:<4} steps {row['steps']:<8} mean {words} change {row['mean_change']:+.4f} "
            f"± {row['std_change']:.4f}{exact_part}"
        )
    log("most disruptive: " + ", ".join(f"{r['level']}@{r['steps']} ({r['mean_change']:+.4f})" for r in disruptive[:3]))
    log(f"wrote {output_dir}/summary.json, results.json/.csv, experiments/, report.html")
    return summary
