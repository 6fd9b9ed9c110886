"""Shared plumbing used by every family: atomic file writes, YAML/JSON/safetensors I/O,
seeding and device selection. Imports nothing else from reasonlens."""
