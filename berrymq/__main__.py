"""``python -m berrymq``: the same as the ``berrymq`` command."""

from __future__ import annotations

import sys

from berrymq.cli import main

if __name__ == "__main__":
    sys.exit(main())
