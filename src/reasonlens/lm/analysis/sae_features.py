"""Sparse autoencoders on a GPT-2's residual stream and what their features respond to.

The SAE (SAELens's standard L1 SAE via ``reasonlens.interp.sae``; weights + ``cfg.json`` in the SAELens
layout) is trained on the residual stream after block ``sae_layer`` of **ID** prompts — every real
token (``sae_positions="all"``) or only ``Answer:`` (``"final"``). Reported: explained variance, L0 and
the dead-feature fraction on held-out rows. Then every analysed split is encoded at ``Answer:`` and:

- per feature, its firing rate per distribution → ID-specific features (fire on ID, silent on an OOD
  set), OOD-specific ones, and OOD-stable ones (similar rates everywhere), see ``classify_features``;
- per feature, its firing rate per rule family and per answer on ID prompts, and the rules and cards of
  its top-activating prompts — which rules / card patterns activate it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from reasonlens.interp.sae import SAETrainingSettings, classify_features, encode_features, feature_statistics, train_sae
from reasonlens.lm.analysis.hooks import PromptSet, cache_activations
from reasonlens.lm.analysis.probing import analysis_splits
from reasonlens.lm.config.analysis_config import AnalysisConfig
from reasonlens.lm.errors import LMError
from reasonlens.utils.io import write_json


def _examples(datasets, split: str, n: int) -> list[dict]:
    return list(datasets[split].select(range(min(n, len(datasets[split])))))


def sae_training_activations(model, tokenizer, examples: list[dict], site: str, positions: str, batch_size: int):
    prompts = PromptSet.build(tokenizer, examples, model.cfg.n_ctx)
    if positions == "final":
        return cache_activations(model, prompts, [site], ["final"], batch_size)[(site, "final")]
    acts = cache_activations(model, prompts, [site], ["all"], batch_size)[(site, "all")]
    return acts[prompts.attention_mask.bool()]  # real tokens only, (tokens, d)


def run_sae_analysis(model, tokenizer, datasets, config: AnalysisConfig, out_dir) -> dict:
    config = AnalysisConfig.from_dict(config)
    layer = model.cfg.n_layers - 1 if config.sae_layer is None else config.sae_layer
    if not 0 <= layer < model.cfg.n_layers:
        raise LMError(f"sae_layer {layer} does not exist; the model has layers 0..{model.cfg.n_layers - 1}")
    site = f"blocks.{layer}.hook_resid_post"
    out_dir = Path(out_dir)
    source = "train" if "train" in datasets else "test"
    train_examples = _examples(datasets, source, config.max_examples)
    activations = sae_training_activations(
        model, tokenizer, train_examples, site, config.sae_positions, config.batch_size
    )
    settings = SAETrainingSettings(
        expansion_factor=config.sae_expansion,
        l1_coefficient=config.sae_l1,
        steps=config.sae_steps,
        lr=config.sae_lr,
        seed=config.seed,
        device=config.device,
    )
    sae, stats = train_sae(activations, settings, hook_name=site, out_dir=out_dir / "sae")

    splits = analysis_splits(datasets, config)
    features, groups, examples = [], [], []
    for split in splits:
        rows = _examples(datasets, split, config.max_examples)
        prompts = PromptSet.build(tokenizer, rows, model.cfg.n_ctx)
        acts = cache_activations(model, prompts, [site], ["final"], config.batch_size)[(site, "final")]
        features.append(encode_features(sae, acts).cpu())
        groups += [split] * len(rows)
        examples += rows
    features = torch.cat(features)
    by_split = feature_statistics(features, groups)
    classes = classify_features(by_split)
    id_rows = torch.tensor([g == splits[0] for g in groups])
    id_features = features[id_rows]
    id_examples = [e for e, keep in zip(examples, id_rows.tolist()) if keep]
    by_family = feature_statistics(id_features, [e["family"] for e in id_examples])
    by_label = feature_statistics(id_features, [e["label"] for e in id_examples])
    report = {
        "site": site,
        "trained_on": {
            "split": source,
            "prompts": len(train_examples),
            "positions": config.sae_positions,
            "rows": activations.shape[0],
        },
        "sae": stats,
        "splits": splits,
        "classes": {k: v for k, v in classes.items() if k != "mixed"},
        "frequency_by_split": {g: by_split["frequency"][g].tolist() for g in by_split["groups"]},
        "features": describe_features(features, by_split, by_family, by_label, examples, groups),
    }
    write_json(out_dir / "sae_features.json", report)
    return report


def describe_features(
    features, by_split, by_family, by_label, examples, groups, top: int = 20, k: int = 3
) -> list[dict]:
    """The ``top`` most frequently firing features: rates per split, family and answer, and top prompts."""
    order = torch.argsort(by_split["frequency_all"], descending=True)[:top]
    out = []
    for f in order.tolist():
        rows = torch.argsort(features[:, f], descending=True)[:k].tolist()
        out.append(
            {
                "feature": f,
                "frequency": float(by_split["frequency_all"][f]),
                "by_split": {g: float(by_split["frequency"][g][f]) for g in by_split["groups"]},
                "by_family": {g: float(by_family["frequency"][g][f]) for g in by_family["groups"]},
                "by_answer": {g: float(by_label["frequency"][g][f]) for g in by_label["groups"]},
                "top_examples": [
                    {
                        "split": groups[r],
                        "activation": float(features[r, f]),
                        "rule": examples[r]["rule"],
                        "cards": [f"{c} {n}" for c, n in zip(examples[r]["colours"], examples[r]["numbers"])],
                        "label": examples[r]["label"],
                    }
                    for r in rows
                ],
            }
        )
    return out
