"""Sparse autoencoders on an activation matrix, trained and stored with SAELens itself
(:func:`train_sae`, :func:`load_sae`, :func:`encode_features`), and the statistics read off any
``(rows, features)`` matrix (:func:`feature_statistics`, :func:`classify_features`): which features fire
on which groups of rows. On disk an SAE is SAELens's folder (``cfg.json`` + ``sae_weights.safetensors``,
loadable with ``sae_lens.SAE.load_from_disk``) plus our ``stats.json``.

SAELens is optional (``pip install -e ".[sae]"``) and imported only inside the functions that need it;
it imports wandb, which is kept off (``WANDB_MODE=disabled`` unless set) and never logged to.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace

import torch

from reasonlens.interp.errors import InterpError
from reasonlens.utils.io import atomic_directory, write_json

NORMALISE = ("expected_average_only_in", "none", "covariance_whitening")
MIN_ROWS = 16
CFG_FILE = "cfg.json"  # SAELens's names
WEIGHTS_FILE = "sae_weights.safetensors"
STATS_FILE = "stats.json"


def _sae_lens() -> SimpleNamespace:
    """The SAELens classes used here, imported with wandb kept offline; a clear error when absent."""
    os.environ.setdefault("WANDB_MODE", "disabled")
    os.environ.setdefault("WANDB_SILENT", "true")
    try:
        import sae_lens  # optional, stays lazy; imported first, it fails cleanly when absent
        from sae_lens.config import LoggingConfig, SAETrainerConfig
        from sae_lens.saes.sae import SAEMetadata
    except ImportError as err:
        raise InterpError(f'SAEs need sae_lens ({err}); install it with: pip install -e ".[sae]"') from err
    return SimpleNamespace(
        SAE=sae_lens.SAE,
        SAETrainer=sae_lens.SAETrainer,
        StandardTrainingSAE=sae_lens.StandardTrainingSAE,
        StandardTrainingSAEConfig=sae_lens.StandardTrainingSAEConfig,
        SAETrainerConfig=SAETrainerConfig,
        LoggingConfig=LoggingConfig,
        SAEMetadata=SAEMetadata,
    )


# -- settings and inputs ------------------------------------------------------------------------


@dataclass
class SAETrainingSettings:
    """``d_sae`` wins over ``expansion_factor`` (``d_sae = expansion_factor * d_in``). ``normalise``
    is SAELens's ``normalize_activations``: "expected_average_only_in" rescales inputs to mean norm
    √d_in (so ``l1_coefficient`` does not depend on the activation scale), "covariance_whitening"
    whitens them, "none" leaves them; either way it is folded into the saved weights. ``batch_size``
    is capped at the number of training rows."""

    d_sae: int | None = None
    expansion_factor: int = 4
    l1_coefficient: float = 1.0
    l1_warm_up_steps: int = 0
    lr: float = 3e-3
    lr_warm_up_steps: int = 0
    lr_decay_steps: int = 0
    steps: int = 1000
    batch_size: int = 128
    eval_fraction: float = 0.1
    normalise: str = "expected_average_only_in"
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self):
        if self.normalise not in NORMALISE:
            raise InterpError(f"unknown normalise {self.normalise!r}; allowed: {list(NORMALISE)}")
        if not 0.0 < self.eval_fraction < 1.0:
            raise InterpError(f"eval_fraction must be in (0, 1); got {self.eval_fraction}")
        for name in ("expansion_factor", "steps", "batch_size"):
            if getattr(self, name) < 1:
                raise InterpError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.d_sae is not None and self.d_sae < 1:
            raise InterpError(f"d_sae must be >= 1; got {self.d_sae}")
        if self.l1_coefficient < 0 or self.lr <= 0:
            raise InterpError(f"need l1_coefficient >= 0 and lr > 0; got {self.l1_coefficient}, {self.lr}")
        if self.lr_warm_up_steps + self.lr_decay_steps > self.steps:
            raise InterpError("lr_warm_up_steps + lr_decay_steps must not exceed steps")

    def width(self, d_in: int) -> int:
        return self.d_sae if self.d_sae is not None else self.expansion_factor * d_in


def _describe(x) -> str:
    return f"{tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__


def _check_activations(activations, d_in: int | None = None) -> torch.Tensor:
    if not isinstance(activations, torch.Tensor) or activations.ndim != 2 or not activations.is_floating_point():
        got = _describe(activations)
        raise InterpError(f"SAE activations must be a 2-D float tensor (rows, d_in); got {got}")
    if d_in is not None and activations.shape[1] != d_in:
        raise InterpError(f"activations have {activations.shape[1]} dims; the SAE expects d_in={d_in}")
    if not torch.isfinite(activations).all():
        raise InterpError("SAE activations contain NaN or inf")
    return activations.detach().float()


def _split_rows(n: int, eval_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    if n < MIN_ROWS:
        raise InterpError(f"too few rows to train an SAE: {n} (need >= {MIN_ROWS})")
    n_eval = max(1, round(n * eval_fraction))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[n_eval:], order[:n_eval]


def _batches(rows: torch.Tensor, batch_size: int, seed: int):
    """SAELens's DataProvider: an endless iterator of (batch_size, d_in) batches, reshuffled every epoch."""
    generator = torch.Generator().manual_seed(seed)
    queue = torch.empty(0, dtype=torch.long)
    while True:
        while len(queue) < batch_size:
            queue = torch.cat([queue, torch.randperm(len(rows), generator=generator)])
        index, queue = queue[:batch_size], queue[batch_size:]
        yield rows[index]


# -- training, evaluation, storage --------------------------------------------------------------


def train_sae(
    activations: torch.Tensor,
    settings: SAETrainingSettings | None = None,
    hook_name: str = "activations",
    out_dir: str | os.PathLike | None = None,
):
    """Train a standard SAE on ``activations (rows, d_in)`` with SAELens's ``SAETrainer``; rows are
    split (seeded) into training and held-out evaluation rows. Returns ``(sae, stats)``: the SAELens
    inference SAE and ``{"explained_variance", "mse", "l0", "dead_fraction", "n_train", "n_eval",
    "d_in", "d_sae"}`` measured on the held-out rows (see :func:`evaluate_sae`). ``hook_name`` goes
    into the SAE's metadata. With ``out_dir``, the SAE (SAELens layout) and ``stats.json`` are written
    there atomically, replacing an SAE folder already there. Deterministic on CPU given the seed.

    The tensor goes to SAELens's trainer through a seeded batch iterator (its ``DataProvider`` is just
    an iterator of activation batches: no model, no ``ActivationsStore``) training a
    ``StandardTrainingSAE`` (ReLU encoder, L1 penalty weighted by decoder norms). SAELens's input
    normalisation is folded into the weights at the end, so the returned ``StandardSAE`` takes raw
    activations."""
    settings = settings or SAETrainingSettings()
    sl = _sae_lens()
    x = _check_activations(activations)
    train_rows, eval_rows = _split_rows(len(x), settings.eval_fraction, settings.seed)
    x_train, x_eval = x[train_rows], x[eval_rows]
    batch_size = min(settings.batch_size, len(x_train))
    d_in, d_sae = x.shape[1], settings.width(x.shape[1])

    cfg = sl.StandardTrainingSAEConfig(
        d_in=d_in,
        d_sae=d_sae,
        l1_coefficient=settings.l1_coefficient,
        l1_warm_up_steps=settings.l1_warm_up_steps,
        normalize_activations=settings.normalise,
        device=settings.device,
        metadata=sl.SAEMetadata(hook_name=hook_name),
    )
    trainer_cfg = sl.SAETrainerConfig(
        total_training_samples=settings.steps * batch_size,
        train_batch_size_samples=batch_size,
        lr=settings.lr,
        lr_end=settings.lr,  # SAETrainer asserts lr_end is set; only LanguageModelSAERunnerConfig defaults it
        lr_warm_up_steps=settings.lr_warm_up_steps,
        lr_decay_steps=settings.lr_decay_steps,
        device=settings.device,
        logger=sl.LoggingConfig(log_to_wandb=False),
        # the normalisation statistics are estimated from about one epoch of training batches
        n_batches_for_norm_estimate=min(1000, math.ceil(len(x_train) / batch_size)),
    )
    with torch.random.fork_rng(devices=[]):  # SAE initialisation draws from the global RNG
        torch.manual_seed(settings.seed)
        training_sae = sl.StandardTrainingSAE(cfg)
        trainer = sl.SAETrainer(
            cfg=trainer_cfg, sae=training_sae, data_provider=_batches(x_train, batch_size, settings.seed + 1)
        )
        trainer.fit()
        sae = sl.SAE.from_dict(training_sae.cfg.get_inference_sae_cfg_dict())
    sae.load_state_dict(training_sae.state_dict())
    sae.eval()

    stats = {**evaluate_sae(sae, x_eval), "n_train": len(x_train), "n_eval": len(x_eval), "d_in": d_in, "d_sae": d_sae}
    if out_dir is not None:
        save_sae(sae, out_dir, {**stats, "hook_name": hook_name, "settings": asdict(settings)})
    return sae, stats


@torch.no_grad()
def evaluate_sae(sae, activations: torch.Tensor) -> dict[str, float]:
    """Reconstruction and sparsity on ``activations``: explained_variance = 1 - Σ|x - x̂|² / Σ|x - x̄|²
    (x̄ the mean row), mse = mean squared error per element, l0 = mean number of active (> 0)
    features per row, dead_fraction = share of features active on no row."""
    x = _check_activations(activations, sae.cfg.d_in).to(sae.device)
    features = sae.encode(x)
    error = (sae.decode(features) - x).pow(2)
    total = (x - x.mean(0)).pow(2).sum()
    return {
        "explained_variance": float(1 - error.sum() / total) if total > 0 else 0.0,
        "mse": float(error.mean()),
        "l0": float((features > 0).float().sum(1).mean()),
        "dead_fraction": dead_fraction(features),
    }


def dead_fraction(features: torch.Tensor, threshold: float = 0.0) -> float:
    """Share of feature columns that are never above ``threshold`` on any row of ``(rows, features)``."""
    if features.ndim != 2 or features.shape[1] == 0:
        raise InterpError(f"features must be a 2-D (rows, features) tensor; got shape {tuple(features.shape)}")
    return float((features > threshold).sum(0).eq(0).double().mean())


def save_sae(sae, out_dir: str | os.PathLike, stats: dict | None = None) -> Path:
    """Write ``sae`` in SAELens's layout (+ ``stats.json``) into a temporary sibling folder and rename it
    to ``out_dir``. An existing ``out_dir`` is replaced only if it is empty or a folder reasonlens made."""
    with atomic_directory(out_dir, "sparse autoencoder") as tmp:
        sae.save_model(tmp)
        if stats is not None:
            write_json(tmp / STATS_FILE, stats)
    out_dir = Path(out_dir)
    return out_dir


def load_sae(path: str | os.PathLike, device: str = "cpu"):
    """The SAELens inference SAE stored in ``path`` (a folder written by :func:`train_sae` or SAELens)."""
    path = Path(path)
    missing = [name for name in (CFG_FILE, WEIGHTS_FILE) if not (path / name).is_file()]
    if missing:
        raise InterpError(f"{path} is not an SAE folder: missing {missing}")
    sae = _sae_lens().SAE.load_from_disk(path, device=device)
    sae.eval()
    return sae


@torch.no_grad()
def encode_features(sae, activations: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """Feature activations ``(rows, d_sae)`` (on the CPU) of ``activations (rows, d_in)``, in batches."""
    x = _check_activations(activations, sae.cfg.d_in)
    parts = [sae.encode(x[i : i + batch_size].to(sae.device)).cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(parts) if parts else torch.zeros(0, sae.cfg.d_sae)


# -- which features fire where ------------------------------------------------------------------


def _group_masks(groups, n: int) -> dict[str, torch.Tensor]:
    """``{name: bool mask (rows,)}`` from such a dict or from one label per row (a group per value)."""
    if not isinstance(groups, dict):
        labels = groups.tolist() if isinstance(groups, torch.Tensor) else list(groups)
        if len(labels) != n:
            raise InterpError(f"groups as labels need one label per row ({n}); got {len(labels)}")
        groups = {str(v): torch.tensor([label == v for label in labels]) for v in sorted(set(labels), key=str)}
    masks = {}
    for name, mask in groups.items():
        mask = torch.as_tensor(mask)
        if mask.dtype != torch.bool or mask.shape != (n,):
            raise InterpError(f"group {name!r} must be a bool mask of shape ({n},); got {_describe(mask)}")
        if not mask.any():
            raise InterpError(f"group {name!r} selects no rows")
        masks[str(name)] = mask
    if not masks:
        raise InterpError("no groups given")
    return masks


def feature_statistics(features: torch.Tensor, groups, threshold: float = 0.0, top_k: int = 10) -> dict:
    """Per-feature statistics of ``features (rows, F)`` over groups of rows. ``groups`` is
    ``{name: bool mask (rows,)}`` (groups may overlap) or one label per row (a group per distinct
    value, named ``str(value)``). A feature fires on a row when its activation is > ``threshold``.

    Returns ``{"groups", "n_rows": {g: rows}, "frequency": {g: (F,)} (share of the group's rows it
    fires on), "mean_activation": {g: (F,)} (over all the group's rows, zeros included),
    "frequency_all", "mean_activation_all", "top_rows": (F, k) and "top_values": (F, k)}`` where
    ``top_rows[f]`` are the ``k = min(top_k, rows)`` row indices with the largest activations of f."""
    if not isinstance(features, torch.Tensor) or features.ndim != 2:
        raise InterpError("features must be a 2-D (rows, features) tensor")
    features = features.detach().float().cpu()
    masks = _group_masks(groups, len(features))
    fires = (features > threshold).float()
    top = features.topk(min(top_k, len(features)), dim=0)
    return {
        "groups": list(masks),
        "n_rows": {g: int(m.sum()) for g, m in masks.items()},
        "frequency": {g: fires[m].mean(0) for g, m in masks.items()},
        "mean_activation": {g: features[m].mean(0) for g, m in masks.items()},
        "frequency_all": fires.mean(0),
        "mean_activation_all": features.mean(0),
        "top_rows": top.indices.T.contiguous(),
        "top_values": top.values.T.contiguous(),
    }


def classify_features(
    stats: dict,
    specific_min: float = 0.2,
    others_max: float = 0.02,
    stable_min: float = 0.02,
    stable_ratio: float = 2.0,
) -> dict:
    """Sort features by where they fire, from :func:`feature_statistics` output (≥ 2 groups):

    - ``specific[g]``: fires on ≥ ``specific_min`` of group g's rows and ≤ ``others_max`` of every
      other group's rows (defaults 20 % vs 2 %);
    - ``stable``: fires on ≥ ``stable_min`` of every group's rows, and the highest group rate is at
      most ``stable_ratio`` × the lowest (defaults 2 %, 2×);
    - ``dead``: fires on no row of any group;
    - ``mixed``: everything else.

    Returns ``{"specific": {g: [feature ids]}, "stable", "mixed", "dead": [ids], "counts": {...,
    "specific_per_group": {g: n}}, "thresholds": {...}}``."""
    groups = stats["groups"]
    if len(groups) < 2:
        raise InterpError(f"classifying features needs at least 2 groups; got {groups}")
    if not 0 <= others_max < specific_min <= 1:
        raise InterpError(f"need 0 <= others_max < specific_min <= 1; got {others_max}, {specific_min}")
    if stable_min <= 0 or stable_ratio < 1:
        raise InterpError(f"need stable_min > 0 and stable_ratio >= 1; got {stable_min}, {stable_ratio}")
    rates = torch.stack([stats["frequency"][g] for g in groups])  # (groups, F)

    specific = {}
    for i, g in enumerate(groups):
        others = torch.cat([rates[:i], rates[i + 1 :]])
        hit = (rates[i] >= specific_min) & (others <= others_max).all(0)
        specific[g] = hit.nonzero().flatten().tolist()
    low, high = rates.min(0).values, rates.max(0).values
    taken = set().union(*map(set, specific.values()))
    stable_mask = (low >= stable_min) & (high <= stable_ratio * low)
    stable_mask[list(taken)] = False  # only possible with unusual thresholds; keep the classes disjoint
    dead_mask = high == 0
    stable = stable_mask.nonzero().flatten().tolist()
    dead = dead_mask.nonzero().flatten().tolist()
    mixed = [f for f in range(rates.shape[1]) if f not in taken and not stable_mask[f] and not dead_mask[f]]
    return {
        "specific": specific,
        "stable": stable,
        "mixed": mixed,
        "dead": dead,
        "counts": {
            "specific": len(taken),
            "stable": len(stable),
            "mixed": len(mixed),
            "dead": len(dead),
            "specific_per_group": {g: len(ids) for g, ids in specific.items()},
        },
        "thresholds": {
            "specific_min": specific_min,
            "others_max": others_max,
            "stable_min": stable_min,
            "stable_ratio": stable_ratio,
        },
    }
