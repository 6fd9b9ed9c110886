"""Build the scoring-game datasets (ID train/val/test + one test set per OOD category).

Thin script over the library (seed 002): the same flags as `reasonlens lm datasets`; run with --help.
"""

import sys

from reasonlens.cli.lm import command

if __name__ == "__main__":
    command("datasets").main(sys.argv[1:], prog_name="build_datasets.py")
