"""Typed patching results: one :class:`PatchResult` per experiment (inputs, spec, tags, baseline and
patched metrics), written to JSON, YAML or CSV (by suffix) and loaded back; plus :func:`aggregate`,
the mean/std of metric changes per group of tags, which heatmaps are drawn from."""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from reasonlens.interp.errors import InterpError
from reasonlens.utils.io import atomic_write, read_yaml, write_json, write_yaml


@dataclass
class PatchResult:
    target: int
    source: int | None
    spec: str
    baseline: dict
    patched: dict
    tags: dict = field(default_factory=dict)

    def change(self, metric: str) -> float:
        return float(self.patched[metric]) - float(self.baseline[metric])

    def scalar_metrics(self) -> list[str]:
        """The numeric metrics both runs have (an attribution estimate holds only the one it estimates)."""
        return [
            k
            for k, v in self.baseline.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k in self.patched
        ]

    def to_dict(self) -> dict:
        data = asdict(self)
        data["change"] = {m: self.change(m) for m in self.scalar_metrics()}
        return data

    @classmethod
    def from_dict(cls, data: dict) -> PatchResult:
        fields = {k: data[k] for k in ("target", "source", "spec", "baseline", "patched") if k in data}
        if len(fields) != 5:
            raise InterpError(
                f"not a patch result record (needs target, source, spec, baseline, patched): {sorted(data)}"
            )
        return cls(**fields, tags=dict(data.get("tags") or {}))

    def flat(self) -> dict:
        """One CSV row: scalar metrics as baseline_*, patched_*, change_*; list metrics as JSON text."""
        row = {"target": self.target, "source": "" if self.source is None else self.source, "spec": self.spec}
        row.update({f"tag_{k}": v for k, v in self.tags.items()})
        for prefix, metrics in (("baseline", self.baseline), ("patched", self.patched)):
            for key, value in metrics.items():
                row[f"{prefix}_{key}"] = json.dumps(value) if isinstance(value, (list, dict)) else value
        for metric in self.scalar_metrics():
            row[f"change_{metric}"] = self.change(metric)
        return row


def save_results(results: list[PatchResult], path: str | os.PathLike) -> Path:
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        write_json(path, [r.to_dict() for r in results])
    elif suffix in (".yaml", ".yml"):
        write_yaml(path, [r.to_dict() for r in results])
    elif suffix == ".csv":
        rows = [r.flat() for r in results]
        columns = list(dict.fromkeys(key for row in rows for key in row))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        with atomic_write(path) as handle:
            handle.write(buffer.getvalue())
    else:
        raise InterpError(f"cannot write results as {path.suffix!r}; use .json, .yaml or .csv")
    return path


def _parse_cell(text: str):
    if text == "":
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def load_results(path: str | os.PathLike) -> list[PatchResult]:
    path = Path(path)
    if not path.is_file():
        raise InterpError(f"results file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".json":
        return [PatchResult.from_dict(d) for d in json.loads(path.read_text())]
    if suffix in (".yaml", ".yml"):
        data = read_yaml(path)
        return [PatchResult.from_dict(d) for d in (data if isinstance(data, list) else [data])]
    if suffix == ".csv":
        out = []
        for row in csv.DictReader(path.read_text().splitlines()):
            record = {"baseline": {}, "patched": {}, "tags": {}}
            for key, text in row.items():
                value = _parse_cell(text)
                if key.startswith("tag_"):
                    record["tags"][key[4:]] = text
                elif key.startswith(("baseline_", "patched_")):
                    prefix, _, metric = key.partition("_")
                    record[prefix][metric] = value
                elif key in ("target", "source", "spec"):
                    record[key] = value if key != "spec" else text
            out.append(PatchResult.from_dict(record))
        return out
    raise InterpError(f"cannot read results from {path.suffix!r}; use .json, .yaml or .csv")


def aggregate(results: list[PatchResult], metric: str, by: tuple[str, ...]) -> list[dict]:
    """Mean / std / min / count of ``change(metric)`` per combination of the tags in ``by``."""
    groups: dict[tuple, list[float]] = {}
    for result in results:
        key = tuple(str(result.tags.get(tag)) for tag in by)
        groups.setdefault(key, []).append(result.change(metric))
    return [
        {
            **dict(zip(by, key)),
            "mean_change": float(np.mean(v)),
            "std_change": float(np.std(v)),
            "min_change": float(np.min(v)),
            "count": len(v),
        }
        for key, v in groups.items()
    ]
