#!/usr/bin/env python3
"""Find the neurons behind a decision: differences, active-vs-dead, ablation, narrowing search (seed 001).

Thin script over :mod:`reasonlens.cli.agent_tools`; ``--help`` lists the flags. Run it from this
folder so the guide's relative paths (``../Agent_Storage/...``) resolve: see README.md here.
"""

import sys

from reasonlens.cli.agent_tools import main_find

if __name__ == "__main__":
    sys.exit(main_find())
