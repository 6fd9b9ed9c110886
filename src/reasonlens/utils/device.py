"""Device selection (CUDA if present, else MPS, else CPU) and the dtype names configs use."""

from __future__ import annotations

import torch

from reasonlens.utils.errors import UserInputError

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


class DeviceError(UserInputError):
    """A device that does not exist or is not available on this machine."""


def resolve_device(name: str | None = "auto") -> torch.device:
    """``auto`` picks cuda > mps > cpu; an explicit name that is not available is an error."""
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if not (name in ("cpu", "mps", "cuda") or (name.startswith("cuda:") and name[5:].isdigit())):
        raise DeviceError(f"unknown device {name!r}; allowed: auto, cpu, cuda, cuda:N, mps")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"device {name!r} requested but CUDA is not available on this machine; use 'cpu' or 'auto'")
    if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
        raise DeviceError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA devices (cuda:0..)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("device 'mps' requested but MPS is not available on this machine; use 'cpu' or 'auto'")
    return torch.device(name)
