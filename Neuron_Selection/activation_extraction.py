#!/usr/bin/env python3
"""Record the activations of every Q-network layer for an input file (seed 001's first step).

Thin script over :mod:`reasonlens.agents.tools_cli`; ``--help`` lists the flags. Run it from this
folder so the guide's relative paths (``../Agent_Storage/...``) resolve: see README.md here.
"""

import sys

from reasonlens.agents.tools_cli import main_extract

if __name__ == "__main__":
    sys.exit(main_extract())
