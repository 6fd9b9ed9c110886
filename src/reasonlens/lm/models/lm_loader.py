"""Building, saving and loading GPT-2 checkpoints (model + tokenizer in one local directory).

A checkpoint directory is what ``save_pretrained`` writes for both: ``config.json``,
``model.safetensors``, ``tokenizer.json`` (+ its config). Loading never touches the hub: paths must be
local directories, and a directory without tokenizer files is refused with one clear error.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from reasonlens.lm.config.training_config import ModelConfig
from reasonlens.lm.errors import LMError
from reasonlens.lm.tasks.formatting import check_length
from reasonlens.utils.io import atomic_directory

TOKENIZER_FILES = ("tokenizer.json",)
MODEL_FILES = ("config.json",)


def build_model(config: ModelConfig, tokenizer, seed: int = 0):
    """A freshly initialised ``GPT2LMHeadModel`` sized by ``config`` for ``tokenizer``."""
    n_layer, n_head, n_embd = config.dims()
    gpt2_config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=config.n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        resid_pdrop=config.dropout,
        embd_pdrop=config.dropout,
        attn_pdrop=config.dropout,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    return GPT2LMHeadModel(gpt2_config)


def check_checkpoint(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise LMError(f"checkpoint {path} is not a directory; pass a directory written by run_sft / run_rl")
    missing_tokenizer = [f for f in TOKENIZER_FILES if not (path / f).exists()]
    if missing_tokenizer:
        raise LMError(
            f"checkpoint directory {path} has no tokenizer files ({', '.join(missing_tokenizer)} missing); "
            "a checkpoint holds the model and the tokenizer it was trained with (save_checkpoint writes both)"
        )
    if not all((path / f).exists() for f in MODEL_FILES) or not any(path.glob("*.safetensors")):
        raise LMError(f"checkpoint directory {path} has no model (config.json + *.safetensors)")
    return path


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    path = Path(path)
    if not all((path / f).exists() for f in TOKENIZER_FILES):
        raise LMError(f"directory {path} has no tokenizer files (tokenizer.json)")
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(path), local_files_only=True)
    tokenizer.padding_side = "left"
    return tokenizer


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu"):
    """(model in eval mode, tokenizer) from a local checkpoint directory."""
    path = check_checkpoint(path)
    tokenizer = load_tokenizer(path)
    try:
        model = GPT2LMHeadModel.from_pretrained(str(path), local_files_only=True)
    except (OSError, RuntimeError, ValueError, SafetensorError) as err:  # weights not fitting config.json, unreadable
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise LMError(f"checkpoint {path}: its weights do not load into its config.json ({first_line})") from None
    model.to(device).eval()
    return model, tokenizer


def save_checkpoint(model, tokenizer, path: str | Path) -> Path:
    """Write model + tokenizer to ``path`` atomically (a temp directory renamed into place)."""
    path = Path(path)
    with atomic_directory(path, "language model") as tmp:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
    return path


def encode_example(tokenizer, prompt: str, completion: str, max_length: int) -> dict[str, list[int]]:
    """Token ids of prompt + completion + EOS, with labels -100 on the prompt (loss on the answer only)."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    check_length(len(prompt_ids) + len(answer_ids), max_length)
    return {"input_ids": prompt_ids + answer_ids, "labels": [-100] * len(prompt_ids) + answer_ids}


def encode_prompts(tokenizer, prompts: list[str], max_length: int, device=None) -> dict[str, torch.Tensor]:
    """Left-padded prompt batch (so every prompt ends at the last position) for generation / analysis."""
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    for row in ids:
        check_length(len(row), max_length, "prompt")
    width = max(len(row) for row in ids)
    input_ids = torch.full((len(ids), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, row in enumerate(ids):
        input_ids[i, width - len(row) :] = torch.tensor(row)
        mask[i, width - len(row) :] = 1
    return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device)}
