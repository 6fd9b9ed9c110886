"""Prefix reuse: a patch at call k of a module cannot change anything computed before that call, so a
patched row need only be recomputed from the latest **resumable point** before its first patched call.

An adapter opts in with two methods (:class:`Resumable`):

- ``run_points(batch, at_point)`` — the ordinary run, calling ``at_point(state)`` at every point where
  the computation can be resumed, in order. ``state`` is a dict of batch-first tensors holding
  everything the rest of the run reads (HRM: the latent states within the ACT loop; a
  TransformerLens model: the residual stream before each block; a Q-network: the input of each layer).
- ``run_from(batch, point, state)`` — the rest of the run from the ``point``-th point, given its state.

The adapter says only *where* a run can resume; the engine measures *what ran before*: it counts the
calls each patched module had started at every point (forward pre-hooks on a one-row run). A point
serves an experiment when, for every module it patches, the calls started before the point are at
most the first call it patches — a module still running at the point (a container whose children are
resumed into) is never resumed past. Each experiment runs from the latest point that serves it,
with its hooks' call counters starting at the counts; experiments with no such point, and adapters
that declare no points, run from the start (:class:`Prefixes` is then empty).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from reasonlens.interp.sites import Alias, resolve
from reasonlens.interp.spec import Intervention

State = dict[str, torch.Tensor]


@runtime_checkable
class Resumable(Protocol):
    def run_points(self, batch: dict[str, torch.Tensor], at_point: Callable[[State], None]) -> Any: ...

    def run_from(self, batch: dict[str, torch.Tensor], point: int, state: State) -> Any: ...


@contextlib.contextmanager
def started_calls(model: nn.Module, paths: Iterable[str]) -> Iterator[dict[str, int]]:
    """Count, per module path, the calls started so far (a forward pre-hook per module)."""
    counters = dict.fromkeys(paths, 0)
    handles = []
    for path in counters:

        def count(module, args, path=path):
            counters[path] += 1

        handles.append(model.get_submodule(path).register_forward_pre_hook(count))
    try:
        yield counters
    finally:
        for handle in handles:
            handle.remove()


def first_calls(
    interventions: Iterable[Intervention], model: nn.Module, aliases: Mapping[str, Alias] | None, paths: dict
) -> dict[str, int]:
    """{module path: first module call patched} over ``interventions``; ``paths`` memoises site → (path, alias)."""
    first: dict[str, int] = {}
    for intervention in interventions:
        if intervention.site not in paths:
            path, _, alias = resolve(model, intervention.site, dict(aliases or {}))
            paths[intervention.site] = (path, alias)
        path, alias = paths[intervention.site]
        k = 0 if intervention.calls is None else intervention.calls[0]
        call = alias.module_call(k) if alias is not None else k
        first[path] = min(first.get(path, call), call)
    return first


@dataclass
class Prefixes:
    """The resumable points of an adapter's run on a set of targets: the calls started before each
    point (``calls_before[p]``: module path → count) and, for the points some experiment resumes from,
    the targets' states (``states[p]``: key → (targets, ...) tensor, row ``rows[target]``)."""

    calls_before: list[dict[str, int]] = field(default_factory=list)
    states: dict[int, State] = field(default_factory=dict)
    rows: dict[int, int] = field(default_factory=dict)

    def point_for(self, first: Mapping[str, int]) -> int | None:
        """The latest point before every module's first patched call; None: run from the start."""
        best = None
        for point, before in enumerate(self.calls_before):
            if any(before.get(path, 0) > call for path, call in first.items()):
                break  # call counts only grow: no later point serves either
            best = point
        return best

    def state(self, point: int, targets: Sequence[int]) -> State:
        index = torch.as_tensor([self.rows[t] for t in targets])
        return {
            key: value[index.to(value.device)] for key, value in self.states[point].items()
        }  # (targets, ...) -> (B, ...)


def probe_points(adapter: Resumable, target: int, paths: Iterable[str]) -> list[dict[str, int]]:
    """The calls of ``paths`` started before each point, from one unpatched run of one row."""
    counts = []
    with torch.inference_mode(), started_calls(adapter.model, paths) as counters:
        adapter.run_points(adapter.batch([target]), lambda state: counts.append(dict(counters)))
    return counts


def run_keeping(adapter: Resumable, batch: dict[str, torch.Tensor], keep: set[int]) -> tuple[Any, dict[int, State]]:
    """One unpatched run (the outputs) keeping the states of the points in ``keep``."""
    kept: dict[int, State] = {}
    seen = [0]

    def at_point(state: State) -> None:
        if seen[0] in keep:
            kept[seen[0]] = dict(state)
        seen[0] += 1

    outputs = adapter.run_points(batch, at_point)
    return outputs, kept


def stack_states(chunks: list[dict[int, State]]) -> dict[int, State]:
    """Per point, the chunks' states concatenated along the batch axis."""
    return {point: {key: torch.cat([c[point][key] for c in chunks]) for key in chunks[0][point]} for point in chunks[0]}
