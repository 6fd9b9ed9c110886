"""Row patches: many interventions applied at once, each to its own row of a batch.

:func:`row_patches` turns (row, intervention, that row's source values) assignments into one hook patch
per site. At every call of the site, the rows that patch that call are grouped by (op, value); per group
the masks over the output and the replacement values are built as tensors — one ``index_put`` from the
rows' position and unit lists, one gather from a :class:`SourceBank` — so thousands of single-neuron
patches cost what their forwards cost, not a Python loop each. :func:`single_row_patch` is the plain
reference (indexed assignment on a one-row run) that the looped path uses.

Shapes in the comments::

    B     rows of the batch at the patched call
    G     rows of one group: those that patch a call with the same op and value
    N     rows of a reference or source bank
    R     one row's output at a site: (T, D), (T, H, Dh) or (D,)
    T     sequence positions
    U     units: the axes after T flattened (the last axis when there is no T)
    P, K  the selected positions and units
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from reasonlens.interp.cache import ActivationCache
from reasonlens.interp.errors import InterpError
from reasonlens.interp.hooks import SitePatch
from reasonlens.interp.sites import sequence_length, unit_count
from reasonlens.interp.spec import Intervention, check_selection

NEEDS_SOURCE = ("patch", "resample")


class SourceBank:
    """Source values of many inputs, stacked: ``{(site, call): (N, *R)}`` (a dict or an
    :class:`ActivationCache`) with ``rows`` mapping an input's key to its row. An entry of one row
    serves every row. ``bank.row(key)`` is what a row patch reads."""

    def __init__(self, values: Mapping[tuple[str, int], torch.Tensor], rows: Mapping[Any, int] | None = None):
        self.values, self.rows = values, dict(rows or {})

    def row(self, key) -> SourceRow:
        return SourceRow(self, self.rows[key])

    def take(self, key: tuple[str, int], rows: Sequence[int]) -> torch.Tensor:
        if key not in self.values:
            raise InterpError(f"the source values lack {key[0]}@{key[1]}")
        values = self.values[key]  # (N, *R)
        if len(values) == 1:
            return values.expand(len(rows), *values.shape[1:])  # (1, *R) -> (G, *R)
        return values[torch.as_tensor(rows, device=values.device)]  # (N, *R) -> (G, *R)


class SourceRow:
    """One row of a :class:`SourceBank`, read as ``{(site, call): tensor of shape R}``."""

    def __init__(self, bank: SourceBank, row: int):
        self.bank, self.index = bank, row

    def __getitem__(self, key: tuple[str, int]) -> torch.Tensor:
        return self.bank.take(key, [self.index])[0]  # (1, *R) -> R


def _gather(key: tuple[str, int], sources: list) -> torch.Tensor:
    """The (G, *R) source values at ``key`` of the rows' sources: one gather when they share a bank."""
    first = sources[0]
    if isinstance(first, SourceRow) and all(isinstance(s, SourceRow) and s.bank is first.bank for s in sources):
        return first.bank.take(key, [s.index for s in sources])
    return torch.stack([source[key] for source in sources])  # G x R -> (G, *R)


def row_masks(shape: tuple[int, ...], selections: Sequence[tuple[int, Intervention]], n_rows: int, device):
    """Boolean masks (G, *R) over the rows' outputs of shape R (no batch axis), row g selecting the
    positions × units of each of its interventions (several interventions on one row are OR-ed); ``None``
    when every row selects its whole output. With a sequence axis, units index the flattened remaining
    axes (``head·d_head + j`` of a (pos, head, d_head) output)."""
    if all(i.positions is None and i.units is None for _, i in selections):
        return None
    has_sequence = len(shape) >= 2
    T, U = (shape[0], math.prod(shape[1:])) if has_sequence else (1, shape[0])
    mask = torch.zeros((n_rows, T, U), dtype=torch.bool, device=device)  # (G, T, U); T = 1 without a sequence
    whole, by_position, by_unit, by_both = [], [], [], []
    for g, intervention in selections:
        positions = intervention.positions if has_sequence else None
        if positions is None and intervention.units is None:
            whole.append(g)
        elif intervention.units is None:
            by_position.append((g, positions))
        elif positions is None:
            by_unit.append((g, intervention.units))
        else:
            by_both.append((g, positions, intervention.units))

    def flat(pairs):  # [(g, indices)] -> (row index per entry, entries)
        rows = np.repeat([g for g, _ in pairs], [len(v) for _, v in pairs])
        values = np.fromiter(itertools.chain.from_iterable(v for _, v in pairs), dtype=np.int64)
        return torch.as_tensor(rows, device=device), torch.as_tensor(values, device=device)

    if whole:
        mask[torch.as_tensor(whole, device=device)] = True
    if by_position:
        rows, positions = flat(by_position)
        mask[rows, positions] = True  # (E,) x (E,) -> every unit of (row, position)
    if by_unit:
        rows, units = flat(by_unit)
        mask[rows, :, units] = True  # (E,) x (E,) -> every position of (row, unit)
    if by_both:
        rows = np.repeat([g for g, p, u in by_both], [len(p) * len(u) for _, p, u in by_both])
        positions = np.concatenate([np.repeat(p, len(u)) for _, p, u in by_both])  # P·K per entry
        units = np.concatenate([np.tile(u, len(p)) for _, p, u in by_both])
        mask[torch.as_tensor(rows, device=device), torch.as_tensor(positions, device=device),
             torch.as_tensor(units, device=device)] = True  # fmt: skip
    return mask.reshape(n_rows, *shape)  # (G, T, U) -> (G, *R)


def check_selections(interventions: Sequence[Intervention], shape: tuple[int, ...]) -> None:
    """:func:`check_selection` for many interventions on one output ``shape`` (batch first), with plain
    comparisons (no per-row validation cost); the first bad one raises its usual error."""
    positions, units = sequence_length(shape), unit_count(shape)
    for intervention in interventions:
        if (intervention.positions is not None and (positions is None or intervention.positions[-1] >= positions)) or (
            intervention.units is not None and intervention.units[-1] >= units
        ):
            check_selection(intervention, shape)


def union_calls(interventions: Iterable[Intervention]) -> tuple[int, ...] | None:
    """The calls any of ``interventions`` patches; None when one patches every call."""
    calls = [i.calls for i in interventions]
    return None if any(c is None for c in calls) else tuple(sorted({k for c in calls for k in c}))


def _rows_of(entries: list[tuple[int, Intervention, Any]]) -> tuple[list[int], list, list[tuple[int, Intervention]]]:
    """(the distinct rows in order, each row's source, (group row, intervention) per entry): several
    interventions on one row share its mask and the first one's source."""
    rows = [row for row, _, _ in entries]
    if len(set(rows)) == len(rows):  # the common case: one intervention per row
        return rows, [source for _, _, source in entries], [(g, i) for g, (_, i, _) in enumerate(entries)]
    index: dict[int, int] = {}
    sources, selections = [], []
    for row, intervention, source in entries:
        if row not in index:
            index[row] = len(index)
            sources.append(source)
        selections.append((index[row], intervention))
    return list(index), sources, selections


class _SitePlan:
    """For one site in one batch: which rows patch which calls how; prepared once per call (the output
    shape is known only then)."""

    def __init__(self, site: str, rows: list[tuple[int, Intervention, Any]], reference: ActivationCache | None):
        self.site, self.rows, self.reference = site, rows, reference
        self.prepared: dict[int, list] = {}
        self.calls = union_calls(i for _, i, _ in rows)

    def _mean(self, k: int, like: torch.Tensor) -> torch.Tensor:
        if self.reference is None or (self.site, k) not in self.reference:
            raise InterpError(f"op 'mean' at {self.site}@{k} needs a reference cache holding that site and call")
        return self.reference[(self.site, k)].float().mean(0).to(like.device, like.dtype)  # (N, *R) -> R

    def prepare(self, output: torch.Tensor, k: int) -> list:
        active = [entry for entry in self.rows if entry[1].calls is None or k in entry[1].calls]
        check_selections([intervention for _, intervention, _ in active], tuple(output.shape))
        groups: dict[tuple, list] = {}
        for entry in active:
            groups.setdefault((entry[1].op, entry[1].value), []).append(entry)
        prepared = []
        shape = tuple(output.shape[1:])  # R
        for (op, value), entries in groups.items():
            rows, sources, selections = _rows_of(entries)
            masks = row_masks(shape, selections, len(rows), output.device)  # (G, *R) or None
            if op in NEEDS_SOURCE:
                values = _gather((self.site, k), sources).to(output.device, output.dtype)  # (G, *R)
            elif op == "mean":
                values = self._mean(k, output).expand(len(rows), *shape)  # R -> (G, *R)
            else:
                values = None
            prepared.append((torch.tensor(rows, device=output.device), masks, values, op, value))
        return prepared

    def apply(self, output: torch.Tensor, k: int) -> torch.Tensor:
        if k not in self.prepared:
            self.prepared[k] = self.prepare(output, k)
        if not self.prepared[k]:
            return output
        output = output.clone()  # (B, *R)
        for rows, mask, values, op, value in self.prepared[k]:
            if mask is None and values is not None:  # whole rows replaced
                output[rows] = values
                continue
            current = output[rows]  # (B, *R) -> (G, *R)
            if values is None:
                values = (
                    torch.zeros_like(current) if op == "zero" else current + value if op == "add" else current * value
                )
            output[rows] = values if mask is None else torch.where(mask, values, current)  # (G, *R) into (B, *R)
        return output


def row_patches(
    assignments: Iterable[tuple[int, Intervention, Mapping | None]], reference: ActivationCache | None = None
) -> list[SitePatch]:
    """Hook patches (one per site) for a batch whose rows carry their own interventions. ``assignments``
    are (row, intervention, that row's source values — a :class:`SourceRow` or any
    ``{(site, call): tensor of shape R}`` — or None); ``reference`` holds the rows ``mean`` averages over."""
    per_site: dict[str, list] = {}
    for row, intervention, source_values in assignments:
        per_site.setdefault(intervention.site, []).append((row, intervention, source_values))
    plans = [_SitePlan(site, rows, reference) for site, rows in per_site.items()]
    return [SitePatch(plan.site, plan.calls, plan.apply) for plan in plans]


def single_row_patch(intervention: Intervention, source: Mapping, reference: ActivationCache | None = None):
    """The reference patch for one-row runs: plain indexed assignment from ``source``
    ({(site, call): row tensor}), on a (pos, flattened units) view of outputs that have a sequence axis."""

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
