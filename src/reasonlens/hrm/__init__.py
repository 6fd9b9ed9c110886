"""The HRM family: HRM-ACT-v1 (official-equivalent), TRM, the direct-prediction transformer and the
paper-notation HRM, in the rooms of seed 003 — ``models/``, ``data/``, ``training/``, ``evaluation/``,
``analysis/`` (docs/hrm.md has the table). This package re-exports what a user of the models needs: the
models, configs, carries, loss head, optimizers, EMA and checkpoint I/O."""

from reasonlens.hrm.data.format import IGNORE_LABEL_ID
from reasonlens.hrm.models.baselines import HRM, HRMState, TransformerACT
from reasonlens.hrm.models.config import ConfigError, HRMConfig, TransformerACTConfig, TRMConfig
from reasonlens.hrm.models.hrm_act_v1 import ACTModel, Carry, HRMACTv1, InnerCarry
from reasonlens.hrm.models.sparse_embedding import CastedSparseEmbedding, CastedSparseEmbeddingSignSGD_Distributed
from reasonlens.hrm.models.trm import TRM
from reasonlens.hrm.training.checkpoint import (
    CheckpointError,
    export_official_checkpoint,
    load_checkpoint,
    load_optimizer_state,
    save_checkpoint,
)
from reasonlens.hrm.training.ema import EMA
from reasonlens.hrm.training.losses import ACTLossHead, softmax_cross_entropy, stablemax_cross_entropy
from reasonlens.hrm.training.optimizers import AdamATan2

__all__ = [
    "EMA",
    "HRM",
    "IGNORE_LABEL_ID",
    "TRM",
    "ACTLossHead",
    "ACTModel",
    "AdamATan2",
    "Carry",
    "CastedSparseEmbedding",
    "CastedSparseEmbeddingSignSGD_Distributed",
    "CheckpointError",
    "ConfigError",
    "HRMACTv1",
    "HRMConfig",
    "HRMState",
    "InnerCarry",
    "TRMConfig",
    "TransformerACT",
    "TransformerACTConfig",
    "export_official_checkpoint",
    "load_checkpoint",
    "load_optimizer_state",
    "save_checkpoint",
    "softmax_cross_entropy",
    "stablemax_cross_entropy",
]
