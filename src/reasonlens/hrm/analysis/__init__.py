"""Analysis of the HRM family over the interp engine: the adapter (call-index map, z_H/z_L aliases,
halting, scoring), seed 000's activation patching, reasoning dynamics, pictures and exploration studies."""

from reasonlens.hrm.analysis.adapter import HRMAdapter
from reasonlens.hrm.analysis.patching import ActivationPatcher

__all__ = ["ActivationPatcher", "HRMAdapter"]
