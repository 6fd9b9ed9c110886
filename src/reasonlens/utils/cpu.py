"""How training uses a CPU: thread count, whether bf16 is native, whether ``torch.compile`` can work.

The defaults were chosen from ``benchmarks/hrm_step.py --cases cpu`` (docs/results.md, "CPU training"):

- **threads** (``auto``): one per core, less the cores other processes keep busy when training starts (the
  runnable count of ``/proc/loadavg``, median of five looks over 0.2 s, this process not counted;
  the 1-minute load average where there is no ``/proc``), at least one. On a 2-core machine torch's OpenMP
  threads spin against any other busy process, and one thread then beats two (the demo model: 153 vs 238 ms
  a step); with both cores free two threads are 1.4–1.9× faster.
- **bf16** only where the CPU multiplies bf16 natively (AVX512-BF16 or AMX). On an AVX2-only CPU a bf16
  step is 6–10× slower than float32, so float32 stays the default on CPU (``forward_dtype`` opts in).
- **compile** (``auto``): only when a C++ compiler is on the PATH (inductor's CPU backend needs one) and the
  run is long enough (:data:`COMPILE_MIN_STEPS`) for the ~40 s of compiling to pay back. A compile that fails
  at the first step falls back to eager with one line in the log, never a crash.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import torch

# below this many optimizer steps ``compile: auto`` stays eager: ~40 s of compiling (plus the eval graph) pays
# back only after ~1,000 steps at the 1.17–1.51× measured on the demo and 9×9 models
COMPILE_MIN_STEPS = 1500


def core_count() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def busy_cores(looks: int = 5, interval_s: float = 0.05, loadavg: Path = Path("/proc/loadavg")) -> int:
    """Threads of other processes running now: the median runnable count in ``/proc/loadavg`` less this
    process's own reading thread (elsewhere: the 1-minute load average, rounded; 0 if there is none).
    Not the load average on Linux: it still counts a job that ended a minute ago."""
    if loadavg.is_file():
        counts = []
        for look in range(looks):
            if look:
                time.sleep(interval_s)
            running = int(loadavg.read_text().split()[3].split("/")[0])  # "R/T": runnable / total tasks
            counts.append(running - 1)
        return max(0, sorted(counts)[len(counts) // 2])
    try:
        return round(os.getloadavg()[0])
    except (AttributeError, OSError):  # no load average on this platform
        return 0


def auto_threads() -> int:
    """Threads for torch's intra-op pool: free cores, at least one."""
    return max(1, core_count() - busy_cores())


def set_threads(threads: int | str) -> int:
    """Apply ``threads`` (a count, or ``auto``) to torch and return the count used."""
    count = auto_threads() if threads == "auto" else int(threads)
    torch.set_num_threads(count)
    return count


def native_bf16() -> bool:
    """Whether bf16 matmuls are native here (AVX512-BF16 / AMX on the CPU, or a GPU)."""
    cpuinfo = Path("/proc/cpuinfo")
    flags = cpuinfo.read_text() if cpuinfo.is_file() else ""
    return "avx512_bf16" in flags or "amx_bf16" in flags or torch.cuda.is_available()


def has_compiler() -> bool:
    """A C++ compiler for inductor's CPU code: ``$CXX`` or one of the usual names on the PATH."""
    names = [os.environ.get("CXX", ""), "c++", "g++", "clang++"]
    return any(name and shutil.which(name) for name in names)


def should_compile(setting: bool | str, device: torch.device, steps: int) -> tuple[bool, str]:
    """(compile?, why) for a ``compile`` setting of True, False or ``auto``."""
    if setting is True:
        return True, "compile: true"
    if setting is False:
        return False, "compile: false"
    if steps < COMPILE_MIN_STEPS:
        return False, f"compile: auto, eager for a run of {steps} steps (< {COMPILE_MIN_STEPS})"
    if device.type == "cpu" and not has_compiler():
        return False, "compile: auto, eager: no C++ compiler on the PATH (set CXX or install g++/clang++)"
    return True, f"compile: auto, compiled ({steps} steps)"
