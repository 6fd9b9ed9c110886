"""Ablations of attention heads and MLP layers (zero and mean), importance per distribution, and the
comparison of two checkpoints.

A component's **importance** on a split is the drop of the mean logit difference (right − wrong answer
token at ``Answer:``) when it is ablated; ``accuracy_drop`` is the same for greedy accuracy. Zero
ablation sets the component's output to 0; mean ablation replaces it by its mean over the ID test
prompts at the same (right-aligned) position. Components are heads (``blocks.l.attn.hook_z``, one head's
slice) and MLP layers (``blocks.l.hook_mlp_out``); any other spec string (e.g. single MLP neurons,
``blocks.1.mlp.hook_post:5,7``) can be ablated too. Every (component, example) is one row of a batched
interp sweep.

:func:`compare_importance` gives, per split and op, the Jaccard overlap of the top-k head sets of two
checkpoints (e.g. SFT vs RL) and their per-layer importance profiles.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reasonlens.interp import ActivationCache, Experiment, Intervention, parse_spec, run_sweep
from reasonlens.lm.analysis.hooks import LMAdapter, PromptSet, cache_activations
from reasonlens.lm.analysis.probing import analysis_splits
from reasonlens.lm.config.analysis_config import AnalysisConfig
from reasonlens.lm.errors import LMError
from reasonlens.utils.io import write_json


def components(cfg, config: AnalysisConfig, extra_specs: list[str] | None = None) -> dict[str, Intervention]:
    """{name: intervention (op filled in later)}: every selected head and MLP layer, plus ``extra_specs``."""
    layers = config.layers if config.layers is not None else range(cfg.n_layers)
    heads = config.heads if config.heads is not None else range(cfg.n_heads)
    out = {}
    for layer in layers:
        if not 0 <= layer < cfg.n_layers:
            raise LMError(f"layer {layer} does not exist; the model has layers 0..{cfg.n_layers - 1}")
        for head in heads:
            if not 0 <= head < cfg.n_heads:
                raise LMError(f"head {head} does not exist; the model has heads 0..{cfg.n_heads - 1}")
            units = tuple(range(head * cfg.d_head, (head + 1) * cfg.d_head))
            out[f"L{layer}H{head}"] = Intervention(f"blocks.{layer}.attn.hook_z", units=units)
        out[f"mlp{layer}"] = Intervention(f"blocks.{layer}.hook_mlp_out")
    for spec in extra_specs or []:
        for intervention in parse_spec(spec):
            out[str(intervention)] = intervention
    return out


def mean_reference(model, prompts: PromptSet, sites: list[str], batch_size: int) -> ActivationCache:
    """Per-position activations of the reference prompts, for mean ablation."""
    acts = cache_activations(model, prompts, sites, ["all"], batch_size)
    cache = ActivationCache()
    for site in sites:
        cache.put(site, 0, acts[(site, "all")])
    return cache


def ablation_scan(
    model,
    tokenizer,
    datasets,
    config: AnalysisConfig,
    extra_specs: list[str] | None = None,
    out_dir=None,
    name: str = "model",
) -> dict:
    """Importance of every component on every split, for each op in ``config.ablation_ops``; ``name``
    labels the checkpoint in comparisons."""
    config = AnalysisConfig.from_dict(config)
    splits = analysis_splits(datasets, config)
    parts = components(model.cfg, config, extra_specs)
    sets = {
        s: PromptSet.build(
            tokenizer, list(datasets[s].select(range(min(config.max_examples, len(datasets[s]))))), model.cfg.n_ctx
        )
        for s in splits
    }
    width = max(p.width for p in sets.values())
    sets = {s: PromptSet.build(tokenizer, p.rows, model.cfg.n_ctx, width) for s, p in sets.items()}  # one width
    reference = None
    if "mean" in config.ablation_ops:
        reference = mean_reference(model, sets[splits[0]], sorted({i.site for i in parts.values()}), config.batch_size)
    rows = []
    for split, prompts in sets.items():
        adapter = LMAdapter(model, prompts)
        for op in config.ablation_ops:
            experiments = [
                Experiment(i, None, (Intervention(c.site, c.positions, c.calls, c.units, op=op),), {"component": label})
                for label, c in parts.items()
                for i in range(len(prompts))
            ]
            baselines, ablated = run_sweep(adapter, experiments, chunk_size=config.batch_size, reference=reference)
            base_ld = np.mean([b["logit_diff"] for b in baselines.values()])
            base_acc = np.mean([b["correct"] for b in baselines.values()])
            n = len(prompts)
            for j, component in enumerate(parts):
                chunk = ablated[j * n : (j + 1) * n]
                rows.append(
                    {
                        "split": split,
                        "op": op,
                        "component": component,
                        "baseline_logit_diff": float(base_ld),
                        "baseline_accuracy": float(base_acc),
                        "importance": float(base_ld - np.mean([r["logit_diff"] for r in chunk])),
                        "accuracy_drop": float(base_acc - np.mean([r["correct"] for r in chunk])),
                    }
                )
    report = {
        "name": name,
        "splits": splits,
        "ops": config.ablation_ops,
        "components": list(parts),
        "rows": rows,
        "top_k": config.top_k,
    }
    report["important"] = important_sets(report, config.top_k)
    if out_dir is not None:
        write_json(Path(out_dir) / "ablation.json", report)
    return report


def important_sets(report: dict, k: int, heads_only: bool = True) -> dict[str, dict[str, list[str]]]:
    """{op: {split: the k components with the largest importance}}."""
    out: dict[str, dict[str, list[str]]] = {}
    for row in report["rows"]:
        out.setdefault(row["op"], {}).setdefault(row["split"], [])
    for op, per_split in out.items():
        for split in per_split:
            rows = [r for r in report["rows"] if r["op"] == op and r["split"] == split]
            if heads_only:
                rows = [r for r in rows if r["component"].startswith("L") and "H" in r["component"]]
            rows.sort(key=lambda r: -r["importance"])
            per_split[split] = [r["component"] for r in rows[:k]]
    return out


def jaccard(a, b) -> float:
    a, b = set(a), set(b)
    return len(a & b) / len(a | b) if a | b else 1.0


def layer_profile(report: dict, op: str, split: str) -> dict[str, float]:
    """Summed head importance per layer (and each MLP's), for one op and split."""
    profile: dict[str, float] = {}
    for row in report["rows"]:
        if row["op"] != op or row["split"] != split:
            continue
        name = row["component"]
        key = f"attn{name[1:].split('H')[0]}" if name.startswith("L") and "H" in name else name
        profile[key] = profile.get(key, 0.0) + row["importance"]
    return profile


def compare_importance(a: dict, b: dict, names: tuple[str, str] | None = None, k: int | None = None) -> dict:
    """Jaccard of the top-k head sets of two ablation reports per (op, split), and both layer profiles."""
    k = k or a["top_k"]
    names = names or (a.get("name", "a"), b.get("name", "b"))
    sets_a, sets_b = important_sets(a, k), important_sets(b, k)
    out = {"names": list(names), "k": k, "jaccard": {}, "profiles": {}}
    for op in sets_a:
        for split in sets_a[op]:
            if split in sets_b.get(op, {}):
                out["jaccard"][f"{op}/{split}"] = jaccard(sets_a[op][split], sets_b[op][split])
                out["profiles"][f"{op}/{split}"] = {
                    names[0]: layer_profile(a, op, split),
                    names[1]: layer_profile(b, op, split),
                }
    # within one checkpoint: does the ID circuit stay important out of distribution?
    for name, sets in zip(names, (sets_a, sets_b)):
        for op, per_split in sets.items():
            first = next(iter(per_split))
            for split, heads in per_split.items():
                if split != first:
                    out["jaccard"][f"{name}:{op}/{first}~{split}"] = jaccard(per_split[first], heads)
    return out
