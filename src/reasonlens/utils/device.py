"""Device selection (CUDA if present, else MPS, else CPU) and the dtype names configs use."""

from __future__ import annotations

import torch

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def resolve_device(name: str | None = "auto") -> torch.device:
    """``auto`` picks cuda > mps > cpu; an explicit name that is not available is an error."""
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use 'cpu' or 'auto'")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' requested but MPS is not available; use 'cpu' or 'auto'")
    if not (name in ("cpu", "mps") or name.startswith("cuda")):
        raise ValueError(f"unknown device {name!r}; allowed: auto, cpu, cuda, cuda:N, mps")
    return torch.device(name)
