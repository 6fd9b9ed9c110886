"""GPT-2 models of the lm family: the local tokenizer, checkpoints, the RL policy view, TransformerLens conversion."""
