"""Comparing the units of two agents' Q-networks: which unit of one plays the part of which unit of the other.

Unit order is arbitrary — two networks that compute the same thing may list their units in any order — so
units are matched by what they do: on the same observations, the Pearson correlation of every unit of
agent A's layer with every unit of agent B's, and the one-to-one assignment that maximises the summed
correlation (the Hungarian algorithm, ``scipy.optimize.linear_sum_assignment``). A unit that never varies
on the observations (a dead ReLU input) correlates with nothing (0). With the matching, a unit set found
in A (say, by the narrowing search) is mapped into B's numbering and compared with B's own set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from reasonlens.agents.agent import Agent
from reasonlens.agents.errors import AgentError
from reasonlens.agents.extraction import capture_layers


def correlations(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, units_a), (N, units_b) activations on the same N inputs -> (units_a, units_b) Pearson correlations;
    0 wherever a unit does not vary."""
    if a.shape[0] != b.shape[0] or a.shape[0] < 2:
        raise AgentError(f"need the same two or more inputs for both agents (got {a.shape[0]} and {b.shape[0]})")
    a = a - a.mean(0)
    b = b - b.mean(0)
    norm_a, norm_b = np.linalg.norm(a, axis=0), np.linalg.norm(b, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = (a.T @ b) / np.outer(norm_a, norm_b)  # (units_a, units_b)
    return np.nan_to_num(corr, nan=0.0, posinf=0.0, neginf=0.0)


@dataclass
class UnitMatching:
    layer: str
    to_b: list[int]  # unit i of A is unit to_b[i] of B
    correlation: list[float]  # the matched pairs' correlations

    def map_units(self, units: list[int]) -> list[int]:
        """A's unit indices in B's numbering."""
        return sorted(self.to_b[u] for u in units)

    def summary(self) -> dict:
        corr = np.asarray(self.correlation)
        return {
            "layer": self.layer,
            "mean_correlation": round(float(corr.mean()), 4),
            "matched_above_0.9": int((corr > 0.9).sum()),
            "matched_above_0.5": int((corr > 0.5).sum()),
            "units": len(corr),
        }


def match_units(a: np.ndarray, b: np.ndarray, layer: str = "") -> UnitMatching:
    """The one-to-one matching of A's units to B's with the largest summed correlation."""
    if a.shape[1] != b.shape[1]:
        raise AgentError(f"layer {layer}: A has {a.shape[1]} units and B {b.shape[1]}; matching needs equal widths")
    corr = correlations(a, b)
    rows, cols = linear_sum_assignment(-corr)
    to_b = np.empty(a.shape[1], dtype=int)
    to_b[rows] = cols
    return UnitMatching(layer, to_b.tolist(), corr[rows, cols][np.argsort(rows)].round(6).tolist())


def match_agents(agent_a: Agent, agent_b: Agent, observations: torch.Tensor, layers: list[str]) -> dict:
    """{layer: UnitMatching} of two agents' hidden layers on the same observations (values before the ReLU,
    as the guide's extraction records them)."""
    values_a, values_b = capture_layers(agent_a, observations), capture_layers(agent_b, observations)
    matchings = {}
    for layer in layers:
        layer_a, layer_b = agent_a.check_layer(layer), agent_b.check_layer(layer)
        matchings[layer] = match_units(
            np.asarray(values_a[layer_a], dtype=np.float64), np.asarray(values_b[layer_b], dtype=np.float64), layer
        )
    return matchings


def jaccard(first: list[int], second: list[int]) -> float:
    first_set, second_set = set(first), set(second)
    union = first_set | second_set
    return len(first_set & second_set) / len(union) if union else 1.0
