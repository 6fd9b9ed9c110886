"""Shared plumbing used by every family: atomic file writes, YAML/JSON/safetensors I/O
and device selection. Imports nothing else from reasonlens."""
