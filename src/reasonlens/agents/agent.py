"""A saved agent: its directory layout, loading, and the Q-network as the interp engine sees it.

An agent directory holds ``agent.zip`` (the SB3 DQN), ``policy.safetensors`` (its policy weights),
``config.yaml``, ``training_curve.json`` and ``evaluation.json`` (see :mod:`reasonlens.agents.train`), and
the seed tools' working folders: ``activation_inputs/`` (input files), ``activation_logging/`` (extracted
activations) and ``patching_results/``.

**Loading unpickles nothing** (:mod:`reasonlens.agents.model`): the DQN is rebuilt from ``config.yaml`` and
only the policy weights are read (``policy.safetensors``, else ``policy.pth`` from the zip with
``torch.load(weights_only=True)``). SB3's ``DQN.load`` — which unpickles the zip's ``data`` and so runs any
code a crafted file holds — is used only with ``trust_pickle=True`` (``--trust-pickle``), for a foreign
SB3 zip without ``config.yaml``.

**Layer names.** The engine runs ``policy.q_net`` (SB3's ``QNetwork``), so its layers are the names the
neuron-patching guide uses: ``q_net.0`` (first Linear), ``q_net.1`` (its ReLU), ``q_net.2``, …, the last
Linear giving the Q-values. The same layers spelled from the policy (``q_net.q_net.0``) are aliases.
A Linear's value is its output *before* the ReLU (as the seed's extraction records it); unit j of
``q_net.0`` is active when that value is > 0, and patching it patches what the ReLU passes on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from stable_baselines3 import DQN
from torch import nn

from reasonlens.agents.config import AgentConfig
from reasonlens.agents.errors import AgentError
from reasonlens.agents.model import (
    AGENT_FILE,
    POLICY_FILE,
    TRUST_HINT,
    architecture,
    load_pickled_model,
    read_policy_state,
    rebuild_model,
)
from reasonlens.interp import Alias
from reasonlens.utils.io import read_yaml

__all__ = ["AGENT_FILE", "POLICY_FILE", "Agent"]

UNKNOWN_ENV = "unknown (no config.yaml)"
CONFIG_FILE = "config.yaml"
CURVE_FILE = "training_curve.json"
EVAL_FILE = "evaluation.json"
INPUTS_DIR = "activation_inputs"
ACTIVATIONS_DIR = "activation_logging"
RESULTS_DIR = "patching_results"


@dataclass
class Agent:
    path: Path
    config: AgentConfig
    model: DQN
    q_net: nn.Module = field(repr=False)
    has_config: bool = True  # False: a foreign zip loaded with trust_pickle; its environment is unknown

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cpu", trust_pickle: bool = False) -> Agent:
        """Load an agent directory without unpickling anything (see the module docstring).

        ``trust_pickle=True`` loads ``agent.zip`` with SB3's ``DQN.load`` instead, which unpickles it and
        so runs any code it holds: only for a foreign SB3 zip (no ``config.yaml``) whose maker you trust."""
        path = Path(path)
        if not path.is_dir():
            raise AgentError(f"agent directory not found: {path}")
        has_zip, has_config = (path / AGENT_FILE).is_file(), (path / CONFIG_FILE).is_file()
        has_weights = has_zip or (path / POLICY_FILE).is_file()
        if has_zip and not has_config and not trust_pickle:
            raise AgentError(
                f"{path} has {AGENT_FILE} but no {CONFIG_FILE} (a foreign stable-baselines3 zip?), so its DQN cannot "
                f"be rebuilt without unpickling the zip; add a {CONFIG_FILE} naming env_id (and actions, net_arch), "
                f"or, {TRUST_HINT}"
            )
        if not has_weights or not (has_config or has_zip):
            missing = [name for name, ok in ((AGENT_FILE, has_weights), (CONFIG_FILE, has_config)) if not ok]
            raise AgentError(
                f"{path} is not an agent directory: it lacks {', '.join(missing)} "
                f"(an agent directory holds {AGENT_FILE} and {CONFIG_FILE}; create one with `reasonlens agents train`)"
            )
        if trust_pickle and has_zip:
            model = load_pickled_model(path / AGENT_FILE, device)
            if has_config:
                config = AgentConfig.from_dict(read_yaml(path / CONFIG_FILE))
            else:
                _, hidden, n_actions = architecture(model.policy.state_dict(), path / AGENT_FILE)
                config = AgentConfig.model_construct(  # a description only: nothing is trained or rebuilt from it
                    env_id=UNKNOWN_ENV,
                    net_arch=hidden,
                    actions="navigation" if n_actions == 3 else "all",
                    device=device,
                )
        else:
            config = AgentConfig.from_dict(read_yaml(path / CONFIG_FILE))
            state, source = read_policy_state(path)
            model = rebuild_model(config, state, source, device)
        q_net = model.policy.q_net.eval()
        return cls(path=path, config=config, model=model, q_net=q_net, has_config=has_config)

    def require_env(self, what: str) -> AgentConfig:
        """The config, when it names the agent's environment (``what`` needs it); else a clear error."""
        if not self.has_config:
            raise AgentError(
                f"{what} needs the agent's environment, but {self.path} has no {CONFIG_FILE}: "
                f"add one naming env_id (and actions, net_arch)"
            )
        return self.config

    @property
    def device(self) -> torch.device:
        return next(self.q_net.parameters()).device

    @property
    def obs_dim(self) -> int:
        return self.linear_layers()[0][1].in_features

    def layers(self) -> dict[str, int]:
        """{layer name: width} for every module of the Q-network's Sequential, in order."""
        widths, width = {}, self.obs_dim
        for name, module in self.q_net.q_net.named_children():
            if isinstance(module, nn.Linear):
                width = module.out_features
            widths[f"q_net.{name}"] = width
        return widths

    def linear_layers(self) -> list[tuple[str, nn.Linear]]:
        return [(f"q_net.{n}", m) for n, m in self.q_net.q_net.named_children() if isinstance(m, nn.Linear)]

    def hidden_layers(self) -> list[str]:
        """The Linear layers whose outputs feed a ReLU: the ones neuron finding searches."""
        return [name for name, _ in self.linear_layers()[:-1]]

    @property
    def aliases(self) -> dict[str, Alias]:
        return {f"q_net.{name}": Alias(name, description=f"{name} spelled from the policy") for name in self.layers()}

    def check_layer(self, layer: str) -> str:
        """The canonical name of ``layer`` (``q_net.q_net.2`` → ``q_net.2``) or an error listing the valid ones."""
        canonical = layer[len("q_net.") :] if layer.startswith("q_net.q_net.") else layer
        if canonical not in self.layers():
            raise AgentError(f"unknown layer {layer!r}; valid layers: {', '.join(self.layers())}")
        return canonical

    def q_values(self, observations: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.q_net(observations.to(self.device, torch.float32))

    def resolve_input(self, name: str | os.PathLike) -> Path:
        """An input file as given, else under ``activation_inputs/`` (as the seed tools resolve it)."""
        return _resolve(Path(name), self.path / INPUTS_DIR, "input file")

    def resolve_activations(self, name: str | os.PathLike) -> Path:
        """An activation file as given, else under ``activation_logging/``."""
        return _resolve(Path(name), self.path / ACTIVATIONS_DIR, "activation file")


def _resolve(path: Path, folder: Path, what: str) -> Path:
    for candidate in (path, folder / path):
        if candidate.is_file():
            return candidate
    raise AgentError(f"{what} not found: looked for {path} and {folder / path}")
