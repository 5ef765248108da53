"""`python -m stepforge.cli`: the `stepforge` command."""

from __future__ import annotations

import sys

from stepforge.cli import main

if __name__ == "__main__":
    sys.exit(main())
