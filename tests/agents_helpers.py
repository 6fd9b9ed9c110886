"""Tiny agent directories for the agents tests: untrained (fast), with planted weights (a known circuit), or
made hostile (a pickle payload planted in ``agent.zip``)."""

import base64
import json
import pickle
import zipfile
from pathlib import Path

import torch

from reasonlens.agents.agent import CONFIG_FILE, Agent
from reasonlens.agents.config import config_for
from reasonlens.agents.model import save_model
from reasonlens.agents.train import build_model
from reasonlens.utils.io import write_yaml

TINY_OVERRIDES = dict(
    eval_every=1_000, eval_episodes=4, test_episodes=4, n_envs=2, learning_starts=100, buffer_size=2_000
)


def make_agent_dir(path: Path, env_id: str = "MiniGrid-Empty-5x5-v0", net_arch=(128, 128), seed: int = 0) -> Agent:
    """An agent directory with a freshly initialised (untrained) DQN."""
    config = config_for(env_id, net_arch=list(net_arch), seed=seed, **TINY_OVERRIDES)
    torch.manual_seed(seed)
    model = build_model(config)
    path.mkdir(parents=True, exist_ok=True)
    write_yaml(path / CONFIG_FILE, config.model_dump())
    save_model(model, path)  # agent.zip + policy.safetensors, as training writes them
    return Agent.load(path)


def plant_circuit(path: Path, feature: int = 10, unit0: int = 5, unit2: int = 9) -> Agent:
    """Rewrite an agent's Q-network so that the action is decided by one input feature through one unit of
    ``q_net.0`` and one of ``q_net.2``: Q(left) = h2[unit2], Q(right) = 0.5, Q(forward) = 0.25, with
    h2[unit2] = relu(h0[unit0]) and h0[unit0] = observation[feature]. Every other unit is 0."""
    agent = Agent.load(path)
    model = agent.model
    (_, first), (_, second), (_, last) = agent.linear_layers()
    with torch.no_grad():
        for layer in (first, second, last):
            layer.weight.zero_()
            layer.bias.zero_()
        first.weight[unit0, feature] = 1.0
        second.weight[unit2, unit0] = 1.0
        last.weight[0, unit2] = 1.0
        last.bias[1] = 0.5
        last.bias[2] = 0.25
    model.policy.q_net_target.load_state_dict(model.policy.q_net.state_dict())
    save_model(model, path)
    return Agent.load(path)


class Touch:
    """Unpickling this creates ``path``: the stand-in for the code a crafted file runs."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def __reduce__(self):
        return (Path.touch, (self.path,))


def rewrite_zip_member(zip_path: Path, member: str, content: bytes) -> None:
    """Replace one member of a zip file, keeping the others as they are."""
    with zipfile.ZipFile(zip_path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    members[member] = content
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def plant_pickle_payload(zip_path: Path, marker: Path, entry: str = "lr_schedule") -> None:
    """Turn a real SB3 ``agent.zip`` into a hostile one: its ``data`` entry ``entry`` (cloudpickled by SB3)
    becomes a pickle that creates ``marker`` when SB3's ``DQN.load`` unpickles it."""
    with zipfile.ZipFile(zip_path) as archive:
        data = json.loads(archive.read("data"))
    assert ":serialized:" in data[entry]  # a real pickled entry is replaced
    data[entry][":serialized:"] = base64.b64encode(pickle.dumps(Touch(marker))).decode()
    rewrite_zip_member(zip_path, "data", json.dumps(data).encode())
