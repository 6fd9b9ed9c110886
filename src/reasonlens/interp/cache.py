"""ActivationCache: (site, call) → tensor, rows first; every call of a repeated module is its own entry.

On disk a cache is a folder with ``activations.safetensors`` (keys ``site@call``) and ``index.json``
(sites, calls, shapes, dtypes, free-form metadata such as input ids); :meth:`ActivationCache.load`
reads tensors lazily. Exports: :meth:`to_pt` (one ``{site: (calls, rows, ...)}`` dict, what seed 000's
patching script writes), :meth:`to_npz` and :meth:`to_json` (``{input_id: {site: values}}``, the shape
seed 001's analysis reads).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

from reasonlens.interp.errors import InterpError
from reasonlens.utils.io import atomic_write, save_safetensors, torch_save_atomic, write_json

TENSORS_FILE = "activations.safetensors"
INDEX_FILE = "index.json"


def _key(site: str, call: int) -> str:
    return f"{site}@{call}"


class ActivationCache:
    def __init__(self, data: dict[tuple[str, int], torch.Tensor] | None = None, meta: dict | None = None):
        self._data: dict[tuple[str, int], torch.Tensor] = dict(data or {})
        self._lazy = None  # (safetensors handle, set of keys) when loaded lazily
        self._lazy_keys: set[tuple[str, int]] = set()
        self.meta = dict(meta or {})

    # -- access -------------------------------------------------------------------------------

    def put(self, site: str, call: int, tensor: torch.Tensor) -> None:
        self._data[(site, int(call))] = tensor

    def keys(self) -> list[tuple[str, int]]:
        return sorted(set(self._data) | self._lazy_keys)

    def __contains__(self, key) -> bool:
        return key in self._data or key in self._lazy_keys

    def __len__(self) -> int:
        return len(self.keys())

    def __iter__(self):
        return iter(self.keys())

    def __getitem__(self, key: tuple[str, int]) -> torch.Tensor:
        if key not in self._data:
            if key not in self._lazy_keys:
                calls = self.calls(key[0])
                raise InterpError(
                    f"no cached activation for site {key[0]!r} call {key[1]}"
                    + (f"; cached calls: {calls}" if calls else f"; cached sites: {self.sites()}")
                )
            self._data[key] = self._lazy.get_tensor(_key(*key))
        return self._data[key]

    def sites(self) -> list[str]:
        return sorted({site for site, _ in self.keys()})

    def calls(self, site: str) -> list[int]:
        return sorted(call for s, call in self.keys() if s == site)

    def stacked(self, site: str) -> torch.Tensor:
        """All calls of a site stacked: (calls, rows, ...)."""
        calls = self.calls(site)
        if not calls:
            raise InterpError(f"site {site!r} is not in the cache; cached sites: {self.sites()}")
        return torch.stack([self[(site, c)] for c in calls])

    def select_rows(self, rows) -> ActivationCache:
        """A cache with only the given rows (batch indices) of every entry."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        return ActivationCache({k: self[k][rows.to(self[k].device)] for k in self.keys()}, self.meta)

    def mean(self) -> ActivationCache:
        """Mean over rows of every entry (the reference of ``mean`` ablation), keeping a row axis of 1."""
        return ActivationCache(
            {k: self[k].float().mean(0, keepdim=True).to(self[k].dtype) for k in self.keys()}, self.meta
        )

    # -- files --------------------------------------------------------------------------------

    def save(self, folder: str | os.PathLike) -> Path:
        folder = Path(folder)
        keys = self.keys()
        save_safetensors(folder / TENSORS_FILE, {_key(s, c): self[(s, c)] for s, c in keys})
        index = {
            "entries": [
                {"site": s, "call": c, "shape": list(self[(s, c)].shape), "dtype": str(self[(s, c)].dtype)}
                for s, c in keys
            ],
            "meta": self.meta,
        }
        write_json(folder / INDEX_FILE, index)
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike, lazy: bool = True) -> ActivationCache:
        folder = Path(folder)
        if not (folder / INDEX_FILE).is_file() or not (folder / TENSORS_FILE).is_file():
            raise InterpError(f"{folder} is not an activation cache ({INDEX_FILE} + {TENSORS_FILE})")
        index = json.loads((folder / INDEX_FILE).read_text())
        cache = cls(meta=index.get("meta", {}))
        handle = safe_open(str(folder / TENSORS_FILE), framework="pt")
        keys = {(e["site"], int(e["call"])) for e in index["entries"]}
        if lazy:
            cache._lazy, cache._lazy_keys = handle, keys
        else:
            cache._data = {k: handle.get_tensor(_key(*k)) for k in keys}
        return cache

    def to_pt(self, path: str | os.PathLike, **extra) -> Path:
        """``{"activations": {site: (calls, rows, ...)}, "calls": {site: [...]}, "meta": ..., **extra}``;
        read with ``torch.load(path, weights_only=True)``."""
        payload = {
            "activations": {s: self.stacked(s).cpu() for s in self.sites()},
            "calls": {s: self.calls(s) for s in self.sites()},
            "meta": self.meta,
            **extra,
        }
        torch_save_atomic(payload, path)
        return Path(path)

    def to_npz(self, path: str | os.PathLike) -> Path:
        """One array per (site, call): key ``site@call``, rows first."""
        with atomic_write(path, "wb") as handle:
            np.savez_compressed(handle, **{_key(s, c): self[(s, c)].float().cpu().numpy() for s, c in self.keys()})
        return Path(path)

    def to_json(self, path: str | os.PathLike, row_ids: list[str]) -> Path:
        """``{row_id: {site: values}}`` with ``site@call`` names for sites cached at several calls."""
        out: dict[str, dict] = {str(r): {} for r in row_ids}
        for site in self.sites():
            calls = self.calls(site)
            for call in calls:
                tensor = self[(site, call)]
                if tensor.shape[0] != len(row_ids):
                    raise InterpError(f"{site}@{call} has {tensor.shape[0]} rows but {len(row_ids)} row ids were given")
                name = site if len(calls) == 1 else _key(site, call)
                for row_id, row in zip(row_ids, tensor.float().cpu().tolist()):
                    out[str(row_id)][name] = row
        write_json(path, out)
        return Path(path)
