"""The experiment's page: the accuracy-vs-SFT-steps curves of both regimes, every arm's ID and OOD accuracy
with intervals (a figure and a table), the findings, and the circuit comparison — one self-contained HTML
file with its figures embedded, beside results.json."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from reasonlens.interp.report import pyplot, save_figure, table_html, write_html_report


def _cell(entry: dict | None) -> str:
    if entry is None:
        return "–"
    low, high = entry["interval"]
    return f"{entry['mean']:.3f} [{low:.3f}, {high:.3f}]"


def _layer_order(label: str) -> int:
    """Residual-stream labels in depth order: ``emb`` before ``L0``, ``L1``, ..."""
    return -1 if label == "emb" else int(label.removeprefix("L"))


def plot_curves(curves: dict, path: Path) -> Path | None:
    regimes = [(name, c) for name, c in curves.items() if c]
    if not regimes:
        return None
    plt = pyplot()
    figure, axes = plt.subplots(1, len(regimes), figsize=(6 * len(regimes), 3.8), squeeze=False)
    for axis, (name, curve) in zip(axes[0], regimes):
        for split, series in curve["splits"].items():
            style = "--" if split == "train" else "-"
            axis.plot(series["steps"], series["accuracy"], style, marker="o", label=split)
        axis.set_title(f"{name}: accuracy at kept steps ({curve['n_per_split']} examples per split)")
        axis.set_xlabel("SFT optimizer step")
        axis.set_ylabel("accuracy")
        axis.set_ylim(0, 1.02)
        axis.legend(fontsize=7)
    return save_figure(figure, path)


def compared_models(results: dict) -> dict:
    """The start checkpoints and the arms, in that order: the rows of the accuracy figure and table."""
    return {f"start {k}": v for k, v in results["starts"].items()} | results["arms"]


def plot_arms(results: dict, path: Path) -> Path | None:
    models = compared_models(results)
    if not models:
        return None
    splits = list(next(iter(models.values()))["splits"])
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(max(7, 1.4 * len(splits) * len(models) / 3), 4))
    width = 0.8 / len(models)
    for i, (name, model) in enumerate(models.items()):
        means = np.array([model["splits"][s]["mean"] if s in model["splits"] else np.nan for s in splits])
        lows = np.array([model["splits"][s]["interval"][0] if s in model["splits"] else np.nan for s in splits])
        highs = np.array([model["splits"][s]["interval"][1] if s in model["splits"] else np.nan for s in splits])
        x = np.arange(len(splits)) + (i - (len(models) - 1) / 2) * width
        axis.bar(x, means, width, yerr=[means - lows, highs - means], capsize=2, label=name)
    axis.set_xticks(np.arange(len(splits)), [s.removeprefix("ood_") for s in splits], rotation=20, fontsize=8)
    axis.set_ylabel("accuracy (95% interval)")
    axis.set_ylim(0, 1.05)
    axis.legend(fontsize=7, ncol=2)
    axis.set_title("ID test and OOD accuracy: start checkpoints and arms (mean over seeds)")
    return save_figure(figure, path)


def write_report(results: dict, out: Path) -> Path:
    out = Path(out)
    figures = out / "figures"
    sections: list[tuple[str, str | Path]] = []
    experiment = results["config"]["experiment"]
    sections.append(
        (
            "Setup",
            table_html(
                [
                    {"what": "seeds", "value": ", ".join(map(str, experiment["seeds"]))},
                    {"what": "answer format", "value": results["config"]["task"]["answer_format"]},
                    {"what": "SFT steps (large regime)", "value": results["config"]["sft"]["max_steps"]},
                    {
                        "what": "GRPO steps × completions",
                        "value": "{max_steps} × {batch_size}".format(**results["config"]["rl"]),
                    },
                    {"what": "SFT control steps (same samples)", "value": results["control_steps"]},
                    {
                        "what": "examples per split (final / curve)",
                        "value": f"{experiment['eval_examples']} / {experiment['curve_examples']}",
                    },
                ]
            ),
        )
    )
    separated = [f for f in results["findings"] if f["separated"]]
    items = "".join(
        f"<li>{html.escape(f['arm'])} vs {html.escape(f['against'])} on {html.escape(f['split'])}: "
        f"{f['difference']:+.3f}</li>"
        for f in separated
    )
    sections.append(("Findings: differences whose intervals separate", f"<ul>{items}</ul>" if items else "<p>none</p>"))
    curves = plot_curves(results["sft_curves"], figures / "sft_curves.png")
    if curves:
        sections.append(("Accuracy along SFT (large and small-data regimes)", curves))
        rows = []
        for regime, curve in results["sft_curves"].items():
            for split, s in (curve or {}).get("splits", {}).items():
                rows.append(
                    {
                        "regime": regime,
                        "split": split,
                        "peak step": s["peak_step"],
                        "peak": s["peak"],
                        "last": s["last"],
                        "falls after peak": s["falls_after_peak"],
                    }
                )
        sections.append(("Peaks of the SFT curves", table_html(rows)))
    arms = plot_arms(results, figures / "arms.png")
    if arms:
        sections.append(("Arms: ID and OOD accuracy", arms))
        models = compared_models(results)
        splits = list(next(iter(models.values()))["splits"])
        rows = [{"model": name, **{s: _cell(m["splits"].get(s)) for s in splits}} for name, m in models.items()]
        sections.append(("Accuracy: mean [95% interval]", table_html(rows, ["model", *splits])))
    if results["findings"]:
        rows = [{**f, "difference": round(f["difference"], 3)} for f in results["findings"]]
        sections.append(("Differences (a finding only where 'separated' is True)", table_html(rows)))
    circuits = results.get("circuits")
    if circuits:
        rows = []
        for arm, c in circuits["comparisons"].items():
            rows.append(
                {
                    "arm": arm,
                    "start": c["start"],
                    **{f"changed > {t}": round(v, 4) for t, v in c["changed"].items()},
                    "mean rank of ΔW / full": c["mean_rank_fraction"],
                }
            )
        sections.append((f"Weight updates (seed {circuits['seed']})", table_html(rows)))
        keys = sorted({k for c in circuits["comparisons"].values() for k in c["jaccard"]})
        rows = [
            {"comparison": k, **{arm: c["jaccard"].get(k) for arm, c in circuits["comparisons"].items()}} for k in keys
        ]
        sections.append(("Top-head Jaccard (start vs arm; and ID vs OOD within a model)", table_html(rows)))
        rows = []
        for name, model in circuits["models"].items():
            last = max((r["layer"] for r in model["probes"]), default=None, key=_layer_order)
            for target in dict.fromkeys(r["target"] for r in model["probes"]):
                scores = {
                    r["split"]: r["score"] for r in model["probes"] if r["target"] == target and r["layer"] == last
                }
                rows.append({"model": name, "target": target, "layer": last, **scores})
        sections.append(("Probes at the decision (last layer; accuracy or R²)", table_html(rows)))
        rows = [
            {"model": name, **{k: v for k, v in m["sae"].items() if not isinstance(v, dict)}}
            for name, m in circuits["models"].items()
        ]
        sections.append(("SAE on the last residual stream", table_html(rows)))
    seconds = [{"stage": k, "seconds": round(v)} for k, v in results["stage_seconds"].items()]
    sections.append(("Stage times", table_html(seconds)))
    return write_html_report(out / "report.html", "SFT vs RL on the card game", sections)
