"""The scoring game as an RL environment (text in, text out, reward from the ground truth)."""
