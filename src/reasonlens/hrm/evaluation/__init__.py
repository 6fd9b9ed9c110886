"""Evaluation of the HRM family: rollouts over a test split with a chosen number of ACT steps (halting,
inference-time scaling) and ARC voting with pass@k."""
