"""The experiment's numbers, read back from its stage folders: accuracies per arm with intervals, the
findings (differences whose intervals separate), the SFT curves and the circuit comparison.

An arm's accuracy on a split is the mean over seeds. Its interval is the union of two 95% intervals, so
that it covers both sources of noise: the t-interval over seeds (how much a rerun changes the result) and
the Wilson interval of all seeds' answers pooled (how much the test sample does; with 3 seeds evaluated
on the same examples the t-interval alone misses it). A start checkpoint is one model: its Wilson
interval. A difference counts as a **finding** only when the two intervals do not overlap.
"""

from __future__ import annotations

import json
from pathlib import Path

from reasonlens.lm.experiment.runner import control_steps, stage_seconds
from reasonlens.utils.stats import t_interval, wilson_interval


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _interval(accuracies: list[float], counts: list[int]) -> dict:
    successes = sum(round(a * n) for a, n in zip(accuracies, counts))
    pooled = wilson_interval(successes, sum(counts))
    seeds = t_interval(accuracies)
    low, high = min(pooled[0], seeds[0]), max(pooled[1], seeds[1])
    return {
        "mean": sum(accuracies) / len(accuracies),
        "interval": [max(0.0, low), min(1.0, high)],
        "seed_interval": list(seeds),
        "pooled_interval": list(pooled),
    }


def arm_table(plan, out: Path) -> dict:
    """{arm: {split: {mean, interval, per_seed: [...], steps_accuracy}}} over the seeds that finished."""
    table = {}
    for arm in plan.experiment.arms:
        runs = []
        for seed in plan.experiment.seeds:
            evaluation = _read(out / "arms" / arm.name / f"seed_{seed}" / "evaluation.json")
            if evaluation is not None and (out / "arms" / arm.name / f"seed_{seed}" / "DONE").is_file():
                runs.append((seed, evaluation["splits"]))
        if not runs:
            continue
        splits = {}
        for split in runs[0][1]:
            accuracies = [r[split]["accuracy"] for _, r in runs]
            counts = [r[split]["n"] for _, r in runs]
            steps = [r[split].get("steps_accuracy") for _, r in runs]
            splits[split] = {
                **_interval(accuracies, counts),
                "per_seed": [{"seed": s, "accuracy": a, "n": n} for (s, _), a, n in zip(runs, accuracies, counts)],
                "steps_accuracy": sum(steps) / len(steps) if None not in steps else None,
            }
        table[arm.name] = {
            "method": arm.method,
            "start": arm.start,
            "mix": arm.mix,
            "seeds": len(runs),
            "splits": splits,
        }
    return table


def start_table(plan, out: Path) -> dict:
    table = {}
    for name, value in plan.experiment.starts.items():
        evaluation = _read(out / "starts" / name / "evaluation.json")
        if evaluation is None:
            continue
        splits = {}
        for split, values in evaluation["splits"].items():
            low, high = wilson_interval(round(values["accuracy"] * values["n"]), values["n"])
            splits[split] = {
                "mean": values["accuracy"],
                "interval": [low, high],
                "n": values["n"],
                "steps_accuracy": values.get("steps_accuracy"),
            }
        table[name] = {"checkpoint": "best" if value == "best" else f"step {value}", "splits": splits}
    return table


def _compare(name: str, a: dict, reference: str, b: dict) -> list[dict]:
    rows = []
    for split, values in a["splits"].items():
        if split not in b["splits"]:
            continue
        other = b["splits"][split]
        separated = values["interval"][0] > other["interval"][1] or values["interval"][1] < other["interval"][0]
        rows.append(
            {
                "arm": name,
                "against": reference,
                "split": split,
                "difference": values["mean"] - other["mean"],
                "separated": separated,
            }
        )
    return rows


def findings(plan, arms: dict, starts: dict) -> list[dict]:
    """Each arm against its start, and each GRPO arm against the SFT control from the same start."""
    rows = []
    for name, arm in arms.items():
        if arm["start"] in starts:
            rows += _compare(name, arm, f"start {arm['start']}", starts[arm["start"]])
        if arm["method"] == "grpo":
            for control, other in arms.items():
                if other["method"] == "sft" and other["start"] == arm["start"]:
                    rows += _compare(name, arm, control, other)
    return rows


def curve_summary(curve: dict | None, n_examples: int) -> dict | None:
    """Per split: the step where accuracy peaks and the last step's accuracy, and whether the fall from
    the peak is larger than both points' Wilson intervals."""
    if not curve or not curve["points"]:
        return None
    out = {}
    for split in curve["points"][0]["splits"]:
        series = [(p["step"], p["splits"][split]["accuracy"], p["splits"][split]["n"]) for p in curve["points"]]
        peak = max(series, key=lambda s: s[1])
        last = series[-1]
        peak_low = wilson_interval(round(peak[1] * peak[2]), peak[2])[0]
        last_high = wilson_interval(round(last[1] * last[2]), last[2])[1]
        out[split] = {
            "steps": [s for s, _, _ in series],
            "accuracy": [a for _, a, _ in series],
            "peak_step": peak[0],
            "peak": peak[1],
            "last": last[1],
            "falls_after_peak": last_high < peak_low,
        }
    return {"n_per_split": n_examples, "splits": out}


def circuit_summary(out: Path) -> dict | None:
    """Start vs arm on the analysed seed: head-set Jaccard, weight updates, probes at the decision, SAE."""
    comparisons = _read(out / "circuits" / "comparisons.json")
    if comparisons is None:
        return None
    models = {}
    for name in comparisons["models"]:
        probes = _read(out / "circuits" / name / "probes" / "probes.json")
        sae = _read(out / "circuits" / name / "sae" / "sae_features.json")
        models[name] = {
            "probes": [
                {"split": r["split"], "layer": r["layer"], "target": r["target"], "score": r["test_score"]}
                for r in (probes or {}).get("probes", [])
                if r["position"] == "final"
            ],
            "sae": {**(sae or {}).get("sae", {}), "classes": (sae or {}).get("classes", {}).get("counts")},
        }
    summary = {}
    for arm, comparison in comparisons["comparisons"].items():
        updates = comparison["weight_updates"]
        summary[arm] = {
            "start": comparison["start"],
            "jaccard": comparison["ablation"]["jaccard"],
            "changed": updates["changed"],
            "mean_rank_fraction": updates["mean_rank_fraction"],
            "relative_update": {t["name"]: t["relative_update"] for t in updates["tensors"]},
        }
    return {"seed": comparisons["seed"], "comparisons": summary, "models": models}


def collect_results(plan, out: Path) -> dict:
    out = Path(out)
    arms, starts = arm_table(plan, out), start_table(plan, out)
    curves = {
        regime: curve_summary(_read(out / regime / "curve.json"), plan.experiment.curve_examples)
        for regime in ("sft", "sft_small")
    }
    folders = [out / "data", out / "sft", out / "sft_small", *(out / "starts").glob("*"), out / "circuits"]
    folders += [run for arm in (out / "arms").glob("*") for run in arm.glob("seed_*")]
    seconds = {str(f.relative_to(out)): stage_seconds(f) for f in folders if stage_seconds(f) is not None}
    return {
        "config": plan.sections(),
        "control_steps": control_steps(plan),
        "starts": starts,
        "arms": arms,
        "findings": findings(plan, arms, starts),
        "sft_curves": curves,
        "circuits": circuit_summary(out),
        "stage_seconds": seconds,
    }
