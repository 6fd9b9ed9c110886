"""Activation patching between in-distribution and OOD prompts (and back), through the interp engine.

Patching needs pairs whose answers agree, so an effect measures how the model *represents* the shifted
input rather than a changed answer. :func:`counterfactual_pairs` builds them by construction from one ID
example each:

- ``paraphrase`` — the same rule, cards and threshold in the held-out phrasing;
- ``unseen_colour`` — the rule's colour A renamed to an unseen colour in the rule and on every A card;
- ``more_cards`` — unselected distractor cards put in front until the count reaches the OOD range.

Prompts are left-padded to one width, so relative position −1 is ``Answer:`` in both prompts of a pair
and the card block's tail lines up. Sites: the residual stream before block 0 (``emb``) and after every
block at each of the last K positions; each attention head (``blocks.l.attn.hook_z``, all positions);
each attention and MLP output. For every site the summary reports the mean target baseline, the mean
source baseline, the mean patched metric and the **restoration** (patched − target) / (source − target)
of the mean logit difference (right − wrong answer token): 1 means the patch carries the source's
behaviour over completely. When the two means are closer than 0.1 logits the ratio is noise and is left
out; ``mean_abs_change`` (mean |patched − target| per pair) then says how much the site matters, and the
heatmaps show it instead. With ``patch_method: attribution`` every patched logit difference is the
first-order estimate (:mod:`reasonlens.interp.attribution`; no patched accuracy) — a screen before exact
patching.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from reasonlens.interp import Experiment, Intervention, run_sweep
from reasonlens.interp.attribution import attribution_sweep
from reasonlens.interp.report import heatmap
from reasonlens.lm.analysis.hooks import LMAdapter, PromptSet, residual_sites
from reasonlens.lm.config.analysis_config import PAIRABLE, AnalysisConfig
from reasonlens.lm.config.task_config import COLOUR_FAMILIES, TaskConfig
from reasonlens.lm.errors import LMError
from reasonlens.lm.tasks.generators import make_example
from reasonlens.lm.tasks.rules import Rule, rule_from_name
from reasonlens.utils.io import write_json


def _distractor(rule: Rule, config: TaskConfig, rng: random.Random) -> tuple[str, int]:
    for _ in range(1000):
        card = (rng.choice(config.colours), rng.randint(*config.number_range))
        if not rule.selects(*card):
            return card
    raise LMError(f"rule {rule.name} selects every possible card; it has no distractors")


def counterfactual_pair(config: TaskConfig, rng: random.Random, category: str) -> tuple[dict, dict]:
    """(ID example, OOD example) with the same answer, differing only by ``category``."""
    if category not in PAIRABLE:
        raise LMError(f"no answer-preserving pairs for OOD category {category!r}; allowed: {', '.join(PAIRABLE)}")
    family = None
    if category == "unseen_colour":
        families = [f for f in config.families if f in COLOUR_FAMILIES]
        if not families or not config.unseen_colours:
            raise LMError("unseen_colour pairs need a colour rule family and unseen_colours")
        family = rng.choice(families)
    base = make_example(config, rng, "id", family=family)
    rule = rule_from_name(base["rule"], config)
    cards = list(zip(base["colours"], base["numbers"]))
    keep = {"threshold": base["threshold"]}
    if category == "paraphrase":
        shifted = make_example(config, rng, "paraphrase", rule=rule, cards=cards, **keep)
    elif category == "unseen_colour":
        old, new = rule.add[0], rng.choice(config.unseen_colours)
        new_rule = Rule(rule.family, (new,), rule.subtract, rule.predicate, rule.aggregate)
        new_cards = [(new if c == old else c, n) for c, n in cards]
        shifted = make_example(
            config, rng, "unseen_colour", rule=new_rule, cards=new_cards, template=base["template"], **keep
        )
    else:
        target = rng.randint(*config.more_cards)
        extra = [_distractor(rule, config, rng) for _ in range(max(0, target - len(cards)))]
        shifted = make_example(
            config, rng, "more_cards", rule=rule, cards=extra + cards, template=base["template"], **keep
        )
    assert shifted["label"] == base["label"], "counterfactual pairs must keep the answer"
    return base, shifted


def counterfactual_pairs(config: TaskConfig, category: str, n: int, seed: int = 0) -> list[tuple[dict, dict]]:
    config.check_category(category)
    rng = random.Random(f"{config.seed}-{seed}-pairs-{category}")
    return [counterfactual_pair(config, rng, category) for _ in range(n)]


def patch_sites(cfg, config: AnalysisConfig, width: int) -> list[tuple[dict, Intervention]]:
    """(tags, intervention) for every site patched in one direction."""
    sites = residual_sites(cfg.n_layers, config.layers)
    layers = config.layers if config.layers is not None else range(cfg.n_layers)
    heads = config.heads if config.heads is not None else range(cfg.n_heads)
    for head in heads:
        if not 0 <= head < cfg.n_heads:
            raise LMError(f"head {head} does not exist; the model has heads 0..{cfg.n_heads - 1}")
    k = min(config.patch_positions, width)
    out = []
    for label, site in sites.items():
        for offset in range(k, 0, -1):
            out.append(
                ({"kind": "resid", "site": label, "position": -offset}, Intervention(site, positions=(width - offset,)))
            )
    for layer in layers:
        for head in heads:
            units = tuple(range(head * cfg.d_head, (head + 1) * cfg.d_head))
            tags = {"kind": "head", "site": f"L{layer}H{head}", "layer": layer, "head": head}
            out.append((tags, Intervention(f"blocks.{layer}.attn.hook_z", units=units)))
        out.append(
            ({"kind": "attn", "site": f"attn{layer}", "layer": layer}, Intervention(f"blocks.{layer}.hook_attn_out"))
        )
        out.append(
            ({"kind": "mlp", "site": f"mlp{layer}", "layer": layer}, Intervention(f"blocks.{layer}.hook_mlp_out"))
        )
    return out


MIN_GAP = 0.1  # logits: below this source-target gap a restoration ratio is noise; read mean_abs_change


def _summary(tags: dict, targets: list[int], sources: list[int], baselines: dict, patched: list[dict]) -> dict:
    changes = [p["logit_diff"] - baselines[t]["logit_diff"] for p, t in zip(patched, targets)]
    target_ld = np.mean([baselines[t]["logit_diff"] for t in targets])
    source_ld = np.mean([baselines[s]["logit_diff"] for s in sources])
    patched_ld = np.mean([p["logit_diff"] for p in patched])
    gap = source_ld - target_ld
    return {
        **tags,
        "target_logit_diff": float(target_ld),
        "source_logit_diff": float(source_ld),
        "patched_logit_diff": float(patched_ld),
        "restoration": float((patched_ld - target_ld) / gap) if abs(gap) >= MIN_GAP else None,
        "mean_abs_change": float(np.mean(np.abs(changes))),
        "target_accuracy": float(np.mean([baselines[t]["correct"] for t in targets])),
        "patched_accuracy": float(np.mean([p["correct"] for p in patched])) if "correct" in patched[0] else None,
    }


def run_patching(model, tokenizer, task_config: TaskConfig, config: AnalysisConfig, out_dir=None) -> dict:
    """ID→OOD and OOD→ID patching for every category of ``config.patch_categories``."""
    config = AnalysisConfig.from_dict(config)
    results = {}
    for category in config.patch_categories:
        pairs = counterfactual_pairs(task_config, category, config.patch_pairs, config.seed)
        n = len(pairs)
        prompts = PromptSet.build(tokenizer, [a for a, _ in pairs] + [b for _, b in pairs], model.cfg.n_ctx)
        adapter = LMAdapter(model, prompts)
        sites = patch_sites(model.cfg, config, prompts.width)
        sweeps, baselines = {}, {}
        directions = {"id_to_ood": (range(n), range(n, 2 * n)), "ood_to_id": (range(n, 2 * n), range(n))}
        for direction, (sources, targets) in directions.items():
            experiments = [
                Experiment(t, s, (intervention,), tags)
                for tags, intervention in sites
                for s, t in zip(sources, targets)
            ]
            if config.patch_method == "attribution":
                base, sweeps[direction] = attribution_sweep(adapter, experiments, "logit_diff", config.batch_size)
            else:
                base, sweeps[direction] = run_sweep(adapter, experiments, chunk_size=config.batch_size)
            baselines.update(base)  # each direction's targets are the other's sources
        rows = []
        for direction, (sources, targets) in directions.items():
            for i, (tags, _) in enumerate(sites):
                chunk = sweeps[direction][i * n : (i + 1) * n]
                rows.append({"direction": direction, **_summary(tags, list(targets), list(sources), baselines, chunk)})
        id_acc = float(np.mean([baselines[i]["correct"] for i in range(n)]))
        ood_acc = float(np.mean([baselines[i]["correct"] for i in range(n, 2 * n)]))
        results[category] = {"pairs": n, "id_accuracy": id_acc, "ood_accuracy": ood_acc, "sites": rows}
    report = {"categories": results, "positions": config.patch_positions, "method": config.patch_method}
    if out_dir is not None:
        out_dir = Path(out_dir)
        write_json(out_dir / "patching.json", report)
        plot_patching(report, out_dir)
    return report


def plot_patching(report: dict, out_dir: Path) -> list[Path]:
    """Per category and direction: residual stream × position heatmap of the restoration (or of the mean
    absolute change where the source and target means are too close for a ratio)."""
    paths = []
    for category, result in report["categories"].items():
        for direction in ("id_to_ood", "ood_to_id"):
            rows = [r for r in result["sites"] if r["direction"] == direction and r["kind"] == "resid"]
            metric = "restoration" if all(r["restoration"] is not None for r in rows) else "mean_abs_change"
            sites = list(dict.fromkeys(r["site"] for r in rows))
            positions = sorted({r["position"] for r in rows})
            matrix = np.full((len(sites), len(positions)), np.nan)
            for r in rows:
                matrix[sites.index(r["site"]), positions.index(r["position"])] = r[metric]
            title = f"{category}: {direction.replace('_', ' ')} ({metric.replace('_', ' ')})"
            path = out_dir / f"patching_{category}_{direction}.png"
            paths.append(
                heatmap(
                    matrix,
                    sites,
                    [str(p) for p in positions],
                    path,
                    title,
                    "residual stream",
                    "position from end",
                    metric,
                )
            )
    return paths
