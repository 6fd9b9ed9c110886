"""Interventions as hook patches on the rows of a batch. :func:`apply` gives every row of the runs in a
``with`` block the same interventions; :func:`run_sweep` runs many patching experiments as the rows of
batched runs, :func:`run_looped` one by one (the plain reference, what one-script-per-patch tools do).
:func:`apply` and :func:`run_sweep` build their hooks with :func:`row_patches`.

Shapes in the comments::

    B     rows of the batch: a chunk's targets, or the run under apply
    G     rows of one group: those that patch a call with the same op and value
    N     rows of a reference cache
    R     one row's output at a site: (T, D), (T, H, Dh) or (D,)
    T     sequence positions
    U     units: the axes after T flattened (the last axis when there is no T)
    P, K  the selected positions and units
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from reasonlens.interp.cache import ActivationCache
from reasonlens.interp.errors import InterpError
from reasonlens.interp.hooks import SitePatch, capture, intervene
from reasonlens.interp.sites import Alias, SiteInfo
from reasonlens.interp.spec import Intervention, Op, as_interventions, check_selection, format_spec, validate

NEEDS_SOURCE = ("patch", "resample")


class Adapter(Protocol):
    """What a family supplies to the sweeps: ``model``, ``aliases`` ({name: Alias}), ``batch(indices)`` (a
    collated batch of inputs by index, on the model's device), ``run(batch)`` (the computation to analyse,
    e.g. an ACT rollout) and ``score(outputs, batch)`` ({metric: per-row tensor})."""

    model: nn.Module
    aliases: dict[str, Alias]

    def batch(self, indices: Sequence[int]) -> dict[str, torch.Tensor]: ...

    def run(self, batch: dict[str, torch.Tensor]) -> Any: ...

    def score(self, outputs: Any, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...


@dataclass(frozen=True)
class Experiment:
    """Patch ``interventions`` into the run of input ``target``, values from the run of input ``source``."""

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
        value = values[row]  # (B, ...) -> (...)
        out[name] = value.item() if value.ndim == 0 else value.tolist()
    return out


def _selection_mask(shape: tuple[int, ...], intervention: Intervention, device) -> torch.Tensor:
    """Boolean mask over one row's output (shape R, without the batch axis). With a sequence axis, units
    index the flattened remaining axes: the last axis of a (pos, d) output, ``head·d_head + j`` of a
    (pos, head, d_head) one."""
    if len(shape) < 2:
        mask = torch.zeros(shape, dtype=torch.bool, device=device)  # R = (U,)
        mask[slice(None) if intervention.units is None else list(intervention.units)] = True
        return mask
    mask = torch.zeros((shape[0], math.prod(shape[1:])), dtype=torch.bool, device=device)  # (T, U)
    positions = slice(None) if intervention.positions is None else torch.tensor(intervention.positions, device=device)
    units = slice(None) if intervention.units is None else torch.tensor(intervention.units, device=device)
    if isinstance(positions, slice) or isinstance(units, slice):
        mask[positions, units] = True
    else:
        mask[positions[:, None], units] = True  # (P, 1) x (K,) index -> the (P, K) block
    return mask.reshape(shape)  # (T, U) -> R


def _union_calls(interventions: Iterable[Intervention]) -> tuple[int, ...] | None:
    """The calls any of ``interventions`` patches; None when one patches every call."""
    calls = [i.calls for i in interventions]
    return None if any(c is None for c in calls) else tuple(sorted({k for c in calls for k in c}))


class _SitePlan:
    """For one site in one chunk: which rows patch which calls how; prepared lazily per call (the output
    shape is known only then)."""

    def __init__(self, site: str, rows: list[tuple[int, Intervention, Any]], reference: ActivationCache | None):
        self.site, self.rows, self.reference = site, rows, reference
        self.prepared: dict[int, list] = {}
        self.calls = _union_calls(i for _, i, _ in rows)

    def _value(self, intervention: Intervention, source_values, k: int, like: torch.Tensor) -> torch.Tensor | None:
        if intervention.op in NEEDS_SOURCE:
            return source_values[(self.site, k)].to(like.device, like.dtype)  # R
        if intervention.op == "mean":
            if self.reference is None or (self.site, k) not in self.reference:
                raise InterpError(f"op 'mean' at {self.site}@{k} needs a reference cache holding that site and call")
            return self.reference[(self.site, k)].float().mean(0).to(like.device, like.dtype)  # (N, *R) -> R
        return None

    def prepare(self, output: torch.Tensor, k: int) -> list:
        groups: dict[tuple, dict] = {}
        for row, intervention, source_values in self.rows:
            if intervention.calls is not None and k not in intervention.calls:
                continue
            check_selection(intervention, tuple(output.shape))
            key = (intervention.op, intervention.value)
            group = groups.setdefault(key, {"rows": [], "masks": [], "values": []})
            mask = _selection_mask(tuple(output.shape[1:]), intervention, output.device)  # R
            if row in group["rows"]:  # a second intervention on the same row and call: merge the masks
                at = group["rows"].index(row)
                group["masks"][at] = group["masks"][at] | mask
                continue
            group["rows"].append(row)
            group["masks"].append(mask)
            group["values"].append(self._value(intervention, source_values, k, output[row]))  # output[row]: R
        prepared = []
        for (op, value), group in groups.items():
            rows = torch.tensor(group["rows"], device=output.device)  # (G,)
            values = torch.stack(group["values"]) if group["values"][0] is not None else None  # (G, *R)
            prepared.append((rows, torch.stack(group["masks"]), values, op, value))  # masks: (G, *R)
        return prepared

    def apply(self, output: torch.Tensor, k: int) -> torch.Tensor:
        if k not in self.prepared:
            self.prepared[k] = self.prepare(output, k)
        if not self.prepared[k]:
            return output
        output = output.clone()  # (B, *R)
        for rows, mask, values, op, value in self.prepared[k]:
            current = output[rows]  # (B, *R) -> (G, *R)
            if values is not None:
                new = torch.where(mask, values, current)
            elif op == "zero":
                new = torch.where(mask, torch.zeros_like(current), current)
            elif op == "add":
                new = current + mask * value
            else:  # scale
                new = torch.where(mask, current * value, current)
            output[rows] = new  # (G, *R) back into (B, *R)
        return output


def row_patches(
    assignments: Iterable[tuple[int, Intervention, Mapping | None]], reference: ActivationCache | None = None
) -> list[SitePatch]:
    """Hook patches (one per site) for a batch whose rows carry their own interventions. ``assignments``
    are (row, intervention, that row's source values ``{(site, call): tensor of shape R}`` or None);
    ``reference`` holds the rows ``mean`` averages over."""
    per_site: dict[str, list] = {}
    for row, intervention, source_values in assignments:
        per_site.setdefault(intervention.site, []).append((row, intervention, source_values))
    plans = [_SitePlan(site, rows, reference) for site, rows in per_site.items()]
    return [SitePatch(plan.site, plan.calls, plan.apply) for plan in plans]


class _SourceRow:
    """One row of a source cache as the ``{(site, call): tensor of shape R}`` values a plan row reads;
    a one-row cache serves every row of the batch."""

    def __init__(self, cache: ActivationCache, row: int, batch_size: int):
        self.cache, self.row, self.batch_size = cache, row, batch_size

    def __getitem__(self, key: tuple[str, int]) -> torch.Tensor:
        values = self.cache[key]  # (B or 1, *R)
        if len(values) == 1:
            return values[0]  # (1, *R) -> R
        if len(values) != self.batch_size:
            raise InterpError(
                f"the source cache holds {len(values)} rows of {key[0]}@{key[1]} but the patched run has "
                f"{self.batch_size}; capture one source row per patched row, or a single row for all"
            )
        return values[self.row]  # (B, *R) -> R


def _every_row(
    site: str, interventions: list[Intervention], source: ActivationCache | None, reference: ActivationCache | None
) -> SitePatch:
    """One site's patch that gives every row of the batch ``interventions``: the sweep's row patch, built
    for the batch size each call brings."""
    per_batch_size: dict[int, SitePatch] = {}

    def patch(output: torch.Tensor, k: int) -> torch.Tensor:
        batch_size = output.shape[0]
        if batch_size not in per_batch_size:
            assignments = [
                (row, intervention, None if source is None else _SourceRow(source, row, batch_size))
                for row in range(batch_size)
                for intervention in interventions
            ]
            (per_batch_size[batch_size],) = row_patches(assignments, reference)
        return per_batch_size[batch_size].apply(output, k)

    return SitePatch(site, _union_calls(interventions), patch)


def _check_cached(cache: ActivationCache | None, intervention: Intervention, argument: str) -> None:
    what = f"{intervention} (op {intervention.op!r})"
    if cache is None:
        raise InterpError(f"{what} needs {argument}=<ActivationCache>: capture the run its values come from")
    cached = cache.calls(intervention.site)
    if not cached:
        raise InterpError(f"{what}: the {argument} cache has no site {intervention.site!r}; it holds {cache.sites()}")
    missing = [k for k in intervention.calls or () if k not in cached]
    if missing:
        raise InterpError(f"{what}: the {argument} cache lacks call(s) {missing}; cached calls: {cached}")


@contextlib.contextmanager
def apply(
    model: nn.Module,
    interventions: str | Intervention | Iterable[str | Intervention],
    aliases: dict[str, Alias] | None = None,
    *,
    op: Op = "patch",
    value: float | None = None,
    source: ActivationCache | None = None,
    reference: ActivationCache | None = None,
    sites: dict[str, SiteInfo] | None = None,
) -> Iterator[tuple[Intervention, ...]]:
    """Apply ``interventions`` to every row of the model's runs inside the ``with`` block; the hooks are
    removed after it, also after an exception. Yields the interventions as records.

    ``interventions``: spec strings (parsed with ``op`` and ``value``) and :class:`Intervention` records
    (which keep their own op), alone or in a list. ``patch`` / ``resample`` read ``source``, the cache of
    the run the values come from (:func:`capture`): one row per patched row, or one row for all. ``mean``
    reads the mean over the rows of ``reference``. ``sites`` (:func:`probe_sites`) checks sites, calls,
    positions and units before anything runs; without it a bad site fails on entry, bad positions or
    units at the first patched call and a call that never ran on exit. Calls count from the start of the
    block, so run the model once per block."""
    records = as_interventions(interventions, op, value)
    if sites is not None:
        validate(records, sites)
    for intervention in records:
        if intervention.op in NEEDS_SOURCE:
            _check_cached(source, intervention, "source")
        if intervention.op == "mean":
            _check_cached(reference, intervention, "reference")
    per_site: dict[str, list[Intervention]] = {}
    for intervention in records:
        per_site.setdefault(intervention.site, []).append(intervention)
    patches = [_every_row(site, group, source, reference) for site, group in per_site.items()]
    with intervene(model, patches, aliases):
        yield records


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
            out[index] = {key: cache[key][row] for key in cache}  # (B, *R) -> R
    return out


def _score_chunk(adapter: Adapter, experiments: Sequence[Experiment], sources: dict, reference) -> list[dict]:
    batch = adapter.batch([e.target for e in experiments])
    assignments = [
        (row, intervention, sources.get(experiment.source) if intervention.op in NEEDS_SOURCE else None)
        for row, experiment in enumerate(experiments)
        for intervention in experiment.interventions
    ]
    with torch.inference_mode(), intervene(adapter.model, row_patches(assignments, reference), adapter.aliases):
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

    1. runs every distinct source once, capturing the sites its experiments patch;
    2. runs every distinct target once, unpatched (the baselines);
    3. runs the experiments in chunks of rows — row r is experiment r's target — with one hook per site
       that, at each call, replaces ``where(mask_r, value_r, output_r)`` for the rows patching that call,
       values taken from row r's source (or zero / the ``reference`` mean / ``add`` / ``scale``); chunks
       halve on out-of-memory errors;
    4. scores every row with the adapter's metric.

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

    def flat(tensor: torch.Tensor) -> torch.Tensor:  # one row: R = (T, ...) -> (T, U)
        return tensor.reshape(tensor.shape[0], -1) if tensor.ndim >= 2 else tensor

    def apply(output: torch.Tensor, k: int) -> torch.Tensor:
        check_selection(intervention, tuple(output.shape))
        row = flat(output[0].clone())  # (1, *R) -> (T, U), or (U,) without a sequence axis
        index: tuple = ()
        if row.ndim == 2:
            index += (slice(None) if intervention.positions is None else list(intervention.positions),)
        units = slice(None) if intervention.units is None else list(intervention.units)
        region = row[index][..., units]  # (T, U) -> (P, U) -> (P, K)
        if intervention.op in NEEDS_SOURCE:
            replacement = flat(source[(intervention.site, k)])[index][..., units]  # R -> (T, U) -> (P, K)
        elif intervention.op == "mean":
            mean = reference[(intervention.site, k)].float().mean(0)  # (N, *R) -> R
            replacement = flat(mean)[index][..., units]  # R -> (T, U) -> (P, K)
        elif intervention.op == "zero":
            replacement = torch.zeros_like(region)
        elif intervention.op == "add":
            replacement = region + intervention.value
        else:
            replacement = region * intervention.value
        selected = row[index]  # (P, U), a copy when positions are listed
        selected[..., units] = replacement.to(output.dtype)
        row[index] = selected
        output = output.clone()
        output[0] = row.reshape(output.shape[1:])  # (T, U) -> R
        return output

    return apply
