"""Typed configs of the lm family: the task, SFT/RL training and the analyses."""
