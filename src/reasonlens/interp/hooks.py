"""Context-managed forward hooks with per-site call counters: :func:`capture` records every requested
(site, call) output; :func:`intervene` rewrites outputs. Hooks are removed on exit, also after an
exception; a run under :func:`intervene` fails if a requested call never happened."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from reasonlens.interp.cache import ActivationCache
from reasonlens.interp.errors import InterpError
from reasonlens.interp.sites import Alias, resolve


@dataclass
class SitePatch:
    """Rewrite the output of ``site`` at the given site calls (``None``: every call) with
    ``apply(output, site_call) -> new output``."""

    site: str
    calls: tuple[int, ...] | None
    apply: Callable[[torch.Tensor, int], torch.Tensor]


@contextlib.contextmanager
def call_hooks(
    model: nn.Module, per_module: dict[str, list], on_call, start_calls: Mapping[str, int] | None = None
) -> Iterator[dict[str, int]]:
    """Forward hooks on the modules ``per_module`` names: ``on_call(path, call index, output)`` may return a
    new output. Call indices count per module from ``start_calls`` (default 0); removed on exit."""
    counters = {path: (start_calls or {}).get(path, 0) for path in per_module}
    handles = []
    for path in per_module:
        module = model.get_submodule(path)

        def hook(mod, args, output, path=path):
            index = counters[path]
            counters[path] += 1
            return on_call(path, index, output)

        handles.append(module.register_forward_hook(hook))
    try:
        yield counters
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def capture(
    model: nn.Module, sites: Iterable[str], aliases: dict[str, Alias] | None = None, to_cpu: bool = False
) -> Iterator[ActivationCache]:
    """Record the output of every call of each site (detached) into the yielded cache."""
    cache = ActivationCache()
    per_module: dict[str, list[tuple[str, Alias | None]]] = {}
    for site in dict.fromkeys(sites):
        path, _, alias = resolve(model, site, aliases)
        per_module.setdefault(path, []).append((site, alias))

    def on_call(path, module_call, output):
        if isinstance(output, torch.Tensor):
            for site, alias in per_module[path]:
                k = module_call if alias is None else alias.site_call(module_call)
                if k is not None:
                    value = output.detach()
                    cache.put(site, k, value.cpu() if to_cpu else value)
        return None

    with call_hooks(model, per_module, on_call):
        yield cache


@contextlib.contextmanager
def intervene(
    model: nn.Module,
    patches: Iterable[SitePatch],
    aliases: dict[str, Alias] | None = None,
    start_calls: Mapping[str, int] | None = None,
) -> Iterator[None]:
    """Apply the patches during the runs inside the block. On a clean exit, every requested site call
    must have happened (else :class:`InterpError`). ``start_calls`` ({module path: calls}) numbers a run
    that resumes part-way (:mod:`reasonlens.interp.prefix`): the module's next call is that number."""
    per_module: dict[str, list[tuple[SitePatch, Alias | None]]] = {}
    for patch in patches:
        path, _, alias = resolve(model, patch.site, aliases)
        per_module.setdefault(path, []).append((patch, alias))
    reached: dict[str, int] = {}

    def on_call(path, module_call, output):
        if not isinstance(output, torch.Tensor):
            return None
        for patch, alias in per_module[path]:
            k = module_call if alias is None else alias.site_call(module_call)
            if k is None:
                continue
            reached[patch.site] = max(reached.get(patch.site, -1), k)
            if patch.calls is None or k in patch.calls:
                output = patch.apply(output, k)
        return output

    with call_hooks(model, per_module, on_call, start_calls):
        yield
    for patches_of_module in per_module.values():
        for patch, _ in patches_of_module:
            last = reached.get(patch.site, -1)
            if patch.calls is not None and patch.calls and patch.calls[-1] > last:
                raise InterpError(
                    f"site {patch.site} ran {last + 1} time(s) but call {patch.calls[-1]} was requested; "
                    "patch fewer steps/calls or run the model longer"
                )
