"""The training loop: a short run end to end, evaluation agreeing with it, resume after a real SIGKILL
reaching the state of an uninterrupted run, 2 gloo processes matching 1 process, EMA, per-batch deep
supervision, the LR schedule and config errors."""

import json
import math
import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.multiprocessing as mp
import yaml
from safetensors.torch import load_file

from reasonlens.cli.evaluate import run_evaluation
from reasonlens.hrm import HRM, ConfigError, load_checkpoint
from reasonlens.hrm.training.deep_supervision import train_with_deep_supervision
from reasonlens.hrm.training.trainer import TrainConfig, TrainError, cosine_lr, load_train_config, train

TINY_MODEL = dict(
    hidden_size=32, num_heads=2, H_layers=1, L_layers=1, H_cycles=2, L_cycles=1, puzzle_emb_ndim=32, halt_max_steps=3
)


def config(data, run_dir, **overrides):
    fields = dict(
        data_path=str(data),
        run_dir=str(run_dir),
        global_batch_size=32,
        epochs=4,
        eval_interval=2,
        lr=3e-3,
        puzzle_emb_lr=3e-3,
        lr_warmup_steps=5,
        weight_decay=0.1,
        puzzle_emb_weight_decay=0.1,
        model=dict(TINY_MODEL),
        progress=False,
    )
    fields.update(overrides)
    return TrainConfig(**fields)


def read_metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_cosine_lr_schedule():
    assert cosine_lr(1, 1e-4, 2000, 26041, 1.0) == pytest.approx(1e-4 / 2000)  # first step: base / warmup
    assert cosine_lr(2000, 1e-4, 2000, 26041, 1.0) == pytest.approx(1e-4)
    assert cosine_lr(20000, 1e-4, 2000, 26041, 1.0) == pytest.approx(1e-4)  # constant (official default)
    assert cosine_lr(26041, 3e-4, 2000, 26041, 0.1) == pytest.approx(3e-5)  # cosine down to min_ratio
    middle = 2000 + (26041 - 2000) / 2
    assert cosine_lr(middle, 1.0, 2000, 26041, 0.0) == pytest.approx(0.5)
    assert cosine_lr(5, 1.0, 0, 10, 0.0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))


def test_short_run_writes_a_complete_run_directory(sorting_dataset, tmp_path):
    run = tmp_path / "run"
    summary = train(config(sorting_dataset, run))
    assert summary["steps"] == summary["total_steps"] == 4 * 256 // 32
    assert {p.name for p in run.iterdir()} >= {
        "model.safetensors",
        "config.yaml",
        "optimizer.pt",
        "metrics.jsonl",
        "summary.json",
    }
    records = read_metrics(run)
    train_steps = [r["step"] for r in records if "train/lm_loss" in r]
    assert train_steps == list(range(1, 33))
    evals = [r for r in records if "eval/exact_accuracy" in r]
    assert [r["step"] for r in evals] == [16, 32]  # one evaluation per iteration of eval_interval epochs
    assert evals[-1]["eval/count"] == 64
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["arch"] == "hrm_act_v1" and saved["train"]["data_path"] == str(sorting_dataset)
    assert saved["model"]["seq_len"] == 6 and saved["model"]["forward_dtype"] == "float32"
    # evaluating the checkpoint reproduces the run's last evaluation
    result = run_evaluation(run, batch_size=32)
    assert result["metrics"]["exact_accuracy"] == pytest.approx(summary["eval/exact_accuracy"])
    assert result["metrics"]["accuracy"] == pytest.approx(summary["eval/accuracy"])
    # inference-time scaling runs more segments than trained with
    scaled = run_evaluation(run, max_steps=6, out=tmp_path / "scaled.json")
    assert scaled["act_steps"] == 6 and scaled["metrics"]["steps"] == pytest.approx(6.0)


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from reasonlens.hrm.training import trainer as training

    original = training.Trainer.train_batch
    def train_batch(self, batch):
        if self.step == int(sys.argv[2]):
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no flushing: like a pulled plug
        return original(self, batch)
    training.Trainer.train_batch = train_batch

    from reasonlens.cli.main import app
    app(["train", sys.argv[1]])
    """
)


@pytest.mark.parametrize(("kill_at", "checkpoint_every"), [(23, 5), (20, None)])
def test_resume_after_sigkill_matches_an_uninterrupted_run(sorting_dataset, tmp_path, kill_at, checkpoint_every):
    reference = train(config(sorting_dataset, tmp_path / "reference", checkpoint_every_steps=checkpoint_every))

    run = tmp_path / "killed"
    cfg = config(sorting_dataset, run, checkpoint_every_steps=checkpoint_every)
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg.model_dump()))
    (tmp_path / "killer.py").write_text(KILLER)
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "killer.py"), str(tmp_path / "cfg.yaml"), str(kill_at)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    last_checkpoint = torch.load(run / "optimizer.pt", weights_only=True)["train_state"]["step"]
    assert last_checkpoint == (20 if checkpoint_every else 16) < kill_at

    resumed = train(load_train_config(run))  # a run directory resumes from its saved config
    assert resumed["steps"] == reference["steps"]
    for key in ("eval/exact_accuracy", "eval/accuracy", "eval/lm_loss"):
        assert resumed[key] == reference[key]
    ours, theirs = load_file(run / "model.safetensors"), load_file(tmp_path / "reference" / "model.safetensors")
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert read_metrics(run) == read_metrics(tmp_path / "reference")


def _distributed_worker(rank, world_size, port, cfg_dict):
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size)
    )
    torch.set_num_threads(1)
    try:
        train(TrainConfig(**cfg_dict))
        torch.distributed.barrier()
    finally:
        torch.distributed.destroy_process_group()
    os._exit(0)  # skip gloo's occasionally aborting C++ teardown (see test_optimizers)


def test_two_gloo_processes_equal_one_process(sorting_dataset, tmp_path):
    """Same global batch split over 2 ranks: summed gradients, gathered sparse-embedding gradients and
    reduced metrics give the single-process result (exploration off: its draws are per-rank upstream)."""
    overrides = dict(epochs=2, eval_interval=1, model={**TINY_MODEL, "halt_exploration_prob": 0.0})
    single = train(config(sorting_dataset, tmp_path / "single", **overrides))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cfg = config(sorting_dataset, tmp_path / "multi", **overrides).model_dump()
    mp.spawn(_distributed_worker, args=(2, port, cfg), nprocs=2, join=True)
    multi = json.loads((tmp_path / "multi" / "summary.json").read_text())
    assert multi["world_size"] == 2 and multi["steps"] == single["steps"]
    ours, reference = (
        load_file(tmp_path / "multi" / "model.safetensors"),
        load_file(tmp_path / "single" / "model.safetensors"),
    )
    for key in reference:
        torch.testing.assert_close(ours[key], reference[key], rtol=1e-4, atol=1e-5, msg=key)
    assert multi["eval/exact_accuracy"] == pytest.approx(single["eval/exact_accuracy"])
    assert multi["eval/count"] == single["eval/count"] == 64


def test_ema_checkpoint_holds_the_averaged_weights(sorting_dataset, tmp_path):
    run = tmp_path / "ema"
    train(
        config(
            sorting_dataset,
            run,
            ema=True,
            ema_rate=0.9,
            arch="trm",
            model=dict(TINY_MODEL, L_layers=1, puzzle_emb_len=2),
        )
    )
    saved = load_file(run / "model.safetensors")
    raw = torch.load(run / "optimizer.pt", weights_only=True)["train_state"]
    shadow = raw["ema"]["shadow"]
    assert torch.equal(saved["inner.lm_head.weight"], shadow["inner.lm_head.weight"])
    assert not torch.equal(saved["inner.lm_head.weight"], raw["model"]["inner.lm_head.weight"])
    assert type(load_checkpoint(run)).__name__ == "TRM"


def test_per_batch_supervision_steps_once_per_segment(sorting_dataset, tmp_path):
    run = tmp_path / "per_batch"
    train(
        config(
            sorting_dataset,
            run,
            supervision="per_batch",
            epochs=2,
            eval_interval=1,
            model={**TINY_MODEL, "halt_exploration_prob": 0.0},
        )
    )
    moments = torch.load(run / "optimizer.pt", weights_only=True)["optimizers"][-1]["state"]
    adam_steps = {float(state["step"]) for state in moments.values()}
    # 16 batches; an untrained Q head never halts early, so 3 segments (= 3 optimizer steps) per batch
    assert adam_steps == {48.0}


def test_config_errors(sorting_dataset, tmp_path):
    with pytest.raises(ValueError, match=r"epochs \(5\) must be a multiple of eval_interval \(2\)"):
        config(sorting_dataset, tmp_path / "x", epochs=5)
    with pytest.raises(ValueError, match="model.seq_len is read from the dataset"):
        config(sorting_dataset, tmp_path / "x", model={"seq_len": 9})
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("keep me")
    with pytest.raises(TrainError, match="is not empty: pass resume=true"):
        train(config(sorting_dataset, tmp_path / "busy"))
    with pytest.raises(TrainError, match="make no full batch"):
        train(config(sorting_dataset, tmp_path / "big", global_batch_size=4096, epochs=1, eval_interval=1))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"data_path": str(sorting_dataset), "model": {"hidden_size": 32}}))
    loaded = load_train_config(cfg, ["lr=3e-4", "model.H_cycles=4", "ema=true"])
    assert loaded.lr == 3e-4 and loaded.model == {"hidden_size": 32, "H_cycles": 4} and loaded.ema is True
    with pytest.raises(ConfigError, match="lrr: unknown field; allowed fields"):
        load_train_config(cfg, ["lrr=1"])
    with pytest.raises(ConfigError, match="must look like key=value"):
        load_train_config(cfg, ["lr"])


def test_seed_003_deep_supervision_loop():
    torch.manual_seed(0)
    model = HRM(input_dim=6, hidden_dim=32, output_dim=2, N=2, T=2, num_layers=1)
    x = torch.randn(64, 6)
    y = torch.stack([x[:, :3].sum(-1), x[:, 3:].sum(-1)], -1)
    data = [(x, y)] * 30
    history = train_with_deep_supervision(model, data, segments=3, optimizer=torch.optim.Adam(model.parameters(), 3e-3))
    assert len(history) == 30 and all(len(h) == 3 for h in history)
    assert history[-1][-1] < 0.3 * history[0][0]
    with pytest.raises(ValueError, match="segments must be >= 1"):
        train_with_deep_supervision(model, data, segments=0)


def test_arc_runs_vote_over_augmentations(tmp_path):
    from reasonlens.hrm.data.arc_synthetic import SyntheticARCConfig, build_synthetic_arc_dataset

    data = build_synthetic_arc_dataset(
        SyntheticARCConfig(out_dir=tmp_path / "arc", num_tasks=8, canvas_size=8, num_aug=2, seed=0)
    )
    run = tmp_path / "run"
    summary = train(config(data, run, epochs=1, eval_interval=1, global_batch_size=8, max_train_steps=3))
    for rule in ("task_all_or_nothing", "per_test_input"):
        assert 0.0 <= summary[f"eval/arc/{rule}/pass@2"] <= 1.0
    assert (run / "eval" / "step_3_submission.json").is_file()
    arc = json.loads((run / "eval" / "step_3_arc.json").read_text())
    assert arc["num_tasks"] == 4 and arc["num_unmatched_rows"] == 0  # half the tasks are evaluation tasks
    result = run_evaluation(run, batch_size=8, out=tmp_path / "eval.json")
    assert result["arc"]["per_test_input"]["pass@2"] == summary["eval/arc/per_test_input/pass@2"]
    assert json.loads((tmp_path / "eval.submission.json").read_text()).keys() == arc["tasks"].keys()


def test_optional_loggers_are_asked_for_and_explain_missing_packages(sorting_dataset, tmp_path):
    import importlib.util

    for logger, package in (("tensorboard", "tensorboard"), ("wandb", "wandb")):
        cfg = config(sorting_dataset, tmp_path / logger, logger=logger, max_steps=1, epochs=1, eval_interval=1)
        if importlib.util.find_spec(package) is None:
            with pytest.raises(TrainError, match=f"needs the {package} package: pip install {package}"):
                train(cfg)
            assert not (tmp_path / logger).exists()  # nothing created before the error
        elif logger == "tensorboard":
            train(cfg)
            assert any((tmp_path / logger / "tensorboard").iterdir())
