"""The intervention engine shared by every family: sites addressed per call, spec strings parsed into
serialisable interventions, context-managed capture and patch hooks, activation caches, batched sweeps,
typed results and reports. It imports no family: a family supplies an adapter (how to run its model on
a batch, its site aliases and its metric). Design: ../../../docs/interp.md."""

from reasonlens.interp.cache import ActivationCache
from reasonlens.interp.errors import InterpError
from reasonlens.interp.hooks import capture, intervene
from reasonlens.interp.results import PatchResult, load_results, save_results
from reasonlens.interp.sites import Alias, SiteInfo, probe_sites
from reasonlens.interp.spec import Intervention, format_spec, parse_spec, validate
from reasonlens.interp.sweep import Experiment, run_sweep

__all__ = [
    "ActivationCache",
    "Alias",
    "Experiment",
    "InterpError",
    "Intervention",
    "PatchResult",
    "SiteInfo",
    "capture",
    "format_spec",
    "intervene",
    "load_results",
    "parse_spec",
    "probe_sites",
    "run_sweep",
    "save_results",
    "validate",
]
