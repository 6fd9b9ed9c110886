"""Intervention specs: the string grammar, the frozen records it parses to, and validation against a model.

::

    spec     := entry (';' entry)*
    entry    := site ['[' indices ']'] ['@' indices] [':' indices]
                  site: a module path or an adapter alias;  [...] positions (sequence axis);
                  @... calls (the k-th time the site runs; for aliases such as z_H, the ACT step);
                  :... units (last axis: neurons, features; with a sequence axis, the flattened
                  remaining axes, so head h of a (pos, head, d_head) output is units h·d_head ...)
    indices  := 'all' | item (',' item)*          item := INT | INT '-' INT   (inclusive range)

    q_net.0:5,6,7;q_net.2:10,11      q_net.2:all      z_H@2      z_H[0-8]@0,1,2      inner.L_level@5:0-63

An omitted part means "all". The neuron-patching guide's ``layer:neurons;...`` strings parse unchanged.
:func:`parse_spec` returns :class:`Intervention` records (hashable, JSON round-trippable, ``str()`` gives
the spec back; the op and value are not part of the string); :func:`validate` checks them against the
sites a model actually has (see :mod:`reasonlens.interp.sites`) before anything runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Literal

from reasonlens.interp.errors import InterpError
from reasonlens.interp.sites import sequence_length, unit_count, unknown_site

Op = Literal["patch", "zero", "mean", "resample", "add", "scale"]
OPS = ("patch", "zero", "mean", "resample", "add", "scale")
SITE_PATTERN = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")  # module paths; Sequential children are digits
ENTRY_PATTERN = re.compile(
    r"^(?P<site>[^\[\]@:;\s]+)(\[(?P<positions>[^\]]*)\])?(@(?P<calls>[^:\[\]]*))?(:(?P<units>[^\[\]@:]*))?$"
)


@dataclass(frozen=True)
class Intervention:
    """What to do at one site. ``None`` selections mean all. ``op``: ``patch`` (source run's values),
    ``zero``, ``mean`` (mean over a reference set), ``resample`` (another input's values), ``add`` /
    ``scale`` (by ``value``)."""

    site: str
    positions: tuple[int, ...] | None = None
    calls: tuple[int, ...] | None = None
    units: tuple[int, ...] | None = None
    op: Op = "patch"
    value: float | None = None

    def __post_init__(self):
        if self.op not in OPS:
            raise InterpError(f"unknown op {self.op!r}; allowed: {', '.join(OPS)}")
        if self.op in ("add", "scale") and self.value is None:
            raise InterpError(f"op {self.op!r} needs a value")

    def __str__(self) -> str:
        text = self.site
        if self.positions is not None:
            text += f"[{_format_indices(self.positions)}]"
        if self.calls is not None:
            text += f"@{_format_indices(self.calls)}"
        if self.units is not None:
            text += f":{_format_indices(self.units)}"
        return text

    def to_dict(self) -> dict:
        data = asdict(self)
        for key in ("positions", "calls", "units"):
            if data[key] is not None:
                data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Intervention:
        fields = dict(data)
        for key in ("positions", "calls", "units"):
            if fields.get(key) is not None:
                fields[key] = tuple(int(i) for i in fields[key])
        try:
            return cls(**fields)
        except TypeError as err:
            raise InterpError(f"not an intervention record: {err}") from None


def parse_indices(text: str, what: str, entry: str) -> tuple[int, ...] | None:
    """``all`` → None; ``0,2,5-7`` → sorted unique indices. ``what`` and ``entry`` name them in errors."""
    text = text.strip()
    if text == "all":
        return None
    if not text:
        raise InterpError(f"empty {what} selection in {entry!r}; write indices (e.g. 0,2,5-7) or 'all'")
    values: list[int] = []
    for item in text.split(","):
        item = item.strip()
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", item)
        if not match:
            raise InterpError(f"bad {what} index {item!r} in {entry!r}; use non-negative integers, a-b ranges or 'all'")
        start = int(match.group(1))
        stop = int(match.group(2)) if match.group(2) is not None else start
        if stop < start:
            raise InterpError(f"empty range {item!r} in {entry!r}: the end must not be below the start")
        if stop - start > 1_000_000:
            raise InterpError(f"range {item!r} in {entry!r} is too large")
        values.extend(range(start, stop + 1))
    return tuple(sorted(set(values)))


def _format_indices(indices: tuple[int, ...]) -> str:
    parts, start = [], None
    for i, value in enumerate(indices):
        if start is None:
            start = value
        if i + 1 == len(indices) or indices[i + 1] != value + 1:
            parts.append(str(start) if start == value else f"{start}-{value}")
            start = None
    return ",".join(parts)


def parse_spec(text: str, op: Op = "patch", value: float | None = None) -> tuple[Intervention, ...]:
    """Parse a spec string into interventions that all carry ``op`` / ``value``."""
    if not isinstance(text, str):
        raise InterpError(f"a spec must be a string, got {type(text).__name__}")
    entries = [entry.strip() for entry in text.split(";")]
    if not text.strip() or any(not entry for entry in entries):
        raise InterpError(f"empty entry in spec {text!r}; write site[positions]@calls:units entries separated by ';'")
    out = []
    for entry in entries:
        match = ENTRY_PATTERN.match(entry)
        if not match or not SITE_PATTERN.fullmatch(match.group("site")):
            raise InterpError(
                f"malformed spec entry {entry!r}; expected site[positions]@calls:units, e.g. z_H[0-8]@2 or q_net.0:5,6"
            )
        out.append(
            Intervention(
                site=match.group("site"),
                positions=None
                if match.group("positions") is None
                else parse_indices(match.group("positions"), "position", entry),
                calls=None if match.group("calls") is None else parse_indices(match.group("calls"), "call", entry),
                units=None if match.group("units") is None else parse_indices(match.group("units"), "unit", entry),
                op=op,
                value=value,
            )
        )
    return tuple(out)


def format_spec(interventions) -> str:
    return ";".join(str(i) for i in interventions)


def as_interventions(
    interventions: str | Intervention | Iterable[str | Intervention], op: Op = "patch", value: float | None = None
) -> tuple[Intervention, ...]:
    """Spec strings (parsed with ``op`` / ``value``) and :class:`Intervention` records (kept as they are),
    alone or in a list, as one tuple of records."""
    items = [interventions] if isinstance(interventions, (str, Intervention)) else interventions
    if not isinstance(items, Iterable):
        raise InterpError(f"interventions are spec strings or Intervention records, got {type(items).__name__}")
    out: list[Intervention] = []
    for item in items:
        if isinstance(item, str):
            out.extend(parse_spec(item, op, value))
        elif isinstance(item, Intervention):
            out.append(item)
        else:
            raise InterpError(f"an intervention is a spec string or an Intervention record, got {type(item).__name__}")
    if not out:
        raise InterpError("no interventions given; pass spec strings such as 'z_H@2' or Intervention records")
    return tuple(out)


def from_mapping(mapping: dict, op: Op = "patch") -> tuple[Intervention, ...]:
    """The dict form of the neuron-patching guide: ``{"q_net.0": [5, 10, 15], "q_net.2": "all"}`` (units)."""
    out = []
    for site, units in mapping.items():
        if units == "all" or units is None:
            selection = None
        elif isinstance(units, (list, tuple)) and all(isinstance(u, int) and u >= 0 for u in units) and units:
            selection = tuple(sorted(set(units)))
        else:
            raise InterpError(
                f"units for {site!r} must be 'all' or a non-empty list of non-negative ints, got {units!r}"
            )
        if not SITE_PATTERN.fullmatch(str(site)):
            raise InterpError(f"malformed site name {site!r}")
        out.append(Intervention(site=str(site), units=selection, op=op))
    if not out:
        raise InterpError("empty patch spec: name at least one layer")
    return tuple(out)


def validate(interventions, sites: dict, call_word: str = "call") -> tuple[Intervention, ...]:
    """Check every intervention against ``sites`` ({name: SiteInfo}) — site exists, calls, positions and
    units in range — and return them. The first problem raises :class:`InterpError`."""
    for intervention in interventions:
        if intervention.site not in sites:
            raise unknown_site(intervention.site, sites)
        info = sites[intervention.site]
        word = "step" if info.alias else call_word
        _check_range(intervention.calls, info.calls, f"{word}s of {intervention.site}", intervention)
        check_selection(intervention, info.shape)
    return tuple(interventions)


def check_selection(intervention: Intervention, shape: tuple[int, ...]) -> None:
    """Check the positions and units of ``intervention`` against one call's output ``shape`` (batch first)."""
    if intervention.positions is not None and sequence_length(shape) is None:
        raise InterpError(f"{intervention.site} has no sequence axis (output shape {shape}); drop [positions]")
    _check_range(intervention.positions, sequence_length(shape), f"positions of {intervention.site}", intervention)
    _check_range(intervention.units, unit_count(shape), f"units of {intervention.site}", intervention)


def _check_range(indices, size, what: str, intervention) -> None:
    if indices is not None and size is not None and indices and indices[-1] >= size:
        raise InterpError(f"{intervention}: index {indices[-1]} is out of range for the {size} {what} (0..{size - 1})")
