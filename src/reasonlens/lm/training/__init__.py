"""SFT (transformers.Trainer), RL (trl GRPO) and evaluation of the lm family."""
