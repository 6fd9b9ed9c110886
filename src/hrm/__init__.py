"""Alias package so the import path of the HRM usage guide (seed 004) works unchanged:
``from hrm.models import HRMACTv1, CastedSparseEmbeddingSignSGD_Distributed``.

Everything here is re-exported from :mod:`reasonlens.hrm`; new code should import from there.
"""
