"""Puzzle datasets of the HRM family: the official on-disk format and sampler, and builders for Sudoku,
Maze and ARC (real and synthetic)."""
