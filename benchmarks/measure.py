"""What the benchmark scripts share: wall-clock timing (synchronised on a GPU), FLOP counts and the
machine's description. Import it from a script in this folder (``from measure import timed``)."""

from __future__ import annotations

import platform
import time

import torch
from torch.utils.flop_counter import FlopCounterMode


def timed(function, device: torch.device, repeats: int = 1) -> tuple[float, object]:
    """(seconds, result) of one call; with ``repeats``, the median time of that many calls (for calls of
    a few milliseconds, where one timing is mostly noise)."""
    seconds = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = function()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    return sorted(seconds)[len(seconds) // 2], out


def flop_count(function) -> int:
    """The floating-point operations of one call (matrix products, convolutions, attention), as
    ``torch.utils.flop_counter`` counts them."""
    with FlopCounterMode(display=False) as counter:
        function()
    return counter.get_total_flops()


def machine(device: torch.device) -> dict:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    return {"device": name, "threads": torch.get_num_threads(), "torch": torch.__version__}
