"""TransformerLens analyses of the lm family over the interp engine: activation capture, probes,
ID↔OOD patching, head/MLP ablations with importance overlap, sparse-autoencoder features."""
