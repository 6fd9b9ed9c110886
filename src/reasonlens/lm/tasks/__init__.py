"""The rule-based scoring game: rules, example generators, prompt formatting, datasets."""
