"""A short end-to-end CPU training run of HRM-ACT-v1 that exercises every part of the family at once.

Task: sort 8 digits, ascending for puzzle id 0 and descending for puzzle id 1; the id is the only
signal of which, so the sparse puzzle embedding has to learn it. Tokens follow the Sudoku encoding
(PAD 0, digit d → d + 1, vocab 11).

The loop is the official one in miniature: persistent carry across batches (deep supervision with
ACT), ACT loss head (stablemax), AdamATan2 for the dense weights and sparse SignSGD for the puzzle
embedding with linear warm-up, then an evaluation that runs every test row for ``halt_max_steps``
segments. Finally the run is checkpointed in our format and exported in the official format, both are
loaded back, and their evaluation outputs must be identical to the trained model's.

It stands in for ``reasonlens demo`` until the data builders and the full trainer exist.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from pydantic import BaseModel, Field

from reasonlens.hrm.checkpoint import export_official_checkpoint, load_checkpoint, save_checkpoint
from reasonlens.hrm.losses import ACTLossHead
from reasonlens.hrm.model import HRMACTv1
from reasonlens.hrm.optimizers import AdamATan2
from reasonlens.hrm.sparse_embedding import CastedSparseEmbeddingSignSGD_Distributed
from reasonlens.utils.io import append_jsonl, write_json


class SmokeConfig(BaseModel):
    steps: int = Field(1000, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(3e-3, gt=0)
    puzzle_emb_lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(0.1, ge=0)
    warmup_steps: int = Field(100, ge=0)
    eval_every: int = Field(250, ge=1)
    eval_size: int = Field(512, ge=1)
    seq_len: int = Field(8, ge=2)
    seed: int = 0
    out_dir: str = "runs/smoke"
    model: dict = Field(
        default_factory=lambda: dict(
            vocab_size=11,
            num_puzzle_identifiers=2,
            puzzle_emb_ndim=64,
            hidden_size=64,
            num_heads=4,
            H_layers=2,
            L_layers=2,
            H_cycles=2,
            L_cycles=2,
            halt_max_steps=4,
            halt_exploration_prob=0.1,
            forward_dtype="float32",
        )
    )


def sorting_batch(n: int, seq_len: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    digits = torch.randint(1, 10, (n, seq_len), generator=generator)
    task = torch.randint(0, 2, (n,), generator=generator, dtype=torch.int32)  # 0: ascending, 1: descending
    ascending = digits.sort(-1).values
    labels = torch.where(task[:, None] == 1, ascending.flip(-1), ascending)
    return {"inputs": digits + 1, "labels": labels + 1, "puzzle_identifiers": task}


@torch.no_grad()
def evaluate(model, batch: dict[str, torch.Tensor]) -> tuple[dict[str, float], torch.Tensor]:
    """Run every row for halt_max_steps segments; return per-row-averaged metrics and the final logits."""
    model.eval()
    head = ACTLossHead(model)
    carry = head.initial_carry(batch)
    while True:
        carry, _, metrics, outputs, all_halted = head(carry, batch, return_keys=["logits"])
        if all_halted:
            break
    count = metrics.pop("count").item()
    return {k: v.item() / count for k, v in metrics.items()}, outputs["logits"]


def run_smoke(config: SmokeConfig, log=print) -> dict:
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = out_dir / "metrics.jsonl"
    metrics_path.unlink(missing_ok=True)

    torch.manual_seed(config.seed)
    model = HRMACTv1({**config.model, "seq_len": config.seq_len, "batch_size": config.batch_size})
    head = ACTLossHead(model)
    optimizers = [
        (AdamATan2(model.parameters(), lr=0, betas=(0.9, 0.95), weight_decay=config.weight_decay), config.lr),
        (
            CastedSparseEmbeddingSignSGD_Distributed(
                model.puzzle_emb.parameters(), world_size=1, lr=0, weight_decay=config.weight_decay
            ),
            config.puzzle_emb_lr,
        ),
    ]
    train_generator = torch.Generator().manual_seed(config.seed + 1)
    test_batch = sorting_batch(config.eval_size, config.seq_len, torch.Generator().manual_seed(config.seed + 2))
    n_params = sum(p.numel() for p in model.parameters())
    log(f"HRM-ACT-v1 smoke run: {n_params:,} parameters, {config.steps} steps of batch {config.batch_size}")

    carry = None
    started = time.perf_counter()
    for step in range(1, config.steps + 1):
        batch = sorting_batch(config.batch_size, config.seq_len, train_generator)
        if carry is None:
            carry = head.initial_carry(batch)  # persists across batches: halted slots take new rows
        model.train()
        carry, loss, metrics, _, _ = head(carry, batch)
        (loss / config.batch_size).backward()
        warmup = min(1.0, step / max(1, config.warmup_steps))
        for optimizer, base_lr in optimizers:
            for group in optimizer.param_groups:
                group["lr"] = base_lr * warmup
            optimizer.step()
            optimizer.zero_grad()

        if step % config.eval_every == 0 or step == config.steps:
            count = max(metrics["count"].item(), 1)
            record = {
                "step": step,
                "elapsed_s": round(time.perf_counter() - started, 2),
                "train/lm_loss": metrics["lm_loss"].item() / config.batch_size,
                "train/accuracy": metrics["accuracy"].item() / count,
                "train/steps": metrics["steps"].item() / count,
            }
            eval_metrics, _ = evaluate(model, test_batch)
            record.update({f"eval/{k}": v for k, v in eval_metrics.items()})
            append_jsonl(metrics_path, record)
            log(
                f"step {step:5d}  train loss {record['train/lm_loss']:.3f}  "
                f"eval token acc {record['eval/accuracy']:.3f}  exact {record['eval/exact_accuracy']:.3f}  "
                f"({record['elapsed_s']:.0f}s)"
            )

    final, logits = evaluate(model, test_batch)
    save_checkpoint(model, out_dir, run_config={"smoke": config.model_dump(exclude={"model"})})
    export_official_checkpoint(model, out_dir / "official", train_config={"global_batch_size": config.batch_size})
    reloaded = {
        "ours": evaluate(load_checkpoint(out_dir), test_batch)[1],
        "official": evaluate(load_checkpoint(out_dir / "official"), test_batch)[1],
    }
    summary = {
        "parameters": n_params,
        "steps": config.steps,
        "train_seconds": round(time.perf_counter() - started, 1),
        "eval_token_accuracy": final["accuracy"],
        "eval_exact_accuracy": final["exact_accuracy"],
        "eval_rows": config.eval_size,
        "chance_token_accuracy": 1 / 9,
        "reload_identical": {name: bool(torch.equal(out, logits)) for name, out in reloaded.items()},
    }
    write_json(out_dir / "summary.json", summary)
    return summary
