"""An agent's DQN on disk: written with stable-baselines3, read back **without unpickling anything**.

SB3's ``agent.zip`` holds ``policy.pth`` (the policy's state dict, a plain torch file) and a ``data`` JSON
whose entries (``lr_schedule``, ``exploration_schedule``, the spaces, ...) are cloudpickled: ``DQN.load``
unpickles them, so a crafted ``agent.zip`` runs any code its author chose. We never call it by default.

- :func:`save_model` writes ``agent.zip`` (``model.save``: the seed tools' file, usable by SB3) and
  ``policy.safetensors`` (the same policy state dict; its metadata records the CRC-32 of the zip's
  ``policy.pth``, so a zip rewritten later is noticed).
- :func:`read_policy_state` reads the policy state dict: from ``policy.safetensors`` when it matches the
  zip (or there is no zip), else from the zip's ``policy.pth`` member with
  ``torch.load(..., weights_only=True)`` (tensors only). Nothing else in the zip is read.
- :func:`rebuild_model` builds a fresh ``DQN("MlpPolicy", ...)`` from the agent's ``config.yaml`` (env id,
  action set, ``net_arch`` and the training settings) — the Q-network's shape is checked against the
  weights' shapes first — and loads the weights into it. Its ``policy.q_net``, ``predict`` and observation
  preprocessing are SB3's own, so Q-values and actions equal those of ``DQN.load`` exactly.
- :func:`load_pickled_model` is ``DQN.load`` itself: only for a foreign zip you trust (``--trust-pickle``).
"""

from __future__ import annotations

import io
import itertools
import os
import warnings
import zipfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from stable_baselines3 import DQN

from reasonlens.agents.config import AgentConfig
from reasonlens.agents.envs import make_env
from reasonlens.agents.errors import AgentError
from reasonlens.utils.io import atomic_write, load_safetensors, save_safetensors

AGENT_FILE = "agent.zip"
POLICY_FILE = "policy.safetensors"
ZIP_POLICY = "policy.pth"  # the member of SB3's zip holding the policy's state dict
CRC_KEY = "agent_zip_policy_crc32"
MAX_POLICY_BYTES = 2**30  # a zip member declaring more is refused before it is unpacked
TRUST_HINT = (
    "only if you trust whoever made the file, pass --trust-pickle (Python: Agent.load(..., trust_pickle=True)) "
    "to load it with stable-baselines3's DQN.load, which unpickles it and so runs any code it holds"
)


def learning_rate(config: AgentConfig):
    if config.learning_rate_final is None:
        return config.learning_rate
    start, end = config.learning_rate, config.learning_rate_final
    return lambda progress_remaining: end + (start - end) * progress_remaining


def dqn_kwargs(config: AgentConfig) -> dict:
    """SB3 ``DQN`` keyword arguments (all but the policy and the env) for ``config``."""
    return dict(
        learning_rate=learning_rate(config),
        buffer_size=config.buffer_size,
        learning_starts=config.learning_starts,
        batch_size=config.batch_size,
        gamma=config.gamma,
        train_freq=config.train_freq,
        gradient_steps=config.gradient_steps,
        n_steps=config.n_step,
        target_update_interval=config.target_update_interval,
        exploration_fraction=config.exploration_fraction,
        exploration_initial_eps=config.exploration_initial_eps,
        exploration_final_eps=config.exploration_final_eps,
        policy_kwargs={"net_arch": list(config.net_arch)},
        seed=config.seed,
        device=config.device,
        verbose=0,
    )


def _zip_policy_crc(path: Path) -> int | None:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.getinfo(ZIP_POLICY).CRC
    except (OSError, KeyError, zipfile.BadZipFile):
        return None


def save_model(model: DQN, folder: str | os.PathLike) -> None:
    """``folder/agent.zip`` (SB3's save) and then ``folder/policy.safetensors``, each written atomically."""
    folder = Path(folder)
    with atomic_write(folder / AGENT_FILE, "wb") as handle:
        model.save(handle)
    crc = _zip_policy_crc(folder / AGENT_FILE)
    save_safetensors(
        folder / POLICY_FILE,
        model.policy.state_dict(),
        metadata={"format": "stable-baselines3 DQNPolicy state dict", CRC_KEY: str(crc)},
    )


def _one_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def _from_safetensors(path: Path, zip_crc: int | None) -> dict[str, torch.Tensor] | None:
    """The state dict in ``path``, or None when it was written for another ``agent.zip`` than the one there."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (OSError, SafetensorError) as err:
        raise AgentError(f"{path} is not a readable safetensors file: {_one_line(err)}") from None
    if zip_crc is not None and metadata.get(CRC_KEY) != str(zip_crc):
        return None  # agent.zip was saved again after it: its policy.pth is the current one
    return load_safetensors(path)


def _from_zip(path: Path) -> dict[str, torch.Tensor]:
    try:
        with zipfile.ZipFile(path) as archive:
            size = archive.getinfo(ZIP_POLICY).file_size
            if size > MAX_POLICY_BYTES:
                raise AgentError(f"{path}: its {ZIP_POLICY} unpacks to {size:,} bytes, more than a DQN policy can be")
            raw = archive.read(ZIP_POLICY)
    except KeyError:
        raise AgentError(f"{path} has no {ZIP_POLICY}: it is not a stable-baselines3 model file") from None
    except (OSError, zipfile.BadZipFile) as err:
        raise AgentError(f"{path} is not a readable zip file: {_one_line(err)}") from None
    try:
        state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as err:  # weights_only refuses anything but tensors and plain containers
        raise AgentError(
            f"{path}: its {ZIP_POLICY} is not a plain torch state dict ({_one_line(err)}); {TRUST_HINT}"
        ) from None
    return state


def read_policy_state(folder: Path) -> tuple[dict[str, torch.Tensor], Path]:
    """The policy's state dict of the agent in ``folder`` and the file it came from; unpickles nothing."""
    zip_path, tensors_path = folder / AGENT_FILE, folder / POLICY_FILE
    has_zip = zip_path.is_file()
    state, source = None, tensors_path
    if tensors_path.is_file():
        state = _from_safetensors(tensors_path, _zip_policy_crc(zip_path) if has_zip else None)
    if state is None:
        state, source = _from_zip(zip_path), zip_path
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise AgentError(f"{source} does not hold a state dict of tensors")
    return state, source


def architecture(state: dict[str, torch.Tensor], source: Path) -> tuple[int, list[int], int]:
    """(observation size, hidden widths, number of actions) of the Q-network whose weights are ``state``."""
    prefix = "q_net.q_net."
    indices = sorted(
        int(key[len(prefix) : -len(".weight")])
        for key in state
        if key.startswith(prefix) and key.endswith(".weight") and key[len(prefix) : -len(".weight")].isdigit()
    )
    shapes = [tuple(state[f"{prefix}{i}.weight"].shape) for i in indices]
    if not shapes or any(len(shape) != 2 for shape in shapes):
        raise AgentError(f"{source} holds no MlpPolicy Q-network weights ({prefix}<i>.weight)")
    for (out_features, _), (_, in_features) in itertools.pairwise(shapes):
        if out_features != in_features:
            raise AgentError(f"{source}: the Q-network's Linear layers do not chain (shapes {shapes})")
    return shapes[0][1], [shape[0] for shape in shapes[:-1]], shapes[-1][0]


def rebuild_model(config: AgentConfig, state: dict[str, torch.Tensor], source: Path, device: str = "cpu") -> DQN:
    """A fresh SB3 DQN built from ``config`` with the policy weights ``state`` loaded into it."""
    obs_dim, hidden, n_actions = architecture(state, source)
    env = make_env(config.env_id, config.actions)
    env_obs, env_actions = int(env.observation_space.shape[0]), int(env.action_space.n)
    if (obs_dim, n_actions) != (env_obs, env_actions):
        raise AgentError(
            f"{source}: the Q-network maps {obs_dim} inputs to {n_actions} actions, but {config.env_id} with "
            f"actions={config.actions!r} (config.yaml) observes {env_obs} values and has {env_actions} actions"
        )
    if hidden != list(config.net_arch):
        raise AgentError(
            f"{source}: the Q-network's hidden layers have widths {hidden}, but config.yaml says "
            f"net_arch {list(config.net_arch)}"
        )
    model = DQN("MlpPolicy", env, **{**dqn_kwargs(config), "device": device})
    try:
        model.policy.load_state_dict(state)
    except RuntimeError as err:  # missing / unexpected keys, wrong shapes
        raise AgentError(
            f"{source} does not fit SB3's MlpPolicy built from config.yaml: {_one_line(err)}; {TRUST_HINT}"
        ) from None
    model.policy.set_training_mode(False)
    return model


def load_pickled_model(path: Path, device: str = "cpu") -> DQN:
    """SB3's ``DQN.load``: unpickles the zip's ``data``, so it runs whatever code the file holds."""
    try:
        with warnings.catch_warnings():  # SB3 warns that n-step replay settings are not rebuilt: we never train
            warnings.simplefilter("ignore", UserWarning)
            model = DQN.load(path, device=device)
    except Exception as err:  # SB3 raises zipfile / pickle / key errors for a damaged file
        raise AgentError(f"{path} is not a loadable stable-baselines3 DQN: {_one_line(err)}") from None
    model.policy.set_training_mode(False)
    return model
