"""The trainer's CPU settings (utils.cpu): threads, compile only where it can pay back, a failed compile
falls back to eager."""

from __future__ import annotations

import torch

from reasonlens.utils import cpu


def test_busy_cores_reads_the_runnable_count_less_this_process(tmp_path):
    loadavg = tmp_path / "loadavg"
    loadavg.write_text("1.50 0.90 0.40 3/89 4654\n")  # 3 runnable: this reader and two others
    assert cpu.busy_cores(looks=3, interval_s=0, loadavg=loadavg) == 2
    loadavg.write_text("0.00 0.00 0.00 1/89 4654\n")
    assert cpu.busy_cores(looks=3, interval_s=0, loadavg=loadavg) == 0


def test_auto_threads_leave_busy_cores_and_keep_one(monkeypatch):
    monkeypatch.setattr(cpu, "core_count", lambda: 4)
    monkeypatch.setattr(cpu, "busy_cores", lambda: 1)
    assert cpu.auto_threads() == 3
    monkeypatch.setattr(cpu, "busy_cores", lambda: 9)
    assert cpu.auto_threads() == 1


def test_set_threads_applies_a_count_and_auto():
    before = torch.get_num_threads()
    try:
        assert cpu.set_threads(1) == 1 and torch.get_num_threads() == 1
        assert 1 <= cpu.set_threads("auto") <= cpu.core_count()
    finally:
        torch.set_num_threads(before)


def test_should_compile_only_long_runs_with_a_compiler(monkeypatch):
    device = torch.device("cpu")
    assert cpu.should_compile(True, device, 10)[0] is True
    assert cpu.should_compile(False, device, 10**6)[0] is False
    compile_now, why = cpu.should_compile("auto", device, cpu.COMPILE_MIN_STEPS - 1)
    assert not compile_now and "eager" in why
    monkeypatch.setattr(cpu, "has_compiler", lambda: True)
    assert cpu.should_compile("auto", device, cpu.COMPILE_MIN_STEPS)[0] is True
    monkeypatch.setattr(cpu, "has_compiler", lambda: False)
    compile_now, why = cpu.should_compile("auto", device, cpu.COMPILE_MIN_STEPS)
    assert not compile_now and "no C++ compiler" in why


def test_has_compiler_looks_at_cxx_and_the_path(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CXX", raising=False)
    assert not cpu.has_compiler()
    fake = tmp_path / "c++"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert cpu.has_compiler()


def test_trainer_applies_threads_and_falls_back_when_compile_fails(tmp_path, monkeypatch):
    from conftest import tiny_hrm_config

    from reasonlens.hrm.data.sudoku import SudokuBuildConfig, build_sudoku_dataset
    from reasonlens.hrm.training.trainer import TrainConfig, Trainer

    def broken_compile(module, **_):
        def run(*args, **kwargs):
            raise RuntimeError("no working compiler (planted)")

        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    data = build_sudoku_dataset(
        SudokuBuildConfig(out_dir=tmp_path / "data", source="generate", size=4, train_size=32, test_size=8, seed=0)
    )
    model = {k: v for k, v in tiny_hrm_config().items() if k not in ("seq_len", "vocab_size")}
    lines, before = [], torch.get_num_threads()
    try:
        config = TrainConfig(
            data_path=str(data),
            run_dir=str(tmp_path / "run"),
            global_batch_size=16,
            epochs=1,
            lr=1e-3,
            progress=False,
            model=model,
            threads=1,
            compile=True,
            eval_interval=1,
        )
        trainer = Trainer(config, log=lines.append)
        assert torch.get_num_threads() == 1 and trainer.compiled
        summary = trainer.fit()
    finally:
        torch.set_num_threads(before)
    assert any("torch.compile failed" in line and "training eagerly" in line for line in lines)
    assert summary["steps"] == trainer.stop_step and summary["threads"] == 1  # the run finished eagerly
    short = TrainConfig(
        data_path=str(data),
        run_dir=str(tmp_path / "run2"),
        epochs=1,
        eval_interval=1,
        progress=False,
        model=model,
        global_batch_size=16,
    )
    assert short.compile == "auto" and short.threads == "auto"
    assert not Trainer(short, log=lines.append).compiled  # a 1-step run is not worth compiling
