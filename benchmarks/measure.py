"""What the benchmark scripts share: wall-clock timing (synchronised on a GPU), FLOP counts and the
machine's description. Import it from a script in this folder (``from measure import timed``)."""

from __future__ import annotations

import platform
import time

import torch
from torch.utils.flop_counter import FlopCounterMode


def timed(function, device: torch.device) -> tuple[float, object]:
    """(seconds, result) of one call."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = function()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def flop_count(function) -> int:
    """The floating-point operations of one call (matrix products, convolutions, attention), as
    ``torch.utils.flop_counter`` counts them."""
    with FlopCounterMode(display=False) as counter:
        function()
    return counter.get_total_flops()


def machine(device: torch.device) -> dict:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    return {"device": name, "threads": torch.get_num_threads(), "torch": torch.__version__}
