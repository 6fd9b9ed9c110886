"""Supervised training of a GPT-2 on the scoring game with ``transformers.Trainer``.

The model is trained from scratch (a fresh GPT-2 and a tokenizer built from the task text; no hub), with
the loss on the answer tokens only (prompt labels are -100). Every ``eval_steps`` the Trainer scores
**answer accuracy** on the validation set — a row counts when the argmax at every answer position is the
answer token, which is exactly when greedy decoding would produce the answer — checkpoints, and keeps
the best model. The run directory::

    <output_dir>/best/              model + tokenizer (load with models.lm_loader.load_checkpoint)
    <output_dir>/steps/step_<N>/    model + tokenizer at each of ``keep_steps`` (curves, RL starts)
    <output_dir>/checkpoints/       the Trainer's rolling checkpoints
    <output_dir>/metrics.jsonl      the Trainer's log history (loss, eval accuracy, lr)
    <output_dir>/config.yaml        task + SFT config
    <output_dir>/evaluation.json    accuracy on the ID test set and every OOD set
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from reasonlens.lm.config.task_config import TaskConfig
from reasonlens.lm.config.training_config import SFTConfig
from reasonlens.lm.models.lm_loader import build_model, encode_example, load_checkpoint, save_checkpoint
from reasonlens.lm.models.tokenizer import tokenizer_for_datasets
from reasonlens.lm.tasks.dataset import build_sft_datasets
from reasonlens.lm.training.evaluation import evaluate_checkpoint
from reasonlens.utils.device import resolve_device
from reasonlens.utils.io import append_jsonl, write_yaml


def tokenize_split(split, tokenizer, max_length: int):
    return split.map(
        lambda row: encode_example(tokenizer, row["prompt"], row["completion"], max_length),
        remove_columns=split.column_names,
    )


class AnswerCollator:
    """Right-pads input ids (pad token) and labels (-100) to the longest row of the batch."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(r["input_ids"]) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            n = len(row["input_ids"])
            input_ids[i, :n] = torch.tensor(row["input_ids"])
            labels[i, :n] = torch.tensor(row["labels"])
            mask[i, :n] = 1
        return {"input_ids": input_ids, "labels": labels, "attention_mask": mask}


def _argmax(logits, labels):
    return logits.argmax(-1)


def answer_accuracy(eval_prediction) -> dict[str, float]:
    """Share of rows whose every answer token is the argmax (predictions at t score the token at t+1)."""
    predictions, labels = eval_prediction.predictions, eval_prediction.label_ids
    predictions, labels = predictions[:, :-1], labels[:, 1:]
    answer = labels != -100
    row_correct = np.where(answer, predictions == labels, True).all(axis=1)
    return {"answer_accuracy": float(row_correct.mean())}


class KeepSteps(TrainerCallback):
    """Saves model + tokenizer at the listed optimizer steps to ``folder/step_<N>/``."""

    def __init__(self, steps: list[int], tokenizer, folder: Path):
        self.steps, self.tokenizer, self.folder = set(steps), tokenizer, folder

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step in self.steps:
            save_checkpoint(model, self.tokenizer, self.folder / f"step_{state.global_step}")


class JsonlLog(TrainerCallback):
    """Writes every log record of the Trainer to a JSONL file as it happens."""

    def __init__(self, path: Path):
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs:
            append_jsonl(self.path, {"step": state.global_step, **logs})


def run_sft(task_config: TaskConfig, training_config: SFTConfig, datasets=None) -> tuple[Path, dict]:
    """Train from scratch (or continue ``init_from``); return (path of the best checkpoint, evaluation metrics)."""
    task_config = TaskConfig.from_dict(task_config)
    config = SFTConfig.from_dict(training_config)
    datasets = datasets if datasets is not None else build_sft_datasets(task_config)
    if config.init_from is not None:  # continued SFT: the checkpoint's weights, tokenizer and context
        model, tokenizer = load_checkpoint(config.init_from)
        model.train()
        max_length = min(task_config.max_length, model.config.n_positions)
    else:
        tokenizer = tokenizer_for_datasets(datasets, config.model.vocab_size)
        max_length = min(task_config.max_length, config.model.n_positions)
    # a prompt longer than the context stops here, before anything is written
    train = tokenize_split(datasets["train"], tokenizer, max_length)
    val = tokenize_split(datasets["val"], tokenizer, max_length)
    if config.init_from is None:
        model = build_model(config.model, tokenizer, seed=config.seed)

    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.jsonl").unlink(missing_ok=True)
    write_yaml(
        out / "config.yaml", {"task": task_config.model_dump(mode="json"), "sft": config.model_dump(mode="json")}
    )

    device = resolve_device(config.device)
    args = TrainingArguments(
        output_dir=str(out / "checkpoints"),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup_ratio,  # a float below 1 is a fraction of the total steps
        lr_scheduler_type=config.lr_scheduler,
        eval_strategy="steps",
        eval_steps=config.eval_steps,
        save_strategy="steps",
        save_steps=config.eval_steps,
        save_total_limit=config.save_total_limit,
        load_best_model_at_end=True,
        metric_for_best_model="answer_accuracy",
        greater_is_better=True,
        logging_steps=config.logging_steps,
        report_to=[],
        seed=config.seed,
        use_cpu=device.type == "cpu",
        bf16=device.type == "cuda",
        dataloader_num_workers=0,
        remove_unused_columns=False,
        disable_tqdm=False,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=val,
        data_collator=AnswerCollator(tokenizer.pad_token_id),
        compute_metrics=answer_accuracy,
        preprocess_logits_for_metrics=_argmax,
        callbacks=[JsonlLog(out / "metrics.jsonl"), KeepSteps(config.keep_steps, tokenizer, out / "steps")],
    )
    trainer.train()
    best = save_checkpoint(trainer.model.float().cpu(), tokenizer, out / "best")
    shutil.rmtree(out / "checkpoints", ignore_errors=True)  # the best model is kept in best/
    metrics = evaluate_checkpoint(
        best, datasets, max_examples=config.eval_examples, out=out / "evaluation.json", device=str(device)
    )
    metrics["best_val_answer_accuracy"] = trainer.state.best_metric
    return best, metrics
