"""RL (trl GRPO) from the SFT checkpoint with the text-game reward; curves per distribution.

Thin script over the library (seed 002): the same flags as `reasonlens lm rl`; run with --help.
"""

import sys

from reasonlens.cli.lm import command

if __name__ == "__main__":
    command("rl").main(sys.argv[1:], prog_name="run_rl.py")
