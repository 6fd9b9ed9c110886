"""reasonlens: train small reasoning models and take them apart.

Families: ``reasonlens.hrm`` (HRM-ACT-v1, TRM, baselines). The interpretability engine
and the ``lm`` / ``agents`` families land in later releases; see README.md.
"""

__version__ = "0.1.0"
