"""Checkpoints of the HRM family: our run-directory format, and the official format in and out.

**Ours** — a run directory holding ``model.safetensors`` (the ACT model's state dict: ``inner.*``) and
``config.yaml`` (``arch``, ``model`` = the model config, plus whatever run config the trainer adds).

**Official** (sapientinc/HRM, TinyRecursiveModels, the Hugging Face ``HRM-checkpoint-*`` repos) — a
folder with a weight file (``checkpoint`` or ``step_N``: a raw ``torch.save`` of the loss head's
state dict, keys ``_orig_mod.model.inner.*`` when compiled, ``model.inner.*`` otherwise) and
``all_config.yaml`` (the training config; the model fields live under ``arch``). ``vocab_size``,
``num_puzzle_identifiers`` and ``seq_len`` are not in that file: the first two are read off the
weights, ``seq_len`` comes from the dataset's ``dataset.json``, the ``seq_len`` argument, or the
learned position table.

Every ``torch.load`` here uses ``weights_only=True``. Weights that do not fit the config stop with
:class:`CheckpointError` naming the first mismatching keys and shapes.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from reasonlens.hrm.models.baselines import TransformerACT
from reasonlens.hrm.models.config import ConfigError
from reasonlens.hrm.models.hrm_act_v1 import ACTModel, HRMACTv1
from reasonlens.hrm.models.study_variants import STUDY_DEFAULTS, HRMACTv1Study, build_hrm
from reasonlens.hrm.models.trm import TRM
from reasonlens.utils.errors import UserInputError
from reasonlens.utils.io import load_safetensors, read_yaml, save_safetensors, torch_save_atomic, write_yaml

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.yaml"
OPTIMIZER_FILE = "optimizer.pt"
OFFICIAL_CONFIG_FILE = "all_config.yaml"
OFFICIAL_WEIGHT_FILE = "checkpoint"

# arch name -> how to build it from a model config (HRM: the official class, or its study variant)
ARCHS: dict[str, Callable[[dict], ACTModel]] = {"hrm_act_v1": build_hrm, "trm": TRM, "transformer_act": TransformerACT}
ARCH_OF_CLASS: dict[type[ACTModel], str] = {
    HRMACTv1: "hrm_act_v1",
    HRMACTv1Study: "hrm_act_v1",
    TRM: "trm",
    TransformerACT: "transformer_act",
}

# official "module@Class" names ↔ our arch names
OFFICIAL_ARCH_NAMES = {
    "hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1": "hrm_act_v1",
    "recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1": "trm",
    "recursive_reasoning.transformers_baseline@Model_ACTV2": "transformer_act",
}
EXPORT_ARCH_NAMES = {ours: official for official, ours in OFFICIAL_ARCH_NAMES.items()}

# config fields the official trainer fills from the dataset / world size, never from ``arch``
_DATASET_FIELDS = ("batch_size", "seq_len", "vocab_size", "num_puzzle_identifiers")

# the official cfg_pretrain.yaml defaults, used to make an exported all_config.yaml loadable upstream
_OFFICIAL_TRAIN_DEFAULTS = {
    "data_path": "data/sudoku-extreme-1k-aug-1000",
    "global_batch_size": 768,
    "epochs": 20000,
    "eval_interval": 2000,
    "checkpoint_every_eval": True,
    "lr": 1e-4,
    "lr_min_ratio": 1.0,
    "lr_warmup_steps": 2000,
    "beta1": 0.9,
    "beta2": 0.95,
    "weight_decay": 1.0,
    "puzzle_emb_weight_decay": 1.0,
    "puzzle_emb_lr": 1e-4,
    "seed": 0,
    "eval_save_outputs": [],
    "project_name": None,
    "run_name": None,
    "checkpoint_path": None,
}


class CheckpointError(UserInputError):
    """A checkpoint is missing, malformed, or does not fit the model config."""


def model_arch(model: ACTModel) -> str:
    if type(model) not in ARCH_OF_CLASS:
        raise CheckpointError(f"no checkpoint arch registered for {type(model).__name__}; known: {', '.join(ARCHS)}")
    return ARCH_OF_CLASS[type(model)]


def build_model(arch: str, model_config: dict) -> ACTModel:
    if arch not in ARCHS:
        raise CheckpointError(f"unknown arch {arch!r}; allowed: {', '.join(ARCHS)}")
    return ARCHS[arch](model_config)


# --------------------------------------------------------------------------------------------
# Our format


def save_checkpoint(
    model: ACTModel,
    run_dir: str | os.PathLike,
    run_config: dict | None = None,
    optimizers: list[torch.optim.Optimizer] | None = None,
    train_state: dict | None = None,
) -> Path:
    """Write ``model.safetensors`` and ``config.yaml`` (arch, model config, ``run_config``) into ``run_dir``;
    with ``optimizers`` also ``optimizer.pt`` (their state dicts + ``train_state``, e.g. step and RNG) for
    resuming. Each file is written atomically."""
    run_dir = Path(run_dir)
    arch = model_arch(model)
    save_safetensors(run_dir / MODEL_FILE, model.state_dict(), metadata={"arch": arch, "format": "reasonlens-hrm"})
    config = {"arch": arch, "model": model.config.model_dump(), **(run_config or {})}
    write_yaml(run_dir / CONFIG_FILE, config)
    if optimizers is not None:
        payload = {"optimizers": [opt.state_dict() for opt in optimizers], "train_state": train_state or {}}
        torch_save_atomic(payload, run_dir / OPTIMIZER_FILE)
    return run_dir


def load_optimizer_state(run_dir: str | os.PathLike, optimizers: list[torch.optim.Optimizer]) -> dict:
    """Restore the optimizers saved by :func:`save_checkpoint` (same order); return the saved ``train_state``."""
    path = Path(run_dir) / OPTIMIZER_FILE
    if not path.is_file():
        raise CheckpointError(f"no optimizer state to resume from: {path} does not exist")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    saved = payload["optimizers"]
    if len(saved) != len(optimizers):
        raise CheckpointError(f"{path} holds {len(saved)} optimizer states, {len(optimizers)} optimizers given")
    for optimizer, state in zip(optimizers, saved):
        optimizer.load_state_dict(state)
    return payload["train_state"]


def _load_ours(weights_path: Path, config_path: Path, device, overrides: dict) -> ACTModel:
    if not config_path.is_file():
        raise CheckpointError(f"{weights_path} has no {CONFIG_FILE} beside it (expected {config_path})")
    config = read_yaml(config_path)
    if not isinstance(config, dict) or "model" not in config or "arch" not in config:
        raise CheckpointError(f"{config_path} must hold 'arch' and 'model' keys (a reasonlens run config)")
    model = build_model(config["arch"], {**config["model"], **overrides})
    state = load_safetensors(weights_path)
    load_state_dict_checked(model, state, source=str(weights_path))
    return model.to(device)


# --------------------------------------------------------------------------------------------
# Official format


def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``_orig_mod.model.inner.x`` / ``model.inner.x`` / ``inner.x`` → ``inner.x``."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("_orig_mod.").removeprefix("model.")
        out[key] = value
    return out


def _find_official_weights(folder: Path) -> Path:
    if (folder / OFFICIAL_WEIGHT_FILE).is_file():
        return folder / OFFICIAL_WEIGHT_FILE
    steps = [p for p in folder.iterdir() if re.fullmatch(r"step_\d+", p.name) and p.is_file()]
    if steps:
        return max(steps, key=lambda p: int(p.name.split("_")[1]))
    raise CheckpointError(
        f"{folder} has {OFFICIAL_CONFIG_FILE} but no '{OFFICIAL_WEIGHT_FILE}' or 'step_N' weight file"
    )


def _seq_len_from_dataset(data_path: str | os.PathLike | None, near: Path) -> int | None:
    if not data_path:
        return None
    for base in (Path(data_path), near / data_path, Path.cwd() / data_path):
        meta = base / "train" / "dataset.json"
        if meta.is_file():
            return int(json.loads(meta.read_text())["seq_len"])
    return None


def load_official_checkpoint(
    path: str | os.PathLike,
    *,
    seq_len: int | None = None,
    data_path: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    **overrides: Any,
) -> ACTModel:
    """Load an official HRM/TRM checkpoint folder (or its weight file) into our model class."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    weights_path = _find_official_weights(folder) if path.is_dir() else path
    config_path = folder / OFFICIAL_CONFIG_FILE
    if not config_path.is_file():
        raise CheckpointError(
            f"official checkpoint needs {OFFICIAL_CONFIG_FILE} beside the weights; not found in {folder}"
        )
    all_config = read_yaml(config_path) or {}
    arch_section = dict(all_config.get("arch") or {})
    official_name = arch_section.pop("name", "hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1")
    if official_name not in OFFICIAL_ARCH_NAMES:
        raise CheckpointError(
            f"unsupported arch {official_name!r} in {config_path}; supported: {', '.join(OFFICIAL_ARCH_NAMES)}"
        )
    arch = OFFICIAL_ARCH_NAMES[official_name]
    arch_section.pop("loss", None)
    arch_section.pop("causal", None)

    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors, truncated files, non-tensor payloads
        raise CheckpointError(f"could not read {weights_path} as a weights-only torch checkpoint: {err}") from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{weights_path} is not a state dict of tensors")
    state = _strip_prefixes(state)

    model_config = {k: v for k, v in arch_section.items() if k not in _DATASET_FIELDS}
    if "inner.embed_tokens.embedding_weight" not in state:
        raise CheckpointError(f"{weights_path} has no 'embed_tokens.embedding_weight'; is it an HRM-family checkpoint?")
    hidden = state["inner.embed_tokens.embedding_weight"].shape[1]
    model_config["vocab_size"] = state["inner.embed_tokens.embedding_weight"].shape[0]
    if "inner.puzzle_emb.weights" in state:
        num_ids, ndim = state["inner.puzzle_emb.weights"].shape
        model_config["num_puzzle_identifiers"] = num_ids
        model_config["puzzle_emb_ndim"] = ndim
    elif isinstance(model_config.get("puzzle_emb_ndim"), str):  # unresolved "${.hidden_size}"
        model_config["puzzle_emb_ndim"] = 0
    extra = all_config.get("reasonlens") or {}
    seq_len = seq_len or extra.get("seq_len") or _seq_len_from_dataset(data_path or all_config.get("data_path"), folder)
    if seq_len is None and "inner.embed_pos.embedding_weight" in state:
        positions = state["inner.embed_pos.embedding_weight"].shape[0]
        prefix = -(-model_config.get("puzzle_emb_ndim", 0) // hidden)
        if arch == "trm":
            prefix = model_config.get("puzzle_emb_len", 16) or prefix
        seq_len = positions - prefix
    if seq_len is None:
        raise CheckpointError(
            f"seq_len of {weights_path} is unknown: all_config.yaml's data_path "
            f"({all_config.get('data_path')!r}) has no train/dataset.json here; pass seq_len=... or data_path=..."
        )
    model_config["seq_len"] = int(seq_len)
    model_config["batch_size"] = int(extra.get("batch_size") or all_config.get("global_batch_size") or 1)
    model_config.update(overrides)
    try:
        model = build_model(arch, model_config)
    except ConfigError as err:
        raise CheckpointError(f"{config_path}: {err}") from None
    load_state_dict_checked(model, state, source=str(weights_path))
    return model.to(device)


def export_official_checkpoint(
    model: ACTModel,
    out_dir: str | os.PathLike,
    *,
    compiled_prefix: bool = True,
    loss_type: str = "stablemax_cross_entropy",
    train_config: dict | None = None,
    weight_file: str = OFFICIAL_WEIGHT_FILE,
) -> Path:
    """Write ``out_dir/checkpoint`` (+ ``all_config.yaml``) in the official layout, loadable by the
    official ``evaluate.py`` (keys ``_orig_mod.model.inner.*`` unless ``compiled_prefix=False``)."""
    out_dir = Path(out_dir)
    arch = model_arch(model)
    prefix = "_orig_mod.model." if compiled_prefix else "model."
    state = {prefix + k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    torch_save_atomic(state, out_dir / weight_file)

    fields = model.config.model_dump()
    arch_section = {"name": EXPORT_ARCH_NAMES[arch], "loss": {"name": "losses@ACTLossHead", "loss_type": loss_type}}
    arch_section.update({k: v for k, v in fields.items() if k not in (*_DATASET_FIELDS, "causal", *STUDY_DEFAULTS)})
    config = {"arch": arch_section, **_OFFICIAL_TRAIN_DEFAULTS, **(train_config or {})}
    # ignored by the official PretrainConfig, read back by load_official_checkpoint
    config["reasonlens"] = {k: fields[k] for k in _DATASET_FIELDS} | {"arch": arch}
    write_yaml(out_dir / OFFICIAL_CONFIG_FILE, config)
    return out_dir


# --------------------------------------------------------------------------------------------
# Entry point and checks


def load_checkpoint(
    path: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    seq_len: int | None = None,
    data_path: str | os.PathLike | None = None,
    **overrides: Any,
) -> ACTModel:
    """Load any HRM-family checkpoint: our run directory / ``model.safetensors``, or an official folder
    / weight file. ``overrides`` replace model-config fields (e.g. ``forward_dtype="float32"`` on CPU,
    ``halt_max_steps=32`` for inference-time scaling)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        if (path / MODEL_FILE).is_file():
            return _load_ours(path / MODEL_FILE, path / CONFIG_FILE, device, overrides)
        if (path / OFFICIAL_CONFIG_FILE).is_file():
            return load_official_checkpoint(path, seq_len=seq_len, data_path=data_path, device=device, **overrides)
        raise CheckpointError(
            f"{path} is neither a reasonlens run directory ({MODEL_FILE} + {CONFIG_FILE}) nor an official "
            f"checkpoint folder ({OFFICIAL_CONFIG_FILE} + '{OFFICIAL_WEIGHT_FILE}' or 'step_N')"
        )
    if path.suffix == ".safetensors":
        return _load_ours(path, path.parent / CONFIG_FILE, device, overrides)
    return load_official_checkpoint(path, seq_len=seq_len, data_path=data_path, device=device, **overrides)


def load_state_dict_checked(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """``load_state_dict(strict=True)`` with one readable error naming the first mismatches."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            parts.append("shape mismatches: " + "; ".join(shapes[:5]))
        if missing:
            parts.append(f"missing keys ({len(missing)}): " + ", ".join(missing[:5]))
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): " + ", ".join(unexpected[:5]))
        raise CheckpointError(f"{source} does not fit the model config — " + " | ".join(parts))
    model.load_state_dict(state, strict=True)


# --------------------------------------------------------------------------------------------
# Transfer: initialise a model from another task's checkpoint


def transfer_weights(model: ACTModel, source: str | os.PathLike, include: list[str] | tuple[str, ...] = ()) -> dict:
    """Copy into ``model`` every tensor of the checkpoint ``source`` (any format :func:`load_checkpoint`
    reads) that has the same name and shape — or, with ``include``, only those under these module
    paths (``inner.H_level``, ``inner.L_level``, ...). The rest keeps its fresh initialisation; a Sudoku
    checkpoint's token embedding and LM head, sized by its vocabulary, do not fit a maze model.

    Returns ``{"source", "include", "copied": [names], "parameters_copied", "kept": {name: why}}``; fails
    when nothing of a reasoning module (or of a module in ``include``) fits.
    """
    modules = {name for name, _ in model.named_modules() if name}
    for prefix in include:
        if prefix not in modules:
            shallow = sorted(name for name in modules if name.count(".") <= 1)
            raise CheckpointError(f"init_include: no module {prefix!r} in the model; modules: {', '.join(shallow)}")
    source_state = load_checkpoint(source, device="cpu").state_dict()
    target_state = model.state_dict()
    parameter_names = {name for name, _ in model.named_parameters()}
    copied, kept, parameters = [], {}, 0
    with torch.no_grad():
        for name, tensor in target_state.items():
            if include and not any(name.startswith(prefix + ".") for prefix in include):
                kept[name] = "not included"
            elif name not in source_state:
                kept[name] = "not in the source"
            elif source_state[name].shape != tensor.shape:
                kept[name] = f"shape {tuple(source_state[name].shape)} in the source vs {tuple(tensor.shape)}"
            else:
                tensor.copy_(source_state[name].to(tensor.dtype))
                copied.append(name)
                parameters += tensor.numel() if name in parameter_names else 0
    # the point of a transfer is the reasoning modules (or the modules asked for): each must arrive
    for prefix in include or [m for m in ("inner.H_level", "inner.L_level") if m in modules]:
        if not any(name.startswith(prefix + ".") for name in copied):
            why = next((f"{k}: {v}" for k, v in kept.items() if k.startswith(prefix + ".")), "no tensors")
            raise CheckpointError(
                f"init_from {source}: nothing of {prefix} fits this model ({why}); "
                "the source needs the same architecture and sizes"
            )
    return {
        "source": str(source),
        "include": list(include),
        "copied": copied,
        "parameters_copied": parameters,
        "kept": kept,
    }
