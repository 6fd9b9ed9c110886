"""Training one agent through a curriculum of environments, its weights carried from stage to stage.

A curriculum is a YAML file: a ``seed``, ``base`` settings for every stage (any :class:`AgentConfig` field)
and the ``stages``, each an ``env_id`` with its own settings on top (``steps``, ``exploration_initial_eps``,
...). Stage k trains with :func:`reasonlens.agents.train.train_agent` from the kept snapshot of stage k-1
(``init_from``); every stage keeps its best snapshot by evaluation seeds disjoint from its test seeds, so
the last stage's ``evaluation.json`` is a held-out number. The environments must share the observation
size and action set (the LavaCrossing and Empty rooms do: the 7×7 egocentric view, three actions).

    <out>/curriculum.yaml          the curriculum as run (a resume must ask for the same)
    <out>/stages/<k>-<env_id>/     each stage's agent directory (train_agent's layout)
    <out>/agent.zip, policy.safetensors, config.yaml, evaluation.json
                                   the last stage's agent, so <out> is itself an agent directory
    <out>/training_curve.json      every stage's evaluations in order, each point with its stage

Resumable: a stage trains into ``stages/.<k>-<env_id>.partial`` and is renamed when complete, so a
resumed curriculum skips finished stages and restarts an interrupted one (its partial folder, which only
this module makes, is replaced). Nothing is written when the file or a stage is invalid.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from pydantic import Field

from reasonlens.agents.agent import AGENT_FILE, CONFIG_FILE, CURVE_FILE, EVAL_FILE, POLICY_FILE, Agent
from reasonlens.agents.config import AgentConfig, config_for
from reasonlens.agents.envs import check_env_id
from reasonlens.agents.errors import AgentError
from reasonlens.utils.config import ConfigError, StrictConfig
from reasonlens.utils.io import OWNER_FILE, FolderError, is_owned, mark_owned, read_yaml, write_json, write_yaml

KIND = "agents curriculum"
PLAN_FILE = "curriculum.yaml"
STAGES_DIR = "stages"
FIXED = ("init_from", "init_seed", "seed")  # set by the curriculum itself, not by a stage


class CurriculumConfig(StrictConfig):
    seed: int = 0
    init_seed: int | None = Field(None, description="the first stage's initial weights (default: from seed)")
    base: dict = Field(default_factory=dict, description="settings for every stage (AgentConfig fields)")
    stages: list[dict] = Field(min_length=1, description="each: env_id and its own settings")


def read_curriculum(path: str | os.PathLike, seed: int | None = None, init_seed: int | None = None) -> CurriculumConfig:
    """The curriculum in ``path`` (``seed`` and ``init_seed`` override the file's), every stage checked."""
    path = Path(path)
    if not path.is_file():
        raise AgentError(f"curriculum file not found: {path}")
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise AgentError(f"{path}: a curriculum is a mapping with seed, base and stages")
    overrides = {name: value for name, value in (("seed", seed), ("init_seed", init_seed)) if value is not None}
    curriculum = CurriculumConfig.from_dict({**raw, **overrides})
    stage_configs(curriculum)  # every stage's config is valid before anything trains
    return curriculum


def stage_configs(curriculum: CurriculumConfig) -> list[AgentConfig]:
    """Each stage's AgentConfig (its env's recipe, then ``base``, then the stage), without ``init_from``."""
    configs = []
    for k, stage in enumerate(curriculum.stages):
        settings = {**curriculum.base, **stage}
        fixed = [name for name in FIXED if name in settings]
        if fixed:
            raise AgentError(f"stage {k}: {', '.join(fixed)} is set by the curriculum; remove it")
        if "env_id" not in settings:
            raise AgentError(f"stage {k} has no env_id")
        check_env_id(settings["env_id"])
        try:
            init_seed = curriculum.init_seed if k == 0 else None  # later stages start from the previous one
            configs.append(config_for(**settings, seed=curriculum.seed, init_seed=init_seed))
        except ConfigError as err:
            raise AgentError(f"stage {k}: {err}") from None
    return configs


def stage_name(k: int, config: AgentConfig) -> str:
    return f"{k}-{config.env_id}"


def read_json(path: Path):
    return json.loads(path.read_text())


def prepare_folder(out: Path, curriculum: CurriculumConfig) -> bool:
    """Make ``out``, or check that it is a curriculum folder of this curriculum; return whether it is
    resumed. Nothing is written when the check fails."""
    plan = curriculum.model_dump()
    if out.exists():
        if not out.is_dir():
            raise FolderError(f"{out} is a file, not a folder; choose another --out")
        if any(out.iterdir()):
            if not is_owned(out) or not (out / PLAN_FILE).is_file():
                raise FolderError(
                    f"{out} is not a curriculum folder made by reasonlens (no {OWNER_FILE} and {PLAN_FILE}); "
                    "choose another --out"
                )
            if read_yaml(out / PLAN_FILE) != plan:
                raise AgentError(f"{out} holds another curriculum ({PLAN_FILE} differs); choose another --out")
            return True
    (out / STAGES_DIR).mkdir(parents=True, exist_ok=True)
    mark_owned(out, KIND)
    write_yaml(out / PLAN_FILE, plan)
    return False


def train_curriculum(curriculum: CurriculumConfig, out: str | os.PathLike, log: Callable[[str], None] = print) -> Agent:
    """Train (or resume) every stage into ``out``; return the last stage's agent (see the module docstring)."""
    from reasonlens.agents.train import train_agent  # stable-baselines3's trainer, only when training

    out = Path(out)
    configs = stage_configs(curriculum)
    resumed = prepare_folder(out, curriculum)
    log(f"{'resuming' if resumed else 'starting'} a {len(configs)}-stage curriculum in {out}")
    previous: Path | None = None
    for k, config in enumerate(configs):
        name = stage_name(k, config)
        done, partial = out / STAGES_DIR / name, out / STAGES_DIR / f".{name}.partial"
        if (done / EVAL_FILE).is_file():
            log(f"[{k + 1}/{len(configs)}] {config.env_id}: done ({read_json(done / EVAL_FILE)['success_rate']:.1%})")
        else:
            if partial.exists():
                shutil.rmtree(partial)  # an interrupted stage: this module made the folder
            start = None if previous is None else str(previous.resolve())
            log(f"[{k + 1}/{len(configs)}] {config.env_id}, {config.steps:,} steps from {start or 'scratch'}")
            train_agent(config.model_copy(update={"init_from": start}), partial, log=log)
            partial.rename(done)
        previous = done
    finish(out, [stage_name(k, c) for k, c in enumerate(configs)])
    return Agent.load(out)


def finish(out: Path, names: list[str]) -> None:
    """Copy the last stage's agent into ``out`` and write the whole curve (evaluation.json last)."""
    last = out / STAGES_DIR / names[-1]
    for file in (AGENT_FILE, POLICY_FILE, CONFIG_FILE):
        shutil.copy2(last / file, out / file)
    curve, steps_before = [], 0
    for name in names:
        stage_curve = read_json(out / STAGES_DIR / name / CURVE_FILE)
        curve += [{**point, "stage": name, "total_steps": steps_before + point["steps"]} for point in stage_curve]
        steps_before += read_json(out / STAGES_DIR / name / EVAL_FILE)["steps"]
    write_json(out / CURVE_FILE, curve)
    shutil.copy2(last / EVAL_FILE, out / EVAL_FILE)
