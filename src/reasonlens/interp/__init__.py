"""The intervention engine shared by every family: sites addressed per call, spec strings parsed into
serialisable interventions, context-managed capture and patch hooks (:func:`apply` for spec strings and
records), activation caches, batched sweeps, typed results and reports. It imports no family: a family
supplies an adapter (how to run its model on a batch, its site aliases and its metric). Linear probes
(:mod:`.probe`) and sparse autoencoders on SAELens (:mod:`.sae`) read cached activations; they load on
first use. Design: ../../../docs/interp.md."""

import importlib

from reasonlens.interp.cache import ActivationCache
from reasonlens.interp.errors import InterpError
from reasonlens.interp.hooks import SitePatch, capture, intervene
from reasonlens.interp.results import PatchResult, load_results, save_results
from reasonlens.interp.sites import Alias, SiteInfo, probe_sites
from reasonlens.interp.spec import Intervention, format_spec, parse_spec, validate
from reasonlens.interp.sweep import Experiment, apply, run_sweep

# Probes and SAEs load on first use: sae_lens (optional) is imported only inside the SAE functions.
_LAZY = {
    "ProbeResult": "probe",
    "probe_sweep": "probe",
    "train_probe": "probe",
    "SAETrainingSettings": "sae",
    "classify_features": "sae",
    "encode_features": "sae",
    "feature_statistics": "sae",
    "load_sae": "sae",
    "train_sae": "sae",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"reasonlens.interp.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'reasonlens.interp' has no attribute {name!r}")


__all__ = [
    "ActivationCache",
    "Alias",
    "Experiment",
    "InterpError",
    "Intervention",
    "PatchResult",
    "ProbeResult",
    "SAETrainingSettings",
    "SiteInfo",
    "SitePatch",
    "apply",
    "capture",
    "classify_features",
    "encode_features",
    "feature_statistics",
    "format_spec",
    "intervene",
    "load_results",
    "load_sae",
    "parse_spec",
    "probe_sites",
    "probe_sweep",
    "run_sweep",
    "save_results",
    "train_probe",
    "train_sae",
    "validate",
]
