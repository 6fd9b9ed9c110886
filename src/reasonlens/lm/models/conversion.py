"""A local GPT-2 checkpoint as a TransformerLens ``HookedTransformer``, offline.

``HookedTransformer.from_pretrained`` looks the model up on the hub, so the config is built here from the
checkpoint's own ``GPT2Config`` and the weights go through TransformerLens's GPT-2 converter. Weight
processing (LayerNorm folding, centring) is off, so logits equal the Hugging Face model's to float
precision (tests/test_lm.py checks this) and hook values are the plain GPT-2 activations.

Prompts are fed as token tensors (never strings: TransformerLens would prepend a BOS token the model was
not trained with), left-padded with an attention mask so that every prompt ends at the last position.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens.pretrained.weight_conversions.gpt2 import convert_gpt2_weights

from reasonlens.lm.models.lm_loader import load_checkpoint


def hooked_config(hf_config, device: str | torch.device = "cpu") -> HookedTransformerConfig:
    return HookedTransformerConfig(
        d_model=hf_config.n_embd,
        d_head=hf_config.n_embd // hf_config.n_head,
        n_heads=hf_config.n_head,
        d_mlp=hf_config.n_inner or 4 * hf_config.n_embd,
        n_layers=hf_config.n_layer,
        n_ctx=hf_config.n_positions,
        eps=hf_config.layer_norm_epsilon,
        d_vocab=hf_config.vocab_size,
        act_fn="gelu_new",
        normalization_type="LN",
        positional_embedding_type="standard",
        original_architecture="GPT2LMHeadModel",
        default_prepend_bos=False,
        device=str(device),
    )


def to_hooked_transformer(checkpoint: str | Path, device: str | torch.device = "cpu"):
    """(HookedTransformer, tokenizer) of a local checkpoint directory."""
    hf_model, tokenizer = load_checkpoint(checkpoint, "cpu")
    cfg = hooked_config(hf_model.config, device)
    model = HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)
    state_dict = convert_gpt2_weights(hf_model, cfg)
    model.load_and_process_state_dict(
        state_dict, fold_ln=False, center_writing_weights=False, center_unembed=False, fold_value_biases=False
    )
    model.to(device)
    model.eval()
    return model, tokenizer
