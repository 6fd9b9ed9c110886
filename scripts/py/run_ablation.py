"""Zero / mean ablation of heads and MLPs; importance per distribution; SFT vs RL Jaccard.

Thin script over the library (seed 002): the same flags as `reasonlens lm ablation`; run with --help.
"""

import sys

from reasonlens.cli.lm import command

if __name__ == "__main__":
    command("ablation").main(sys.argv[1:], prog_name="run_ablation.py")
