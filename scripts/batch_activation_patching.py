"""Seed 000's batch of activation-patching experiments; see `python scripts/batch_activation_patching.py --help`."""

import sys

from reasonlens.cli.patch import main_batch

if __name__ == "__main__":
    sys.exit(main_batch())
