"""Re-exports of :mod:`reasonlens.hrm` under the path seed 004 uses (``from hrm.models import ...``)."""

from reasonlens.hrm import (
    HRM,
    TRM,
    ACTLossHead,
    AdamATan2,
    CastedSparseEmbedding,
    CastedSparseEmbeddingSignSGD_Distributed,
    HRMACTv1,
    HRMConfig,
    TransformerACT,
)

__all__ = [
    "HRM",
    "TRM",
    "ACTLossHead",
    "AdamATan2",
    "CastedSparseEmbedding",
    "CastedSparseEmbeddingSignSGD_Distributed",
    "HRMACTv1",
    "HRMConfig",
    "TransformerACT",
]
