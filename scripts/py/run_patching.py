"""Activation patching ID -> OOD and back, per layer, position and head.

Thin script over the library (seed 002): the same flags as `reasonlens lm patching`; run with --help.
"""

import sys

from reasonlens.cli.lm import command

if __name__ == "__main__":
    command("patching").main(sys.argv[1:], prog_name="run_patching.py")
