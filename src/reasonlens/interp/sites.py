"""Sites: module paths and adapter aliases, with the number of times each runs and its output shape.

A module that runs many times in one forward (HRM's ``inner.L_level``) is addressed per **call**: call k
is its k-th execution in the run. An :class:`Alias` names a subsequence of a module's calls
(``module call = stride·k + offset``): the HRM adapter's ``z_H`` is the last ``H_level`` call of each ACT
step. :func:`probe_sites` runs the model once with counting hooks on every module and returns a
:class:`SiteInfo` per site — what spec validation checks against.

Positions and units of an output (batch first): with 3 or more axes, axis 1 is the sequence axis and
the units are the flattened axes after it (head h of a (batch, pos, head, d_head) output is units
h·d_head ... h·d_head + d_head - 1); with fewer, there is no sequence axis and the units are the last axis.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from reasonlens.interp.errors import InterpError


@dataclass(frozen=True)
class Alias:
    """Site call k of the alias is call ``stride·k + offset`` of ``module``."""

    module: str
    stride: int = 1
    offset: int = 0
    description: str = ""

    def module_call(self, k: int) -> int:
        return self.stride * k + self.offset

    def site_call(self, module_call: int) -> int | None:
        shifted = module_call - self.offset
        return shifted // self.stride if shifted >= 0 and shifted % self.stride == 0 else None


@dataclass(frozen=True)
class SiteInfo:
    name: str
    module: str
    calls: int
    shape: tuple[int, ...]  # one call's output, batch axis first
    alias: bool = False

    @property
    def positions(self) -> int | None:
        return sequence_length(self.shape)

    @property
    def units(self) -> int:
        return unit_count(self.shape)


def sequence_length(shape: tuple[int, ...]) -> int | None:
    """The positions of a batch-first output shape; None when it has no sequence axis."""
    return shape[1] if len(shape) >= 3 else None


def unit_count(shape: tuple[int, ...]) -> int:
    """The units of a batch-first output shape: the flattened axes after the sequence axis, else the last axis."""
    return math.prod(shape[2:]) if len(shape) >= 3 else shape[-1]


def unknown_site(site: str, names: Iterable[str]) -> InterpError:
    """The error for a site that is not among ``names``; it lists the valid ones, closest first."""
    names = sorted(names)
    close = difflib.get_close_matches(site, names, n=5, cutoff=0.4)
    rest = [n for n in names if n not in close]
    listing = ", ".join(close + rest[: max(0, 25 - len(close))]) + (" ..." if len(names) > 25 else "")
    return InterpError(f"unknown site {site!r}; valid sites (closest first): {listing}")


def resolve(
    model: nn.Module, site: str, aliases: dict[str, Alias] | None = None
) -> tuple[str, nn.Module, Alias | None]:
    """(module path, module, alias or None) of a site name."""
    aliases = aliases or {}
    alias = aliases.get(site)
    path = alias.module if alias is not None else site
    try:
        module = model.get_submodule(path)
    except AttributeError:
        if alias is not None:
            raise InterpError(f"alias {site!r} points at {path!r}, which is not a module of the model") from None
        raise unknown_site(site, [name for name, _ in model.named_modules() if name] + list(aliases)) from None
    return path, module, alias


def probe_sites(
    model: nn.Module, run: Callable[[], object], aliases: dict[str, Alias] | None = None
) -> dict[str, SiteInfo]:
    """Run ``run()`` once with counting hooks on every submodule; return {site: SiteInfo} for every module
    that produced a tensor, plus the aliases."""
    counts: dict[str, int] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    for path, module in model.named_modules():
        if not path:
            continue

        def hook(mod, args, output, path=path):
            if isinstance(output, torch.Tensor):
                counts[path] = counts.get(path, 0) + 1
                shapes.setdefault(path, tuple(output.shape))

        handles.append(module.register_forward_hook(hook))
    try:
        with torch.inference_mode():
            run()
    finally:
        for handle in handles:
            handle.remove()
    sites = {path: SiteInfo(path, path, counts[path], shapes[path]) for path in counts}
    for name, alias in (aliases or {}).items():
        if alias.module not in counts:
            raise InterpError(f"alias {name!r} points at {alias.module!r}, which did not run")
        calls = max(0, (counts[alias.module] - alias.offset + alias.stride - 1) // alias.stride)
        sites[name] = SiteInfo(name, alias.module, calls, shapes[alias.module], alias=True)
    return sites
