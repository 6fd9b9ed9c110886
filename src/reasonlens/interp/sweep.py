"""Sweeps of many patching experiments, executed as batch rows (the batched path) or one by one (the
looped reference path, what one-script-per-patch tools do).

An :class:`Experiment` is (target input, source input, interventions). The batched path:

1. runs every distinct source once, capturing the sites its experiments patch;
2. runs every distinct target once, unpatched (the baselines);
3. runs the experiments in chunks of rows — row r is experiment r's target — with one hook per site that,
   at each call, replaces ``where(mask_r, value_r, output_r)`` for the rows patching that call, values
   taken from row r's source (or zero / the reference mean / ``add`` / ``scale``);
4. scores every row with the adapter's metric.

An **adapter** is what a family supplies: ``model``, ``aliases`` ({name: Alias}), ``batch(indices)`` (a
collated batch of inputs by index, on the model's device), ``run(batch)`` (the computation to analyse,
e.g. an ACT rollout) and ``score(outputs, batch)`` ({metric: per-row tensor}). Chunks halve on
out-of-memory errors.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from reasonlens.interp.cache import ActivationCache
from reasonlens.interp.errors import InterpError
from reasonlens.interp.hooks import SitePatch, capture, intervene
from reasonlens.interp.sites import Alias
from reasonlens.interp.spec import Intervention, format_spec

NEEDS_SOURCE = ("patch", "resample")


class Adapter(Protocol):
    model: torch.nn.Module
    aliases: dict[str, Alias]

    def batch(self, indices: Sequence[int]) -> dict[str, torch.Tensor]: ...

    def run(self, batch: dict[str, torch.Tensor]) -> Any: ...

    def score(self, outputs: Any, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...


@dataclass(frozen=True)
class Experiment:
    target: int
    source: int | None
    interventions: tuple[Intervention, ...]
    tags: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def spec(self) -> str:
        return format_spec(self.interventions)


def _chunks(items: Sequence, size: int) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _to_python(metrics: dict[str, torch.Tensor], row: int) -> dict:
    out = {}
    for name, values in metrics.items():
        value = values[row]
        out[name] = value.item() if value.ndim == 0 else value.tolist()
    return out


def _selection_mask(shape: tuple[int, ...], intervention: Intervention, device) -> torch.Tensor:
    """Boolean mask over one row's output (shape without the batch axis). With a sequence axis, units
    index the flattened remaining axes: the last axis of a (pos, d) output, ``head·d_head + j`` of a
    (pos, head, d_head) one."""
    if len(shape) < 2:
        mask = torch.zeros(shape, dtype=torch.bool, device=device)
        mask[slice(None) if intervention.units is None else list(intervention.units)] = True
        return mask
    mask = torch.zeros((shape[0], math.prod(shape[1:])), dtype=torch.bool, device=device)
    positions = slice(None) if intervention.positions is None else torch.tensor(intervention.positions, device=device)
    units = slice(None) if intervention.units is None else torch.tensor(intervention.units, device=device)
    if isinstance(positions, slice) or isinstance(units, slice):
        mask[positions, units] = True
    else:
        mask[positions[:, None], units] = True
    return mask.reshape(shape)


class _SitePlan:
    """For one site in one chunk: which rows patch which calls how; prepared lazily per call (the output
    shape is known only then)."""

    def __init__(self, site: str, rows: list[tuple[int, Intervention, Any]], reference: ActivationCache | None):
        self.site, self.rows, self.reference = site, rows, reference
        self.prepared: dict[int, list] = {}
        calls = [i.calls for _, i, _ in rows]
        self.calls = None if any(c is None for c in calls) else tuple(sorted({k for c in calls for k in c}))

    def _value(self, intervention: Intervention, source_values, k: int, like: torch.Tensor) -> torch.Tensor | None:
        if intervention.op in NEEDS_SOURCE:
            return source_values[(self.site, k)].to(like.device, like.dtype)
        if intervention.op == "mean":
            if self.reference is None or (self.site, k) not in self.reference:
                raise InterpError(f"op 'mean' at {self.site}@{k} needs a reference cache holding that site and call")
            return self.reference[(self.site, k)].float().mean(0).to(like.device, like.dtype)
        return None

    def prepare(self, output: torch.Tensor, k: int) -> list:
        groups: dict[tuple, dict] = {}
        for row, intervention, source_values in self.rows:
            if intervention.calls is not None and k not in intervention.calls:
                continue
            key = (intervention.op, intervention.value)
            group = groups.setdefault(key, {"rows": [], "masks": [], "values": []})
            mask = _selection_mask(tuple(output.shape[1:]), intervention, output.device)
            if row in group["rows"]:  # a second intervention on the same row and call: merge the masks
                at = group["rows"].index(row)
                group["masks"][at] = group["masks"][at] | mask
                continue
            group["rows"].append(row)
            group["masks"].append(mask)
            group["values"].append(self._value(intervention, source_values, k, output[row]))
        prepared = []
        for (op, value), group in groups.items():
            rows = torch.tensor(group["rows"], device=output.device)
            values = torch.stack(group["values"]) if group["values"][0] is not None else None
            prepared.append((rows, torch.stack(group["masks"]), values, op, value))
        return prepared

    def apply(self, output: torch.Tensor, k: int) -> torch.Tensor:
        if k not in self.prepared:
            self.prepared[k] = self.prepare(output, k)
        if not self.prepared[k]:
            return output
        output = output.clone()
        for rows, mask, values, op, value in self.prepared[k]:
            current = output[rows]
            if values is not None:
                new = torch.where(mask, values, current)
            elif op == "zero":
                new = torch.where(mask, torch.zeros_like(current), current)
            elif op == "add":
                new = current + mask * value
            else:  # scale
                new = torch.where(mask, current * value, current)
            output[rows] = new
        return output


def capture_rows(
    adapter: Adapter, indices: Sequence[int], sites: Iterable[str], chunk_size: int = 64
) -> dict[int, dict]:
    """Run the inputs (in chunks) capturing ``sites``; return {input index: {(site, call): row tensor}}."""
    sites = sorted(set(sites))
    out: dict[int, dict] = {}
    for chunk in _chunks(list(indices), chunk_size):
        batch = adapter.batch(chunk)
        with torch.inference_mode(), capture(adapter.model, sites, adapter.aliases) as cache:
            adapter.run(batch)
        for row, index in enumerate(chunk):
            out[index] = {key: cache[key][row] for key in cache}
    return out


def _score_chunk(adapter: Adapter, experiments: Sequence[Experiment], sources: dict, reference) -> list[dict]:
    batch = adapter.batch([e.target for e in experiments])
    per_site: dict[str, list] = {}
    for row, experiment in enumerate(experiments):
        for intervention in experiment.interventions:
            source_values = sources.get(experiment.source) if intervention.op in NEEDS_SOURCE else None
            per_site.setdefault(intervention.site, []).append((row, intervention, source_values))
    plans = [_SitePlan(site, rows, reference) for site, rows in per_site.items()]
    patches = [SitePatch(plan.site, plan.calls, plan.apply) for plan in plans]
    with torch.inference_mode(), intervene(adapter.model, patches, adapter.aliases):
        scores = adapter.score(adapter.run(batch), batch)
    return [_to_python(scores, row) for row in range(len(experiments))]


def _with_oom_retry(function, items: Sequence, chunk_size: int) -> list:
    out, start = [], 0
    while start < len(items):
        chunk = items[start : start + chunk_size]
        try:
            out.extend(function(chunk))
        except torch.OutOfMemoryError:
            if chunk_size == 1:
                raise
            chunk_size = max(1, chunk_size // 2)
            torch.cuda.empty_cache()
            continue
        start += len(chunk)
    return out


def _check_sources(experiments: Sequence[Experiment]) -> None:
    for experiment in experiments:
        if experiment.source is None and any(i.op in NEEDS_SOURCE for i in experiment.interventions):
            raise InterpError(f"experiment on target {experiment.target} patches from a source but names none")


def run_sweep(
    adapter: Adapter,
    experiments: Sequence[Experiment],
    chunk_size: int = 64,
    reference: ActivationCache | None = None,
    sources: dict[int, dict] | None = None,
) -> tuple[dict[int, dict], list[dict]]:
    """Batched path. Returns (baseline metrics per target, patched metrics per experiment, in order).

    ``sources`` supplies source values that were not computed by this adapter (e.g. activations loaded from
    disk): ``{source index: {(site, call): row tensor}}``; a source index not in it is run and captured."""
    _check_sources(experiments)
    given = dict(sources or {})
    source_sites: dict[int, set[str]] = {}
    for experiment in experiments:
        for intervention in experiment.interventions:
            if intervention.op in NEEDS_SOURCE:
                if experiment.source in given:
                    if not any(site == intervention.site for site, _ in given[experiment.source]):
                        raise InterpError(
                            f"the given values of source {experiment.source} lack site {intervention.site}"
                        )
                    continue
                source_sites.setdefault(experiment.source, set()).add(intervention.site)
    all_sites = set().union(*source_sites.values()) if source_sites else set()
    sources = capture_rows(adapter, sorted(source_sites), all_sites, chunk_size) if source_sites else {}
    sources.update(given)
    targets = sorted({e.target for e in experiments})
    baselines = {}
    for chunk in _chunks(targets, chunk_size):
        batch = adapter.batch(chunk)
        with torch.inference_mode():
            scores = adapter.score(adapter.run(batch), batch)
        baselines.update({t: _to_python(scores, row) for row, t in enumerate(chunk)})
    patched = _with_oom_retry(
        lambda chunk: _score_chunk(adapter, chunk, sources, reference), list(experiments), chunk_size
    )
    return baselines, patched


def run_looped(
    adapter: Adapter, experiments: Sequence[Experiment], reference: ActivationCache | None = None
) -> tuple[dict[int, dict], list[dict]]:
    """Reference path: for every experiment, a source run, a baseline run and a patched run of one row,
    with plain indexed assignment instead of masks."""
    _check_sources(experiments)
    baselines, patched = {}, []
    for experiment in experiments:
        sites = {i.site for i in experiment.interventions if i.op in NEEDS_SOURCE}
        source = capture_rows(adapter, [experiment.source], sites)[experiment.source] if sites else {}
        batch = adapter.batch([experiment.target])
        with torch.inference_mode():
            baselines[experiment.target] = _to_python(adapter.score(adapter.run(batch), batch), 0)
        patches = [SitePatch(i.site, i.calls, single_row_patch(i, source, reference)) for i in experiment.interventions]
        with torch.inference_mode(), intervene(adapter.model, patches, adapter.aliases):
            patched.append(_to_python(adapter.score(adapter.run(batch), batch), 0))
    return baselines, patched


def single_row_patch(intervention: Intervention, source: dict, reference: ActivationCache | None = None):
    """``apply`` for one-row runs: plain indexed assignment from ``source`` ({(site, call): row tensor}),
    on a (pos, flattened units) view of outputs that have a sequence axis."""

    def flat(tensor: torch.Tensor) -> torch.Tensor:  # one row: (pos, ...) -> (pos, units)
        return tensor.reshape(tensor.shape[0], -1) if tensor.ndim >= 2 else tensor

    def apply(output: torch.Tensor, k: int) -> torch.Tensor:
        row = flat(output[0].clone())
        index: tuple = ()
        if row.ndim == 2:
            index += (slice(None) if intervention.positions is None else list(intervention.positions),)
        units = slice(None) if intervention.units is None else list(intervention.units)
        region = row[index][..., units]
        if intervention.op in NEEDS_SOURCE:
            replacement = flat(source[(intervention.site, k)])[index][..., units]
        elif intervention.op == "mean":
            replacement = flat(reference[(intervention.site, k)].float().mean(0))[index][..., units]
        elif intervention.op == "zero":
            replacement = torch.zeros_like(region)
        elif intervention.op == "add":
            replacement = region + intervention.value
        else:
            replacement = region * intervention.value
        selected = row[index]
        selected[..., units] = replacement.to(output.dtype)
        row[index] = selected
        output = output.clone()
        output[0] = row.reshape(output.shape[1:])
        return output

    return apply
