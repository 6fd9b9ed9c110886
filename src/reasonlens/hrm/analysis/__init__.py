"""Analysis of the HRM family over the interp engine: the adapter (call-index map, z_H/z_L aliases,
halting, scoring), seed 000's activation patching, reasoning dynamics, pictures and exploration studies."""
