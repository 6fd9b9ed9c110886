"""Sparse autoencoder (SAELens) on the residual stream and its ID-specific / OOD-stable features.

Thin script over the library (seed 002): the same flags as `reasonlens lm sae`; run with --help.
"""

import sys

from reasonlens.cli.lm import command

if __name__ == "__main__":
    command("sae").main(sys.argv[1:], prog_name="run_sae.py")
