"""Activation patching for the HRM family (seed 000) on the interp engine.

**What runs.** An analysis run is an eval-mode ACT rollout: every puzzle runs exactly ``max_steps``
segments from a fresh carry (eval never halts early, so every row makes the same module calls) and is
scored on the last segment's prediction: token accuracy over the labelled cells, exact solve, and which
cells are right.

**Call indices** (eval mode; training adds a 6-call target-Q pass per step). With N = ``H_cycles``,
T = ``L_cycles``, in ACT step s, high-level cycle h and low-level step t:

- HRM-ACT-v1: ``inner.L_level`` call ``s·N·T + h·T + t``; ``inner.H_level`` call ``s·N + h``; a block
  ``inner.L_level.layers.i`` has the call index of its module.
- TRM (one net): ``inner.L_level`` runs N·(T+1) times per step — per recursion T latent updates then
  the answer update.
- The transformer baseline: ``inner.H_level`` call ``s·H_cycles + h``.

**Aliases** ``z_H@s`` / ``z_L@s``: the high / low-level state *produced by* ACT step s (the carry the next
step starts from; ``z_H@s`` is what step s's answer is read from). For HRM that is the last
``H_level`` / ``L_level`` call of step s. Patching ``z_H@s`` therefore changes step s's output and every
later step. Positions are positions of the state: the puzzle-embedding prefix first
(``inner.puzzle_emb_len`` slots), then the puzzle's cells — :func:`level_interventions` takes *cell*
positions and adds the prefix.

:class:`HRMAdapter` supplies the run, the aliases and the metric to :func:`reasonlens.interp.run_sweep`.
:func:`run_single_patch` and :func:`run_patch_sweep` are what ``scripts/activation_patching.py``,
``scripts/batch_activation_patching.py`` and ``reasonlens patch`` / ``patch-batch`` call.
"""

from __future__ import annotations

import html
import itertools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from reasonlens.hrm.baselines import TransformerACT
from reasonlens.hrm.checkpoint import load_checkpoint
from reasonlens.hrm.data.format import DatasetError, load_split
from reasonlens.hrm.data.sampler import collate_examples
from reasonlens.hrm.evaluate import halting_at
from reasonlens.hrm.evaluation_run import trained_data_path
from reasonlens.hrm.losses import IGNORE_LABEL_ID
from reasonlens.hrm.model import ACTModel
from reasonlens.hrm.trm import TRM
from reasonlens.interp import Alias, Experiment, InterpError, Intervention, PatchResult, probe_sites, validate
from reasonlens.interp.hooks import SitePatch, capture, intervene
from reasonlens.interp.sweep import run_looped, run_sweep, single_row_patch
from reasonlens.utils.device import resolve_device

LEVEL_SITES = {"H": ("z_H",), "L": ("z_L",), "both": ("z_H", "z_L")}


def hrm_aliases(model: ACTModel) -> dict[str, Alias]:
    """``z_H`` / ``z_L`` as module-call aliases (see the module docstring)."""
    c = model.config
    if isinstance(model, TRM):
        per_step = c.H_cycles * (c.L_cycles + 1)
        return {
            "z_H": Alias("inner.L_level", per_step, per_step - 1, "answer state after each ACT step"),
            "z_L": Alias("inner.L_level", per_step, per_step - 2, "latent state after each ACT step"),
        }
    if isinstance(model, TransformerACT):
        return {"z_H": Alias("inner.H_level", c.H_cycles, c.H_cycles - 1, "state after each ACT step")}
    per_step_l = c.H_cycles * c.L_cycles
    return {
        "z_H": Alias("inner.H_level", c.H_cycles, c.H_cycles - 1, "high-level state after each ACT step"),
        "z_L": Alias("inner.L_level", per_step_l, per_step_l - 1, "low-level state after each ACT step"),
    }


def call_index(model: ACTModel, module: str, step: int, h_cycle: int = 0, l_cycle: int = 0) -> int:
    """The call index of ``inner.L_level`` / ``inner.H_level`` (or a block in them) for (ACT step, H
    cycle, L cycle), in eval mode."""
    c = model.config
    if isinstance(model, TRM):
        return step * c.H_cycles * (c.L_cycles + 1) + h_cycle * (c.L_cycles + 1) + l_cycle
    if module.startswith("inner.L_level"):
        return step * c.H_cycles * c.L_cycles + h_cycle * c.L_cycles + l_cycle
    if module.startswith("inner.H_level"):
        return step * c.H_cycles + h_cycle
    raise InterpError(
        f"{module!r} runs once per segment or is not a reasoning module; use inner.L_level / inner.H_level"
    )


class HRMAdapter:
    """Runs an HRM-family model on examples of a puzzle dataset split for ``max_steps`` ACT segments."""

    def __init__(
        self,
        model: ACTModel,
        dataset_dir: str | os.PathLike,
        split: str = "test",
        max_steps: int | None = None,
        device: str | torch.device = "cpu",
    ):
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.model = model.to(self.device).eval()
        self.dataset_dir = Path(dataset_dir)
        self.metadata, self.arrays = load_split(dataset_dir, split)
        if self.metadata.seq_len != model.config.seq_len:
            raise DatasetError(
                f"{dataset_dir} has puzzles of {self.metadata.seq_len} cells but the model was built "
                f"for {model.config.seq_len}"
            )
        self.max_steps = max_steps or model.config.halt_max_steps
        self.aliases = hrm_aliases(model)

    @classmethod
    def from_checkpoint(cls, checkpoint, data=None, split="test", max_steps=None, device="auto") -> HRMAdapter:
        data = data or trained_data_path(Path(checkpoint))
        if data is None:
            raise InterpError(f"no dataset recorded for {checkpoint}; pass the dataset folder (--data DIR)")
        meta, _ = load_split(data, split)
        model = load_checkpoint(checkpoint, seq_len=meta.seq_len, data_path=data)
        return cls(model, data, split, max_steps, device)

    @property
    def prefix_len(self) -> int:
        return self.model.inner.puzzle_emb_len

    @property
    def num_examples(self) -> int:
        return self.arrays.num_examples

    def batch(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        indices = np.asarray(indices)
        if indices.size and (indices.min() < 0 or indices.max() >= self.num_examples):
            raise InterpError(
                f"puzzle index {int(indices.max())} is out of range: the split has "
                f"{self.num_examples} puzzles (0..{self.num_examples - 1})"
            )
        return {k: v.to(self.device) for k, v in collate_examples(self.metadata, self.arrays, indices).items()}

    def run(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        carry = self.model.initial_carry(batch)
        with halting_at(self.model, self.max_steps):
            for _ in range(self.max_steps):
                carry, outputs = self.model(carry, batch)
        return outputs["logits"]

    def score(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        labels = batch["labels"]
        scored = labels != IGNORE_LABEL_ID
        correct = (logits.argmax(-1) == labels) & scored
        counts = scored.sum(-1).clamp_min(1)
        return {
            "accuracy": correct.sum(-1) / counts,
            "exact": (correct.sum(-1) == scored.sum(-1)).float(),
            "correct": correct,
        }

    def sites(self) -> dict:
        return probe_sites(self.model, lambda: self.run(self.batch([0])), self.aliases)

    def grid(self, tokens: np.ndarray) -> np.ndarray:
        side = round(len(tokens) ** 0.5)
        return np.asarray(tokens).reshape(side, side) if side * side == len(tokens) else np.asarray(tokens)[None]


def parse_steps(text: str, max_steps: int) -> tuple[int, ...] | None:
    """``all`` → None (every step); ``0,1,2`` → (0, 1, 2); ranges ``0-3`` allowed."""
    from reasonlens.interp.spec import _parse_indices

    steps = _parse_indices(text, "step", f"--patch_steps {text}")
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
    from reasonlens.interp.spec import _parse_indices
    from reasonlens.utils.io import write_yaml

    source_adapter = source_adapter or adapter
    if source_adapter.metadata.seq_len != adapter.metadata.seq_len:
        raise InterpError(
            f"source puzzles have {source_adapter.metadata.seq_len} cells and target puzzles "
            f"{adapter.metadata.seq_len}: patching needs source and target of the same shape"
        )
    steps = parse_steps(steps_text, adapter.max_steps)
    positions = _parse_indices(positions_text, "position", f"--patch_positions {positions_text}")
    interventions = level_interventions(level, steps, positions, adapter.prefix_len)
    validate(interventions, adapter.sites(), call_word="step")

    states = ("z_H", "z_L") if "z_L" in adapter.aliases else ("z_H",)
    source_batch = source_adapter.batch([source_idx])
    target_batch = adapter.batch([target_idx])
    with torch.inference_mode():
        with capture(source_adapter.model, states, source_adapter.aliases) as source_cache:
            source_scores = source_adapter.score(source_adapter.run(source_batch), source_batch)
        with capture(adapter.model, states, adapter.aliases) as target_cache:
            baseline = adapter.score(adapter.run(target_batch), target_batch)
        source_rows = {key: source_cache[key][0] for key in source_cache}
        patches = [SitePatch(i.site, i.calls, single_row_patch(i, source_rows)) for i in interventions]
        with (
            intervene(adapter.model, patches, adapter.aliases),
            capture(adapter.model, states, adapter.aliases) as patched_cache,
        ):
            patched = adapter.score(adapter.run(target_batch), target_batch)

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
    from reasonlens.utils.io import torch_save_atomic

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
    from reasonlens.interp.report import board_heatmap

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


def sweep(
    adapter: HRMAdapter, experiments: Sequence[Experiment], batched: bool = True, chunk_size: int = 64
) -> list[PatchResult]:
    runner = run_sweep if batched else run_looped
    kwargs = {"chunk_size": chunk_size} if batched else {}
    baselines, patched = runner(adapter, experiments, **kwargs)
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
) -> dict:
    """All (source, target) pairs × levels × step configs through the batched engine; writes one YAML per
    experiment, results.{json,csv}, summary.json, heatmaps and report.html."""
    import time

    from reasonlens.interp.report import board_heatmap, grid_html, heatmap, table_html, write_html_report
    from reasonlens.interp.results import aggregate, save_results
    from reasonlens.utils.io import write_json, write_yaml

    output_dir = Path(output_dir)
    experiments = build_experiments(adapter, num_puzzles, levels, steps_configs, mode)
    started = time.perf_counter()
    results = sweep(adapter, experiments, batched=True, chunk_size=chunk_size)
    seconds = time.perf_counter() - started
    for number, result in enumerate(results):
        level, steps = result.tags["level"], result.tags["steps"].replace(",", "-")
        name = f"exp_{number:04d}_src{result.source}_tgt{result.target}_{level}_steps-{steps}"
        write_yaml(output_dir / "experiments" / f"{name}.yaml", result.to_dict())
    save_results(results, output_dir / "results.json")
    save_results(results, output_dir / "results.csv")

    table = aggregate(results, "accuracy", ("level", "steps"))
    exact = {(r["level"], r["steps"]): r["mean_change"] for r in aggregate(results, "exact", ("level", "steps"))}
    for row in table:
        row["mean_exact_change"] = exact[(row["level"], row["steps"])]
    disruptive = sorted(table, key=lambda r: r["mean_change"])[:5]
    baseline = float(np.mean([r.baseline["accuracy"] for r in results]))
    summary = {
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
    heat = heatmap(
        matrix,
        list(levels),
        [f"steps {s}" for s in steps_configs],
        output_dir / "accuracy_change.png",
        "mean accuracy change (patched − baseline)",
        "patch level",
        "patched ACT steps",
        "Δ accuracy",
    )
    worst = disruptive[0]
    worst_results = [r for r in results if r.tags["level"] == worst["level"] and r.tags["steps"] == worst["steps"]]
    cell_change = np.mean(
        [np.array(r.patched["correct"], float) - np.array(r.baseline["correct"], float) for r in worst_results], axis=0
    )
    board = board_heatmap(
        adapter.grid(cell_change),
        output_dir / "cells_most_disruptive.png",
        f"per-cell change, level {worst['level']}, steps {worst['steps']}",
        value_label="Δ correct",
    )
    puzzles = "".join(
        f"<div style='display:inline-block;margin:4px'><b>puzzle {i}</b>"
        f"{grid_html(adapter.grid(adapter.arrays.inputs[i] - 1))}</div>"
        for i in range(num_puzzles)
    )
    write_html_report(
        output_dir / "report.html",
        "HRM activation patching",
        [
            (
                "Setup",
                f"<p>{len(results)} experiments ({mode}, {num_puzzles} puzzles, levels {', '.join(levels)}, "
                f"steps configs {', '.join(steps_configs)}, {adapter.max_steps} ACT steps) in {seconds:.1f} s; "
                f"mean target baseline accuracy {baseline:.4f}. Data: {html.escape(str(adapter.dataset_dir))}</p>",
            ),
            ("Mean accuracy change by level and patched steps", heat),
            (
                "All configurations",
                table_html(
                    table, ["level", "steps", "mean_change", "std_change", "min_change", "mean_exact_change", "count"]
                ),
            ),
            ("Most disruptive: mean per-cell change on the board", board),
            ("Puzzles (inputs; 0 = blank, tokens − 1)", puzzles),
        ],
    )
    log(f"{len(results)} experiments in {seconds:.1f} s; mean target baseline accuracy {baseline:.4f}")
    for row in sorted(table, key=lambda r: (r["level"], r["steps"])):
        log(
            f"  level {row['level']:<4} steps {row['steps']:<8} mean change {row['mean_change']:+.4f} "
            f"± {row['std_change']:.4f}  (exact {row['mean_exact_change']:+.4f})"
        )
    log("most disruptive: " + ", ".join(f"{r['level']}@{r['steps']} ({r['mean_change']:+.4f})" for r in disruptive[:3]))
    log(f"wrote {output_dir}/summary.json, results.json/.csv, experiments/, report.html")
    return summary
