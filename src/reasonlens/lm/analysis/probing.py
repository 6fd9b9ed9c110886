"""Linear probes on a GPT-2's residual stream, per layer, position and distribution.

For every analysed split (the ID test set and each OOD set) the residual stream is cached at each layer
and named position; a probe (``reasonlens.interp.probe``: logistic or ridge regression with a train/test
split, a shuffled-label control and a random-direction baseline) is trained for each target:

- ``family`` — which rule family (5 classes); ``label`` — BIG/SMALL;
- ``total`` — the rule's total (R²); ``colour_sums`` — the sum of each ID colour's cards (R², one per colour).

Each probe trained on ID activations is also applied unchanged to every OOD split (``transfer``): a
representation that survives the shift keeps its score.
"""

from __future__ import annotations

from pathlib import Path

import torch

from reasonlens.interp.probe import train_probe
from reasonlens.interp.report import pyplot, save_figure
from reasonlens.lm.analysis.hooks import PromptSet, cache_activations, residual_sites
from reasonlens.lm.config.analysis_config import AnalysisConfig
from reasonlens.lm.errors import LMError
from reasonlens.utils.io import write_json


def probe_targets(rows: list[dict], targets: list[str], colours: list[str]) -> dict[str, tuple[torch.Tensor, str]]:
    """{target name: (labels, task)} for the examples ``rows``."""
    out = {}
    if "family" in targets:
        out["family"] = (torch.tensor([r["family_id"] for r in rows]), "classification")
    if "label" in targets:
        out["label"] = (torch.tensor([r["label_id"] for r in rows]), "classification")
    if "total" in targets:
        out["total"] = (torch.tensor([float(r["total"]) for r in rows]), "regression")
    if "colour_sums" in targets:
        for i, colour in enumerate(colours):
            out[f"sum_{colour}"] = (torch.tensor([float(r["colour_sums"][i]) for r in rows]), "regression")
    return out


def _apply(weights: dict, features: torch.Tensor, labels: torch.Tensor, task: str) -> float:
    if task == "classification":
        predicted = weights["classes"][(features @ weights["weight"].T + weights["bias"]).argmax(1)]
        return float((predicted == labels).float().mean())
    predicted = features @ weights["weight"] + weights["bias"]
    residual = ((labels - predicted) ** 2).sum()
    spread = ((labels - labels.mean()) ** 2).sum().clamp_min(1e-12)
    return float(1 - residual / spread)


def _varies(labels: torch.Tensor, task: str) -> bool:
    return len(torch.unique(labels)) > 1 if task == "classification" else float(labels.std()) > 0


def run_probes(model, tokenizer, datasets, config: AnalysisConfig, colours: list[str], out_dir=None) -> dict:
    """Probe every (split, layer, position, target); return and optionally write ``probes.json``."""
    config = AnalysisConfig.from_dict(config)
    splits = analysis_splits(datasets, config)
    sites = residual_sites(model.cfg.n_layers, config.layers)
    rows, transfer, id_probes = [], [], {}
    for split in splits:
        examples = list(datasets[split].select(range(min(config.max_examples, len(datasets[split])))))
        prompts = PromptSet.build(tokenizer, examples, model.cfg.n_ctx)
        acts = cache_activations(model, prompts, list(sites.values()), config.positions, config.batch_size)
        targets = probe_targets(examples, config.probe_targets, colours)
        for layer, site in sites.items():
            for position in config.positions:
                features = acts[(site, position)]
                for target, (labels, task) in targets.items():
                    if not _varies(labels, task):
                        continue  # e.g. one rule family only in an OOD set: nothing to probe
                    if split == splits[0]:
                        result, weights = train_probe(
                            features, labels, task, config.probe_test_fraction, config.probe_l2, config.seed
                        )
                        id_probes[(layer, position, target)] = weights
                    else:
                        result, _ = train_probe(
                            features, labels, task, config.probe_test_fraction, config.probe_l2, config.seed
                        )
                        weights = id_probes.get((layer, position, target))
                        if weights is not None:
                            transfer.append(
                                {
                                    "split": split,
                                    "layer": layer,
                                    "position": position,
                                    "target": target,
                                    "score": _apply(weights, features, labels, task),
                                }
                            )
                    rows.append(
                        {"split": split, "layer": layer, "position": position, "target": target, **result.to_dict()}
                    )
    report = {"splits": splits, "layers": list(sites), "probes": rows, "transfer_from": splits[0], "transfer": transfer}
    if out_dir is not None:
        out_dir = Path(out_dir)
        write_json(out_dir / "probes.json", report)
        plot_probes(report, out_dir)
    return report


def analysis_splits(datasets, config: AnalysisConfig) -> list[str]:
    """The splits to analyse, ID test first; unknown names are an error listing the available ones."""
    available = [s for s in datasets if s == "test" or s.startswith("ood_")]
    splits = config.splits or available
    unknown = [s for s in splits if s not in datasets]
    if unknown:
        raise LMError(f"unknown split(s) {', '.join(unknown)}; the datasets have: {', '.join(datasets)}")
    return sorted(splits, key=lambda s: s != "test")


def plot_probes(report: dict, out_dir: Path, position: str = "final") -> list[Path]:
    """One PNG per target: test score per layer, a line per split, shuffled-label control dashed."""
    plt = pyplot()
    paths = []
    targets = list(dict.fromkeys(r["target"] for r in report["probes"]))
    for target in targets:
        figure, axes = plt.subplots(figsize=(5.5, 3.5))
        for split in report["splits"]:
            rows = [
                r
                for r in report["probes"]
                if r["split"] == split and r["target"] == target and r["position"] == position
            ]
            if not rows:
                continue
            line = axes.plot([r["layer"] for r in rows], [r["test_score"] for r in rows], marker="o", label=split)[0]
            axes.plot(
                [r["layer"] for r in rows],
                [r["control_score"] for r in rows],
                ls="--",
                color=line.get_color(),
                alpha=0.5,
            )
        axes.set_title(f"probe: {target} at '{position}' (dashed: shuffled-label control)")
        axes.set_xlabel("residual stream")
        axes.set_ylabel("test accuracy" if target in ("family", "label") else "test R²")
        axes.legend(fontsize=7)
        path = save_figure(figure, out_dir / f"probe_{target}.png")
        paths.append(path)
    return paths
