"""Attribution patching: the first-order estimate of every patch at once, the screen before exact patching.

Patching a site's activation from ``a`` (the target's run) to ``a'`` (the source's, zero, or a reference
mean) changes a metric by about ``(a' - a) · ∂metric/∂a``, the gradient taken on the target's run. So one
run of each source, one run of each target with gradients and one backward pass give an estimate for
every site, call, position and unit together (Nanda's attribution patching; nnsight's and
TransformerLens users' screen). :func:`attribution_sweep` takes the same :class:`Experiment` list as
:func:`~reasonlens.interp.run_sweep` and returns the same shape of result — the estimated patched
metric per experiment — so the two line up row for row; :func:`agreement` scores the screen against
exact patching (rank correlation, top-k overlap). An experiment with several selections gets the sum
of their terms: exact when the metric is linear in them and they lie on separate paths, double
counting when one feeds the other (patching both calls of a module at a position, say).

The gradient must flow through everything the patch can reach. An adapter whose ``run`` cuts it (the
HRM's ACT loop runs all but the last cycle without gradient and detaches the carry between steps)
provides ``run_with_grad(batch)``; otherwise ``run`` is used. Gradients are taken with
``torch.autograd.grad`` on the captured activations, so no parameter's ``.grad`` is touched.
Written here because no maintained library offers it for arbitrary modules called many times per
forward (TransformerLens's version needs its own hook points; nnsight's is a tutorial recipe).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from reasonlens.interp.cache import ActivationCache
from reasonlens.interp.errors import InterpError
from reasonlens.interp.hooks import call_hooks
from reasonlens.interp.rows import NEEDS_SOURCE, SourceBank, row_masks
from reasonlens.interp.sites import Alias, resolve
from reasonlens.interp.spec import check_selection
from reasonlens.interp.sweep import capture_bank, collector_paused, per_row

ATTRIBUTABLE = ("patch", "resample", "zero", "mean")


@contextlib.contextmanager
def _params_require_grad(model: nn.Module) -> Iterator[None]:
    """Parameters require grad inside the block (so activations do), as they did before after it."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(True)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


@contextlib.contextmanager
def capture_with_graph(
    model: nn.Module, sites: Sequence[str], aliases: dict[str, Alias] | None = None
) -> Iterator[dict[tuple[str, int], torch.Tensor]]:
    """Like :func:`~reasonlens.interp.capture`, but the outputs stay in the autograd graph."""
    found: dict[tuple[str, int], torch.Tensor] = {}
    per_module: dict[str, list] = {}
    for site in dict.fromkeys(sites):
        path, _, alias = resolve(model, site, aliases)
        per_module.setdefault(path, []).append((site, alias))

    def on_call(path, module_call, output):
        if isinstance(output, torch.Tensor):
            for site, alias in per_module[path]:
                k = module_call if alias is None else alias.site_call(module_call)
                if k is not None:
                    found[(site, k)] = output
        return None

    with call_hooks(model, per_module, on_call):
        yield found


def _chunks(items: Sequence, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


@collector_paused()
def attribution_sweep(
    adapter,
    experiments: Sequence,
    metric: str | Callable[[dict], torch.Tensor],
    chunk_size: int = 64,
    reference: ActivationCache | None = None,
) -> tuple[dict[int, dict], list[dict]]:
    """(baseline metrics per target, the estimated patched ``metric`` per experiment) — the shape of
    :func:`~reasonlens.interp.run_sweep`'s result, the patched side holding only ``metric``. ``metric`` names one of the
    adapter's per-row scores, or maps the scores to one number per row (named ``metric`` in the result).
    Ops: ``patch`` / ``resample`` (source values), ``zero``, ``mean`` (over ``reference``)."""
    for experiment in experiments:
        for intervention in experiment.interventions:
            if intervention.op not in ATTRIBUTABLE:
                raise InterpError(f"attribution estimates ops {', '.join(ATTRIBUTABLE)}, not {intervention.op!r}")
            if intervention.op in NEEDS_SOURCE and experiment.source is None:
                raise InterpError(f"experiment on target {experiment.target} patches from a source but names none")
    sites = sorted({i.site for e in experiments for i in e.interventions})
    source_sites = sorted({i.site for e in experiments for i in e.interventions if i.op in NEEDS_SOURCE})
    sources = sorted({e.source for e in experiments if any(i.op in NEEDS_SOURCE for i in e.interventions)})
    bank = capture_bank(adapter, sources, source_sites, chunk_size) if sources else None
    targets = sorted({e.target for e in experiments})
    run = getattr(adapter, "run_with_grad", adapter.run)
    name = metric if isinstance(metric, str) else "metric"
    baselines, activations, gradients = {}, [], []
    for chunk in _chunks(targets, chunk_size):
        batch = adapter.batch(chunk)
        with torch.enable_grad(), _params_require_grad(adapter.model):
            with capture_with_graph(adapter.model, sites, adapter.aliases) as found:
                scores = adapter.score(run(batch), batch)
                values = _metric_of(scores, metric)  # (B,)
            keys = [key for key, value in found.items() if value.requires_grad]
            grads = torch.autograd.grad(values.sum(), [found[k] for k in keys], allow_unused=True)
        activations.append({key: found[key].detach() for key in found})
        gradients.append({k: (torch.zeros_like(found[k]) if g is None else g).detach() for k, g in zip(keys, grads)})
        scores = {key: value.detach() for key, value in {**scores, name: values}.items()}
        baselines.update(zip(chunk, per_row(scores)))
    target_bank = SourceBank(
        {k: torch.cat([a[k] for a in activations]) for k in activations[0]}, {t: r for r, t in enumerate(targets)}
    )
    gradient_bank = SourceBank({k: torch.cat([g[k] for g in gradients]) for k in gradients[0]}, target_bank.rows)
    changes = _estimates(experiments, target_bank, gradient_bank, bank, reference)
    return baselines, [{name: baselines[e.target][name] + change} for e, change in zip(experiments, changes)]


def _metric_of(scores: dict[str, torch.Tensor], metric) -> torch.Tensor:
    if isinstance(metric, str):
        if metric not in scores:
            raise InterpError(f"unknown metric {metric!r}; the adapter scores {', '.join(scores)}")
        values = scores[metric]
    else:
        values = metric(scores)
    if values.ndim != 1 or not values.is_floating_point():
        raise InterpError(f"attribution needs a metric of one real number per row; got shape {tuple(values.shape)}")
    return values


def _estimates(experiments, targets: SourceBank, gradients: SourceBank, sources, reference) -> list[float]:
    """Σ over each experiment's selections of (new value − target value) · gradient, grouped per (site, call)."""
    groups: dict[tuple[str, int], list] = {}
    for row, experiment in enumerate(experiments):
        for intervention in experiment.interventions:
            calls = intervention.calls or [k for s, k in targets.values if s == intervention.site]
            for k in calls:
                groups.setdefault((intervention.site, k), []).append((row, experiment, intervention))
    total = torch.zeros(len(experiments), dtype=torch.float64)
    for key, members in groups.items():
        if key not in targets.values:
            raise InterpError(f"{key[0]}@{key[1]} did not run on the targets")
        rows = [targets.rows[e.target] for _, e, _ in members]
        current = targets.take(key, rows).double()  # (G, *R)
        if key not in gradients.values:  # the metric does not depend on this call: every estimate is 0
            continue
        gradient = gradients.take(key, rows).double()  # (G, *R)
        for intervention in {i for _, _, i in members}:
            check_selection(intervention, (1, *current.shape[1:]))
        new = torch.zeros_like(current)  # zero ablation; sources and means below
        from_source = [g for g, (_, _, i) in enumerate(members) if i.op in NEEDS_SOURCE]
        if from_source:
            source_rows = [sources.rows[members[g][1].source] for g in from_source]
            new[from_source] = sources.take(key, source_rows).double()
        to_mean = [g for g, (_, _, i) in enumerate(members) if i.op == "mean"]
        if to_mean:
            if reference is None or key not in reference:
                raise InterpError(f"op 'mean' at {key[0]}@{key[1]} needs a reference cache holding that call")
            new[to_mean] = reference[key].double().mean(0)  # (N, *R) -> R, broadcast over the rows
        masks = row_masks(
            tuple(current.shape[1:]), [(g, i) for g, (_, _, i) in enumerate(members)], len(members), "cpu"
        )
        product = (new - current) * gradient  # (G, *R)
        if masks is not None:
            product = product * masks.to(product.device)
        change = product.flatten(1).sum(1)  # (G, *R) -> (G,)
        total.index_add_(0, torch.tensor([row for row, _, _ in members]), change.cpu())
    return total.tolist()


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing their mean rank."""
    ranks = np.empty(len(values))
    ranks[np.argsort(values, kind="stable")] = np.arange(1, len(values) + 1)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    return (np.bincount(inverse, weights=ranks) / counts)[inverse]


def agreement(exact: Sequence[float], estimated: Sequence[float], k: int = 10) -> dict:
    """How well estimated effects rank like exact ones: Spearman's rank correlation (of the effects)
    and the overlap of the top-k by absolute effect (|A ∩ B| / k)."""
    exact, estimated = np.asarray(exact, dtype=float), np.asarray(estimated, dtype=float)
    if len(exact) != len(estimated) or len(exact) < 2:
        raise InterpError("agreement needs two equally long lists of at least two effects")
    a, b = _ranks(exact), _ranks(estimated)
    spread = a.std() * b.std()
    spearman = float(((a - a.mean()) * (b - b.mean())).mean() / spread) if spread > 0 else float("nan")
    k = min(k, len(exact))
    top_exact = set(np.argsort(-np.abs(exact), kind="stable")[:k].tolist())
    top_estimated = set(np.argsort(-np.abs(estimated), kind="stable")[:k].tolist())
    return {"spearman": spearman, "top_k": k, "top_k_overlap": len(top_exact & top_estimated) / k, "n": len(exact)}
