"""Patching experiments on a family's adapter. :func:`apply` gives every row of the runs in a ``with``
block the same interventions; :func:`run_sweep` runs many experiments as the rows of batched runs, each
resumed from the latest point its patches leave unchanged (:mod:`.prefix`); :func:`run_looped` runs
them one by one from the start (the plain reference, what one-script-per-patch tools do). Both build
their hooks from :mod:`.rows`.

Shapes in the comments: B rows of a batch, R one row's output at a site.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from reasonlens.interp.cache import ActivationCache
from reasonlens.interp.errors import InterpError
from reasonlens.interp.hooks import SitePatch, capture, intervene
from reasonlens.interp.prefix import Prefixes, Resumable, first_calls, probe_points, run_keeping, stack_states
from reasonlens.interp.rows import NEEDS_SOURCE, SourceBank, SourceRow, row_patches, single_row_patch, union_calls
from reasonlens.interp.sites import Alias, SiteInfo
from reasonlens.interp.spec import Intervention, Op, as_interventions, format_spec, validate


class Adapter(Protocol):
    """What a family supplies to the sweeps: ``model``, ``aliases`` ({name: Alias}), ``batch(indices)`` (a
    collated batch of inputs by index, on the model's device), ``run(batch)`` (the computation to analyse,
    e.g. an ACT rollout) and ``score(outputs, batch)`` ({metric: per-row tensor}). An adapter that also
    has ``run_points`` / ``run_from`` (:class:`~reasonlens.interp.prefix.Resumable`) lets sweeps resume
    patched rows part-way."""

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


def _every_row(
    site: str, interventions: list[Intervention], source: ActivationCache | None, reference: ActivationCache | None
) -> SitePatch:
    """One site's patch that gives every row of the batch ``interventions``: the sweep's row patch, built
    for the batch size each call brings. A source cache holds one row per patched row, or one for all."""
    per_batch_size: dict[int, SitePatch] = {}

    def patch(output: torch.Tensor, k: int) -> torch.Tensor:
        batch_size = output.shape[0]
        if batch_size not in per_batch_size:
            if source is not None:
                _check_source_rows(source, interventions, batch_size)
            bank = None if source is None else SourceBank(source)
            assignments = [
                (row, intervention, None if bank is None else SourceRow(bank, row))
                for row in range(batch_size)
                for intervention in interventions
            ]
            (per_batch_size[batch_size],) = row_patches(assignments, reference)
        return per_batch_size[batch_size].apply(output, k)

    return SitePatch(site, union_calls(interventions), patch)


def _check_source_rows(source: ActivationCache, interventions: list[Intervention], batch_size: int) -> None:
    for intervention in interventions:
        if intervention.op not in NEEDS_SOURCE:
            continue
        for call in intervention.calls or source.calls(intervention.site):
            held = len(source[(intervention.site, call)])
            if held not in (1, batch_size):
                raise InterpError(
                    f"the source cache holds {held} rows of {intervention.site}@{call} but the patched run has "
                    f"{batch_size}; capture one source row per patched row, or a single row for all"
                )


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


def _chunks(items: Sequence, size: int) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector. A sweep builds tens of thousands of small lists, tuples and
    dicts (row plans, per-row scores) without cycles; left on, the collector rescans all of them whenever
    allocations pile up, which made single sweeps take 1× or 3× as long at random. Reference counting
    still frees everything; cycles made meanwhile are collected once it is back on."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def per_row(metrics: dict[str, torch.Tensor]) -> list[dict]:
    """{metric: (B, ...) tensor} -> one {metric: number or list} per row."""
    names, columns = list(metrics), [values.tolist() for values in metrics.values()]
    with collector_paused():
        return [dict(zip(names, row)) for row in zip(*columns)]


def capture_bank(adapter: Adapter, indices: Sequence[int], sites: Iterable[str], chunk_size: int = 64) -> SourceBank:
    """Run the inputs (in chunks) capturing every call of ``sites``; their values stacked in input order."""
    sites, indices = sorted(set(sites)), list(indices)
    chunks = []
    for chunk in _chunks(indices, chunk_size):
        with torch.inference_mode(), capture(adapter.model, sites, adapter.aliases) as cache:
            adapter.run(adapter.batch(chunk))
        chunks.append(cache)
    values = {key: torch.cat([cache[key] for cache in chunks]) for key in chunks[0]} if chunks else {}  # (N, *R)
    return SourceBank(values, {index: row for row, index in enumerate(indices)})


def capture_rows(
    adapter: Adapter, indices: Sequence[int], sites: Iterable[str], chunk_size: int = 64
) -> dict[int, dict]:
    """Run the inputs (in chunks) capturing ``sites``; return {input index: {(site, call): row tensor}}."""
    bank = capture_bank(adapter, indices, sites, chunk_size)
    return {index: {key: values[row] for key, values in bank.values.items()} for index, row in bank.rows.items()}


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


def _source_values(adapter: Adapter, experiments: Sequence[Experiment], given: dict, chunk_size: int) -> dict:
    """{source index: that source's values}: rows of one captured bank, or the ``given`` mappings."""
    sites: dict[int, set[str]] = {}
    for experiment in experiments:
        for intervention in experiment.interventions:
            if intervention.op not in NEEDS_SOURCE:
                continue
            if experiment.source in given:
                if not any(site == intervention.site for site, _ in given[experiment.source]):
                    raise InterpError(f"the given values of source {experiment.source} lack site {intervention.site}")
                continue
            sites.setdefault(experiment.source, set()).add(intervention.site)
    values: dict = {}
    if sites:
        bank = capture_bank(adapter, sorted(sites), set().union(*sites.values()), chunk_size)
        values = {index: bank.row(index) for index in sites}
    values.update(given)
    return values


def _plan_points(adapter: Adapter, experiments: Sequence[Experiment], targets: list[int]):
    """(the resumable points' call counts, each experiment's point or None); no points when the adapter
    declares none."""
    if not experiments or not isinstance(adapter, Resumable):
        return [], [None] * len(experiments)
    paths: dict = {}
    keys = [tuple((i.site, i.calls) for i in e.interventions) for e in experiments]  # what the first calls depend on
    first_of = {}
    for key, experiment in zip(keys, experiments):
        if key not in first_of:
            first_of[key] = first_calls(experiment.interventions, adapter.model, adapter.aliases, paths)
    prefixes = Prefixes(probe_points(adapter, targets[0], {path for path, _ in paths.values()}))
    point_of = {key: prefixes.point_for(first) for key, first in first_of.items()}
    return prefixes.calls_before, [point_of[key] for key in keys]


def _run_targets(adapter: Adapter, targets: list[int], keep: set[int], chunk_size: int) -> tuple[dict, dict]:
    """(baseline metrics per target, the kept points' states of every target): one unpatched run each."""
    baselines, kept = {}, []
    for chunk in _chunks(targets, chunk_size):
        batch = adapter.batch(chunk)
        with torch.inference_mode():
            if keep:
                outputs, states = run_keeping(adapter, batch, keep)
                kept.append(states)
            else:
                outputs = adapter.run(batch)
            baselines.update(zip(chunk, per_row(adapter.score(outputs, batch))))
    return baselines, stack_states(kept) if kept else {}


def _score_chunk(adapter, experiments, sources: dict, reference, prefixes: Prefixes, point: int | None) -> list[dict]:
    targets = [e.target for e in experiments]
    batch = adapter.batch(targets)
    assignments = [
        (row, intervention, sources.get(experiment.source) if intervention.op in NEEDS_SOURCE else None)
        for row, experiment in enumerate(experiments)
        for intervention in experiment.interventions
    ]
    patches = row_patches(assignments, reference)
    start = None if point is None else prefixes.calls_before[point]
    with torch.inference_mode(), intervene(adapter.model, patches, adapter.aliases, start):
        if point is None:
            outputs = adapter.run(batch)
        else:
            outputs = adapter.run_from(batch, point, prefixes.state(point, targets))
    return per_row(adapter.score(outputs, batch))


@collector_paused()
def run_sweep(
    adapter: Adapter,
    experiments: Sequence[Experiment],
    chunk_size: int = 64,
    reference: ActivationCache | None = None,
    sources: dict[int, dict] | None = None,
    reuse_prefix: bool = True,
) -> tuple[dict[int, dict], list[dict]]:
    """Batched path. Returns (baseline metrics per target, patched metrics per experiment, in order).

    1. runs every distinct source once, capturing the sites its experiments patch;
    2. picks, per experiment, the latest resumable point before its first patched call (with
       ``reuse_prefix`` and an adapter that declares points, :mod:`.prefix`; else the start);
    3. runs every distinct target once, unpatched (the baselines), keeping its states at those points;
    4. runs the experiments grouped by point in chunks of rows — row r is experiment r's target, resumed
       from its point's state — with one hook per site that, at each call, replaces
       ``where(mask_r, value_r, output_r)`` for the rows patching that call, values taken from row r's
       source (or zero / the ``reference`` mean / ``add`` / ``scale``); chunks halve on out-of-memory errors;
    5. scores every row with the adapter's metric.

    ``sources`` supplies source values that were not computed by this adapter (e.g. activations loaded from
    disk): ``{source index: {(site, call): row tensor}}``; a source index not in it is run and captured."""
    _check_sources(experiments)
    source_values = _source_values(adapter, experiments, dict(sources or {}), chunk_size)
    targets = sorted({e.target for e in experiments})
    calls_before, points = (
        _plan_points(adapter, experiments, targets) if reuse_prefix else ([], [None] * len(experiments))
    )
    keep = {p for p in points if p is not None}
    baselines, states = _run_targets(adapter, targets, keep, chunk_size)
    prefixes = Prefixes(calls_before, states, {t: row for row, t in enumerate(targets)})
    patched: list[dict | None] = [None] * len(experiments)
    for point in sorted(set(points), key=lambda p: -1 if p is None else p):
        order = [i for i, p in enumerate(points) if p == point]
        group = [experiments[i] for i in order]
        scores = _with_oom_retry(
            lambda chunk, point=point: _score_chunk(adapter, chunk, source_values, reference, prefixes, point),
            group,
            chunk_size,
        )
        for i, score in zip(order, scores):
            patched[i] = score
    return baselines, patched


def run_looped(
    adapter: Adapter, experiments: Sequence[Experiment], reference: ActivationCache | None = None
) -> tuple[dict[int, dict], list[dict]]:
    """Reference path: for every experiment, a source run, a baseline run and a patched run of one row
    from the start, with plain indexed assignment instead of masks."""
    _check_sources(experiments)
    baselines, patched = {}, []
    for experiment in experiments:
        sites = {i.site for i in experiment.interventions if i.op in NEEDS_SOURCE}
        source = capture_rows(adapter, [experiment.source], sites)[experiment.source] if sites else {}
        batch = adapter.batch([experiment.target])
        with torch.inference_mode():
            baselines[experiment.target] = per_row(adapter.score(adapter.run(batch), batch))[0]
        patches = [SitePatch(i.site, i.calls, single_row_patch(i, source, reference)) for i in experiment.interventions]
        with torch.inference_mode(), intervene(adapter.model, patches, adapter.aliases):
            patched.append(per_row(adapter.score(adapter.run(batch), batch))[0])
    return baselines, patched
