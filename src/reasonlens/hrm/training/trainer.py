"""Training for the HRM family: the official loop (sapientinc/HRM ``pretrain.py``), resumable.

Per step (``train_batch``): the carry persists across batches — halted slots take the next batch's rows
(deep supervision with ACT); the ACT loss head's loss is scaled by 1/global batch and back-propagated;
with several processes the gradients are all-reduced as a **sum** (consistent with that scaling) and the
puzzle-embedding gradients are all-gathered by the sparse optimizer; AdamATan2 (dense weights) and
SignSGD (puzzle embeddings) step with their own learning rates under linear warm-up then constant
(``lr_min_ratio: 1``) or cosine decay; the optional EMA (TRM) is updated. ``supervision: per_batch``
is the paper's / seed 003's form instead: a fresh carry per batch, one optimizer step per ACT step until
every row halts.

The run is organised in iterations of ``eval_interval`` epochs (an epoch is one pass over the puzzle
*groups*); after each, the test split is evaluated and the run directory checkpointed atomically:
``model.safetensors`` (the evaluated weights — the EMA copy when EMA is on), ``config.yaml`` and
``optimizer.pt`` (everything a resume needs: raw weights, optimizer moments, step, sampler position,
every rank's carry and random-generator states, EMA). ``resume: true`` continues a killed run to the
same state an uninterrupted run reaches. Metrics go to ``metrics.jsonl`` (and TensorBoard / wandb when
asked); rank 0 logs and writes.

**The run directory.** Training marks the folder it makes as its own (``OWNER_FILE``) and writes the
resolved ``config.yaml`` (the checkpoint's sections) before the first step, so a run killed before its
first checkpoint is still resumable by its folder — as an explicit fresh start (no weights to continue
from: the log says so, and ``metrics.jsonl`` restarts). A real resume keeps the metric records written
before the checkpoint — dropping those logged after it, and a torn last line — so the log holds each
step once, in order. ``overwrite: true`` reuses only a training run's folder (ours, or a run made before
the marker existed: ``config.yaml`` with a ``train`` section) and deletes only what training writes there
(``TRAINING_OUTPUTS``); a folder holding anything else is refused and nothing in it is touched.

Launch with ``torchrun --nproc_per_node N -m reasonlens.cli.main train CONFIG`` for several GPUs (or CPU
processes with gloo); each rank seeds with ``seed + rank`` and rank 0's weights are broadcast, as upstream.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import pickle
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
import yaml
from pydantic import AliasChoices, Field, model_validator
from tqdm import tqdm

from reasonlens.hrm.data.format import DatasetMetadata
from reasonlens.hrm.data.sampler import PuzzleBatches
from reasonlens.hrm.evaluation.arc_voting import SCORING_RULES, evaluate_arc_predictions, write_submission
from reasonlens.hrm.evaluation.rollout import DEFAULT_SAVE_OUTPUTS, evaluate_model
from reasonlens.hrm.models.hrm_act_v1 import Carry, InnerCarry
from reasonlens.hrm.models.sparse_embedding import CastedSparseEmbeddingSignSGD_Distributed
from reasonlens.hrm.training.checkpoint import (
    CONFIG_FILE,
    MODEL_FILE,
    OPTIMIZER_FILE,
    build_model,
    model_arch,
    save_checkpoint,
    transfer_weights,
)
from reasonlens.hrm.training.ema import EMA
from reasonlens.hrm.training.losses import ACTLossHead, LossType
from reasonlens.hrm.training.optimizers import AdamATan2
from reasonlens.hrm.training.run_dataset import LOCATION_KEY, location_record
from reasonlens.utils.config import ConfigError, StrictConfig
from reasonlens.utils.cpu import set_threads, should_compile
from reasonlens.utils.device import resolve_device
from reasonlens.utils.errors import UserInputError
from reasonlens.utils.io import (
    OWNER_FILE,
    append_jsonl,
    atomic_write,
    is_owned,
    mark_owned,
    read_yaml,
    write_json,
    write_yaml,
)

DATASET_FIELDS = ("seq_len", "vocab_size", "num_puzzle_identifiers")

RUN_KIND = "training run"  # the kind in a run directory's OWNER_FILE
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
INIT_FILE = "init.json"
# what a fresh start removes from a run directory of ours: the files and folders training itself writes
# (config.yaml is rewritten; OWNER_FILE, TensorBoard / wandb folders and anything else stay)
TRAINING_OUTPUTS = (METRICS_FILE, SUMMARY_FILE, MODEL_FILE, OPTIMIZER_FILE, INIT_FILE, "checkpoints", "eval")


class TrainError(UserInputError):
    """A training run cannot start or resume as asked."""


class TrainConfig(StrictConfig):
    """A training run. Defaults are the official Sudoku-Extreme-1k recipe (``cfg_pretrain.yaml`` with the
    README's Sudoku overrides); ``model`` holds model-config fields (the dataset fills ``seq_len``,
    ``vocab_size`` and ``num_puzzle_identifiers``; ``forward_dtype`` defaults to bf16 on CUDA, fp32 else)."""

    arch: Literal["hrm_act_v1", "trm", "transformer_act"] = "hrm_act_v1"
    model: dict[str, Any] = Field(default_factory=dict)
    data_path: str
    run_dir: str | None = None

    global_batch_size: int = Field(768, ge=1)
    epochs: int = Field(20000, ge=1)
    eval_interval: int | None = Field(2000, ge=1, description="epochs per iteration; None: evaluate once at the end")
    max_train_steps: int | None = Field(
        None,
        ge=1,
        validation_alias=AliasChoices("max_train_steps", "max_steps"),  # max_steps: its old name, still read
        description="stop after this many optimizer steps (the LR schedule is unchanged)",
    )

    lr: float = Field(1e-4, ge=0)
    lr_min_ratio: float = Field(1.0, ge=0, le=1)
    lr_warmup_steps: int = Field(2000, ge=0)
    weight_decay: float = Field(1.0, ge=0)
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.95, ge=0, lt=1)
    puzzle_emb_lr: float = Field(1e-4, ge=0)
    puzzle_emb_weight_decay: float = Field(1.0, ge=0)
    loss_type: LossType = "stablemax_cross_entropy"

    ema: bool = False
    ema_rate: float = Field(0.999, ge=0, lt=1)
    supervision: Literal["carry", "per_batch"] = "carry"

    seed: int = 0
    device: str = "auto"
    compile: bool | Literal["auto"] = Field(
        "auto", description="torch.compile the loss head; auto: for long runs where a compiler works (utils.cpu)"
    )
    threads: int | Literal["auto"] = Field(
        "auto", description="CPU threads for torch; auto: the cores not busy with other processes (utils.cpu)"
    )

    init_from: str | None = Field(None, description="start from the weights of this checkpoint (transfer)")
    init_include: list[str] = Field(default_factory=list, description="with init_from: only these modules")

    eval_max_steps: int | None = Field(None, ge=1, description="ACT steps at evaluation (inference-time scaling)")
    eval_save_outputs: list[str] = Field(default_factory=list)
    checkpoint_every_steps: int | None = Field(None, ge=1, description="extra checkpoints inside an iteration")
    keep_checkpoints: bool = False
    logger: Literal["none", "tensorboard", "wandb"] = "none"
    progress: bool = True
    resume: bool = False
    overwrite: bool = False

    @model_validator(mode="after")
    def _check(self):
        if self.eval_interval is not None and self.epochs % self.eval_interval:
            raise ValueError(f"epochs ({self.epochs}) must be a multiple of eval_interval ({self.eval_interval})")
        if self.init_include and not self.init_from:
            raise ValueError("init_include needs init_from (the checkpoint to take those modules from)")
        given = sorted(set(self.model) & set(DATASET_FIELDS))
        if given:
            raise ValueError(f"model.{given[0]} is read from the dataset's dataset.json; remove it from the config")
        return self


def cosine_lr(step: int, base_lr: float, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """Official ``cosine_schedule_with_warmup_lr_lambda``: linear warm-up from base/warmup at step 1,
    then cosine from base down to base·min_ratio (constant when min_ratio is 1)."""
    if step < warmup_steps:
        return base_lr * step / max(1, warmup_steps)
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return base_lr * (min_ratio + max(0.0, (1 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))))


# --------------------------------------------------------------------------------------------
# Distributed setup and state helpers


def setup_distributed(device_name: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device). Under torchrun (``LOCAL_RANK`` set) initialise the process group:
    NCCL on CUDA, gloo on CPU."""
    if "LOCAL_RANK" not in os.environ:
        return 0, 1, resolve_device(device_name)
    local_rank = int(os.environ["LOCAL_RANK"])
    device = resolve_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


def carry_to_state(carry: Carry | None) -> dict | None:
    if carry is None:
        return None
    return {
        "z_H": carry.inner_carry.z_H.cpu(),
        "z_L": None if carry.inner_carry.z_L is None else carry.inner_carry.z_L.cpu(),
        "steps": carry.steps.cpu(),
        "halted": carry.halted.cpu(),
        "current_data": {k: v.cpu() for k, v in carry.current_data.items()},
    }


def carry_from_state(state: dict | None, device: torch.device) -> Carry | None:
    if state is None:
        return None
    z_L = None if state["z_L"] is None else state["z_L"].to(device)
    return Carry(
        inner_carry=InnerCarry(state["z_H"].to(device), z_L),
        steps=state["steps"].to(device),
        halted=state["halted"].to(device),
        current_data={k: v.to(device) for k, v in state["current_data"].items()},
    )


def rng_state(device: torch.device) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def gather_to_rank0(obj, rank: int, world_size: int) -> list | None:
    if world_size == 1:
        return [obj]
    out = [None] * world_size if rank == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out


class CompiledOrEager:
    """The loss head compiled; if compiling fails at the first call (no working compiler, an unsupported
    op), one line in the log and the eager head from then on."""

    def __init__(self, head: ACTLossHead, log):
        self.head, self.log = head, log
        self.compiled = torch.compile(head, dynamic=False)
        self.has_run = False

    def __call__(self, *args, **kwargs):
        if self.compiled is None:
            return self.head(*args, **kwargs)
        try:
            out = self.compiled(*args, **kwargs)
        except Exception as err:
            if self.has_run:
                raise
            self.log(f"torch.compile failed ({type(err).__name__}: {str(err).splitlines()[0][:160]}); training eagerly")
            self.compiled = None
            return self.head(*args, **kwargs)
        self.has_run = True
        return out

    def __getattr__(self, name: str):
        return getattr(self.head, name)  # initial_carry, model, ... of the head


# --------------------------------------------------------------------------------------------
# The trainer


class Trainer:
    def __init__(self, config: TrainConfig, log=print):
        self.config = config
        require_logger(config.logger)  # fail before anything is created
        self.rank, self.world_size, self.device = setup_distributed(config.device)
        self.log = log if self.rank == 0 else (lambda *_: None)
        self.run_dir = Path(config.run_dir or default_run_dir(config))
        self._check_run_dir()  # refuse before anything is created or deleted

        if self.device.type == "cpu":
            set_threads(config.threads)  # before any work, so that the count sees only other processes
        torch.manual_seed(config.seed + self.rank)
        epochs_per_iter = config.eval_interval or config.epochs
        self.total_iterations = config.epochs // epochs_per_iter
        self.train_batches = PuzzleBatches(
            config.data_path,
            "train",
            config.global_batch_size,
            seed=config.seed,
            epochs_per_iter=epochs_per_iter,
            rank=self.rank,
            world_size=self.world_size,
        )
        self.test_batches = PuzzleBatches(
            config.data_path, "test", config.global_batch_size, rank=self.rank, world_size=self.world_size
        )
        metadata = self.train_batches.metadata
        self.total_steps = int(
            config.epochs * metadata.total_groups * metadata.mean_puzzle_examples / config.global_batch_size
        )
        if self.total_steps < 1:
            raise TrainError(
                f"{config.epochs} epochs of {metadata.total_groups} groups make no full batch of "
                f"{config.global_batch_size}; lower global_batch_size or raise epochs"
            )
        self.stop_step = min(self.total_steps, config.max_train_steps or self.total_steps)

        self.model_config = resolve_model_config(config, metadata, self.world_size, self.device)
        self.model = build_model(config.arch, self.model_config).to(self.device)
        self._prepare_run_dir()
        if config.init_from and not self.resuming:
            self._transfer(config.init_from, config.init_include)
        if self.world_size > 1:
            with torch.no_grad():
                for tensor in [*self.model.parameters(), *self.model.buffers()]:
                    dist.broadcast(tensor, src=0)
        self.head = ACTLossHead(self.model, config.loss_type)
        self.compiled, why = should_compile(config.compile, self.device, self.stop_step)
        self.settings = f"{why}; threads: {torch.get_num_threads()} ({config.threads})"  # logged when fit starts
        self.step_fn = CompiledOrEager(self.head, self.log) if self.compiled else self.head

        self.optimizers, self.base_lrs = [], []
        if self.model.config.puzzle_emb_ndim > 0:
            self.optimizers.append(
                CastedSparseEmbeddingSignSGD_Distributed(
                    self.model.puzzle_emb.parameters(),
                    world_size=self.world_size,
                    lr=0,
                    weight_decay=config.puzzle_emb_weight_decay,
                )
            )
            self.base_lrs.append(config.puzzle_emb_lr)
        self.optimizers.append(
            AdamATan2(
                self.model.parameters(), lr=0, betas=(config.beta1, config.beta2), weight_decay=config.weight_decay
            )
        )
        self.base_lrs.append(config.lr)
        self.ema = EMA(self.model, config.ema_rate) if config.ema else None

        self.step = 0
        self.iterations_done = 0
        self.carry: Carry | None = None
        self.last_eval: dict[str, float] = {}
        self.train_seconds = 0.0
        self.metrics_path = self.run_dir / METRICS_FILE
        self.metrics_records = 0  # lines in metrics.jsonl (rank 0); a checkpoint records how many it covers
        if self.resuming:
            self._restore()
        if self.rank == 0:  # resumable by its folder from now on, even if killed before the first checkpoint
            write_yaml(self.run_dir / CONFIG_FILE, self.run_config())
        self.writer = make_logger(config, self.run_dir) if self.rank == 0 else None

    # -- setup -------------------------------------------------------------------------------

    def _check_run_dir(self) -> None:
        """Refuse a run directory that cannot be used as asked — before anything is created or deleted —
        and decide between a real resume (``self.resuming``) and a fresh start."""
        self._reuse = check_run_dir(self.run_dir, self.config.resume, self.config.overwrite)
        self.resuming = self.config.resume and (self.run_dir / OPTIMIZER_FILE).is_file()

    def _prepare_run_dir(self) -> None:
        """Create and mark the run directory; a fresh start in a run directory of ours (``overwrite``, or
        ``resume`` without a checkpoint) first removes what an earlier run of it wrote."""
        if self.config.resume and not self.resuming:
            self.log(
                f"resume: {self.run_dir} has no checkpoint ({OPTIMIZER_FILE}) yet: starting it afresh from step 1"
                + (f" ({METRICS_FILE} restarts)" if self._reuse else "")
            )
        if self.rank != 0:
            return
        if self._reuse and not self.resuming:
            clear_training_outputs(self.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        mark_owned(self.run_dir, RUN_KIND)

    def _transfer(self, source: str, include: list[str]) -> None:
        report = transfer_weights(self.model, source, include)
        if self.rank == 0:
            write_json(self.run_dir / INIT_FILE, report)
        self.log(
            f"init_from {source}: copied {len(report['copied'])} tensors ({report['parameters_copied']:,} "
            f"parameters); {len(report['kept'])} keep their fresh initialisation (init.json)"
        )

    def _restore(self) -> None:
        try:
            state = torch.load(self.run_dir / OPTIMIZER_FILE, map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, pickle.UnpicklingError) as err:  # truncated, or not a weights-only file
            raise TrainError(
                f"{self.run_dir / OPTIMIZER_FILE} cannot be read ({type(err).__name__}); the run cannot resume "
                "from it: pass overwrite=true to start the run over"
            ) from None
        train_state = state["train_state"]
        if train_state["world_size"] != self.world_size:
            raise TrainError(
                f"{self.run_dir} was trained with {train_state['world_size']} processes; resume it with the same number"
            )
        self.model.load_state_dict(train_state["model"])
        for optimizer, optimizer_state in zip(self.optimizers, state["optimizers"], strict=True):
            optimizer.load_state_dict(optimizer_state)
        if self.ema is not None:
            self.ema.load_state_dict(train_state["ema"])
        self.step = train_state["step"]
        self.iterations_done = train_state["iterations_done"]
        self.train_seconds = train_state["train_seconds"]
        self.train_batches.load_state_dict(train_state["sampler"])
        rank_state = train_state["ranks"][self.rank]
        self.carry = carry_from_state(rank_state["carry"], self.device)
        set_rng_state(rank_state["rng"], self.device)
        self._trim_metrics(self.step, train_state.get("metrics_records"))
        self.log(f"resumed {self.run_dir} at step {self.step} (iteration {self.iterations_done + 1})")

    def _trim_metrics(self, step: int, records: int | None) -> None:
        """Keep the metric records written before the checkpoint — its first ``records`` lines (checkpoints
        older than that count: the lines with step <= ``step``) — and drop what the killed run logged
        after it, including a torn (unparseable) last line; the file is rewritten atomically."""
        if self.rank != 0 or not self.metrics_path.is_file():
            return
        lines = self.metrics_path.read_text(errors="replace").splitlines()
        while lines and not lines[-1].strip():
            lines.pop()
        kept, torn = [], False
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
                before = bool(record["step"] <= step)
            except (ValueError, TypeError, KeyError, IndexError):
                if number == len(lines):  # a kill or a full disk mid-write
                    torn = True
                    break
                raise TrainError(
                    f"{self.metrics_path} line {number} is not a metrics record; remove that line to resume"
                ) from None
            if before and (records is None or len(kept) < records):
                kept.append(line)
        dropped = len(lines) - len(kept)
        if dropped or torn:
            with atomic_write(self.metrics_path) as handle:
                handle.write("".join(line + "\n" for line in kept))
            self.log(
                f"resume: dropped {dropped} line(s) of {METRICS_FILE} written after the checkpoint"
                + (" (the last one torn)" if torn else "")
            )
        self.metrics_records = len(kept)

    # -- one step ----------------------------------------------------------------------------

    def _apply_gradients(self) -> float:
        if self.world_size > 1:
            for param in self.model.parameters():
                if param.grad is not None:
                    dist.all_reduce(param.grad)
        lr = 0.0
        for optimizer, base_lr in zip(self.optimizers, self.base_lrs):
            lr = cosine_lr(self.step, base_lr, self.config.lr_warmup_steps, self.total_steps, self.config.lr_min_ratio)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.step()
            optimizer.zero_grad()
        if self.ema is not None:
            self.ema.update(self.model)
        return lr

    def train_batch(self, batch: dict[str, torch.Tensor]) -> dict[str, float] | None:
        self.step += 1
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        global_batch = self.config.global_batch_size
        self.model.train()
        if self.config.supervision == "carry":
            if self.carry is None:
                self.carry = self.head.initial_carry(batch)
            self.carry, loss, metrics, _, _ = self.step_fn(self.carry, batch)
            ((1 / global_batch) * loss).backward()
            lr = self._apply_gradients()
        else:  # per_batch: the same batch for up to halt_max_steps ACT steps, a step after each
            carry = self.head.initial_carry(batch)
            for _ in range(self.model.config.halt_max_steps):
                carry, loss, metrics, _, all_halted = self.step_fn(carry, batch)
                ((1 / global_batch) * loss).backward()
                lr = self._apply_gradients()
                if all_halted:
                    break
        return self._reduce_train_metrics(metrics, lr)

    def _reduce_train_metrics(self, metrics: dict[str, torch.Tensor], lr: float) -> dict[str, float] | None:
        keys = sorted(metrics)
        values = torch.stack([metrics[k].detach().to(torch.float64) for k in keys])
        if self.world_size > 1:
            dist.reduce(values, dst=0)
        if self.rank != 0:
            return None
        totals = dict(zip(keys, values.tolist()))
        count = max(totals["count"], 1.0)
        out = {
            # losses per global-batch row, the rest per halted row (official); the count stays a count
            f"train/{k}": v if k == "count" else v / (self.config.global_batch_size if k.endswith("loss") else count)
            for k, v in totals.items()
        }
        out["train/lr"] = lr
        return out

    # -- evaluation and checkpoints ----------------------------------------------------------

    def eval_model(self):
        return self.ema.averaged_copy(self.model) if self.ema is not None else self.model

    def evaluate(self) -> dict[str, float]:
        dataset_dir = Path(self.config.data_path)
        is_arc = (dataset_dir / "test_puzzles.json").is_file()
        save = list(self.config.eval_save_outputs) or (list(DEFAULT_SAVE_OUTPUTS) if is_arc else [])
        model = self.eval_model()
        head = self.step_fn if model is self.model else None
        # a compiled head (dynamic=False) gets one fixed shape: the short last batch is padded, never past the split
        pad_last = head is not None and self.compiled
        metrics, outputs = evaluate_model(
            model,
            self.test_batches.test_batches(pad_last=pad_last),
            device=self.device,
            loss_type=self.config.loss_type,
            max_steps=self.config.eval_max_steps,
            save_outputs=save,
            head=head,
        )
        gathered = gather_to_rank0(outputs, self.rank, self.world_size) if save else None
        result = {f"eval/{k}": v for k, v in metrics.items()}
        if self.rank == 0 and save:
            outputs = {k: np.concatenate([part[k] for part in gathered]) for k in save}
            with atomic_write(self.run_dir / "eval" / f"step_{self.step}_outputs.npz", "wb") as handle:
                np.savez_compressed(handle, **outputs)
            if is_arc:
                arc = evaluate_arc_predictions(dataset_dir, outputs)
                write_json(self.run_dir / "eval" / f"step_{self.step}_arc.json", arc)
                write_submission(self.run_dir / "eval" / f"step_{self.step}_submission.json", arc)
                result.update(flatten_arc_scores(arc))
        return result

    def save(self) -> None:
        ranks = gather_to_rank0(
            {"carry": carry_to_state(self.carry), "rng": rng_state(self.device)}, self.rank, self.world_size
        )
        if self.rank == 0:
            train_state = {
                "step": self.step,
                "iterations_done": self.iterations_done,
                "train_seconds": self.train_seconds,
                "world_size": self.world_size,
                "sampler": self.train_batches.state_dict(),
                "model": {k: v.cpu() for k, v in self.model.state_dict().items()},
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "ranks": ranks,
                "metrics_records": self.metrics_records,
            }
            run_config = self.run_config()
            save_checkpoint(
                self.eval_model(),
                self.run_dir,
                run_config=run_config,
                optimizers=self.optimizers,
                train_state=train_state,
            )
            if self.config.keep_checkpoints:
                save_checkpoint(
                    self.eval_model(), self.run_dir / "checkpoints" / f"step_{self.step}", run_config=run_config
                )
        if self.world_size > 1:
            dist.barrier()

    def run_config(self) -> dict:
        """What ``config.yaml`` holds, at the start of training and in every checkpoint: ``arch``, ``model``
        (the resolved model config), ``train``, ``dataset`` and ``data_location``."""
        return {
            "arch": model_arch(self.model),
            "model": self.model.config.model_dump(),
            "train": self.config.model_dump(),
            "dataset": self.train_batches.metadata.model_dump(),
            LOCATION_KEY: location_record(self.config.data_path, self.run_dir),
        }

    def _record(self, record: dict) -> None:
        if self.rank != 0:
            return
        append_jsonl(self.metrics_path, record)
        self.metrics_records += 1
        if self.writer is not None:
            self.writer(record)

    # -- the loop ----------------------------------------------------------------------------

    def fit(self) -> dict:
        self.log(self.settings)
        progress = None
        if self.rank == 0 and self.config.progress:
            # disable=None: no bar when stdout is not a terminal (logs get the eval lines instead)
            progress = tqdm(
                total=self.stop_step, initial=self.step, desc="train", dynamic_ncols=True, disable=None, mininterval=1.0
            )
        stopped = self.step >= self.stop_step
        while self.iterations_done < self.total_iterations and not stopped:
            started = time.perf_counter()
            for batch in self.train_batches.train_iteration():
                metrics = self.train_batch(batch)
                if metrics is not None:
                    self._record({"step": self.step, **metrics})
                    if progress is not None:
                        progress.update(1)
                        progress.set_postfix(
                            loss=f"{metrics['train/lm_loss']:.3f}", acc=f"{metrics['train/accuracy']:.3f}"
                        )
                if self.config.checkpoint_every_steps and self.step % self.config.checkpoint_every_steps == 0:
                    self.train_seconds += time.perf_counter() - started
                    started = time.perf_counter()
                    self.save()
                if self.step >= self.stop_step:
                    stopped = True
                    break
            self.train_seconds += time.perf_counter() - started
            if not stopped:
                self.iterations_done += 1
                self.train_batches.batches_done = 0  # the iteration is complete
            self.last_eval = self.evaluate()
            self._record({"step": self.step, **self.last_eval})
            self.log(format_eval(self.step, self.last_eval))
            self.save()
        if progress is not None:
            progress.close()
        if not self.last_eval:  # resumed a run that had already finished: report its evaluation
            self.last_eval = self.evaluate()
        summary = {
            "run_dir": str(self.run_dir),
            "arch": self.config.arch,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "steps": self.step,
            "total_steps": self.total_steps,
            "train_seconds": round(self.train_seconds, 1),
            "world_size": self.world_size,
            "device": str(self.device),
            "threads": torch.get_num_threads(),
            "compiled": self.compiled,
            **self.last_eval,
        }
        if self.rank == 0:
            write_json(self.run_dir / SUMMARY_FILE, summary)
        return summary


def check_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> bool:
    """Raise :class:`TrainError` unless ``run_dir`` may be used with these flags: new, empty (or holding only
    our marker), or a training run's folder when ``resume`` or ``overwrite`` is set. Returns whether an
    existing run folder is being reused. Nothing is created or deleted here."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise TrainError(f"run_dir {run_dir} is a file, not a folder; choose another run_dir")
    # the owner marker alone (a run that stopped on a config error) does not make a folder busy
    reuse = run_dir.is_dir() and any(p.name != OWNER_FILE for p in run_dir.iterdir())
    if not reuse:
        return False
    if not (resume or overwrite):
        raise TrainError(
            f"run directory {run_dir} is not empty: pass resume=true to continue it, "
            "overwrite=true to start over, or choose another run_dir"
        )
    if not is_training_run(run_dir):
        raise TrainError(
            f"run directory {run_dir} holds files that training did not write (no {OWNER_FILE}, no "
            f"{CONFIG_FILE} with a 'train' section); refusing to {'resume' if resume else 'overwrite'} "
            "it: choose another run_dir"
        )
    return True


def is_training_run(folder: Path) -> bool:
    """Whether ``folder`` is a training run's directory: marked by training (``OWNER_FILE`` of kind
    ``RUN_KIND``), or — made before the marker existed — holding a ``config.yaml`` with a ``train`` section."""
    if is_owned(folder):
        try:
            kind = json.loads((folder / OWNER_FILE).read_text()).get("kind")
        except (OSError, ValueError, AttributeError):
            kind = None
        return kind in (None, RUN_KIND)
    try:
        saved = read_yaml(folder / CONFIG_FILE) if (folder / CONFIG_FILE).is_file() else None
    except (OSError, ValueError):
        return False
    return isinstance(saved, dict) and "train" in saved


def clear_training_outputs(run_dir: Path) -> None:
    """Remove what training writes into a run directory (``TRAINING_OUTPUTS``), nothing else; links are
    removed as links, never followed."""
    for name in TRAINING_OUTPUTS:
        path = run_dir / name
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)


def resolve_model_config(config: TrainConfig, metadata: DatasetMetadata, world_size: int, device: torch.device) -> dict:
    model = dict(config.model)
    model.update(
        seq_len=metadata.seq_len,
        vocab_size=metadata.vocab_size,
        num_puzzle_identifiers=metadata.num_puzzle_identifiers,
        batch_size=config.global_batch_size // world_size,
    )
    model.setdefault("forward_dtype", "bfloat16" if device.type == "cuda" else "float32")
    return model


def default_run_dir(config: TrainConfig) -> str:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return str(Path("runs") / f"{Path(config.data_path).name}-{config.arch}-{stamp}")


def flatten_arc_scores(arc: dict) -> dict[str, float]:
    """ARC voting scores as flat ``eval/arc/<rule>/pass@k`` entries for metrics.jsonl."""
    return {f"eval/arc/{rule}/{key}": value for rule in SCORING_RULES for key, value in arc[rule].items()}


def format_eval(step: int, metrics: dict[str, float]) -> str:
    return (
        f"step {step}: eval exact accuracy {metrics.get('eval/exact_accuracy', float('nan')):.4f}, "
        f"token accuracy {metrics.get('eval/accuracy', float('nan')):.4f}, "
        f"mean steps {metrics.get('eval/steps', float('nan')):.2f}"
    )


LOGGER_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}


def require_logger(logger: str) -> None:
    package = LOGGER_PACKAGES.get(logger)
    if package and importlib.util.find_spec(package) is None:
        raise TrainError(f"logger {logger!r} needs the {package} package: pip install {package}")


def make_logger(config: TrainConfig, run_dir: Path):
    """A callable(record) for TensorBoard or wandb, or None. Imported only when asked."""
    if config.logger == "none":
        return None
    if config.logger == "tensorboard":
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "tensorboard"))

        def log_tb(record):
            for key, value in record.items():
                if key != "step":
                    writer.add_scalar(key, value, record["step"])

        return log_tb
    import wandb

    wandb.init(project="reasonlens", name=run_dir.name, config=config.model_dump(), dir=str(run_dir))
    return lambda record: wandb.log({k: v for k, v in record.items() if k != "step"}, step=record["step"])


def train(config: TrainConfig, log=print) -> dict:
    return Trainer(config, log=log).fit()


def load_train_config(path: str | os.PathLike, overrides: list[str] = (), **fields: Any) -> TrainConfig:
    """A training config from a YAML file — or from a run directory, whose saved config is loaded with
    ``resume`` on — with ``key=value`` overrides (dotted keys reach into ``model``: ``model.H_cycles=4``;
    values are parsed as YAML) and then ``fields``."""
    path = Path(path)
    if path.is_dir():
        saved = read_yaml(path / "config.yaml") if (path / "config.yaml").is_file() else None
        if not isinstance(saved, dict) or "train" not in saved:
            raise ConfigError(f"{path} is not a training run directory (no config.yaml with a 'train' section)")
        data = {**saved["train"], "run_dir": str(path), "resume": True}
    else:
        data = read_yaml(path)
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a mapping of training-config fields")
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. lr=3e-4 or model.H_cycles=4)")
        target = data
        *parents, leaf = key.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
            if not isinstance(target, dict):
                raise ConfigError(f"override {item!r}: {parent} is not a section")
        target[leaf] = yaml.safe_load(raw)
    data.update(fields)
    return TrainConfig.from_dict(data)
