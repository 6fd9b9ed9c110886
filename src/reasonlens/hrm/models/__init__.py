"""The models of the HRM family: the official-equivalent HRM-ACT-v1 with its ACT wrapper and carries, TRM,
the direct-prediction transformer and the paper-notation HRM, their configs, layers and the sparse puzzle
embedding."""
