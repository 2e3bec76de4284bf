"""Fixtures of the TCP plugin's tests: ``buses``; and the JSON-RPC suite's probe_tools
put on the path (JSON-RPC requests and lines sent by hand)."""

from __future__ import annotations

import sys
from pathlib import Path

import helpers

sys.path.insert(0, str(Path(__file__).parents[2] / "berrymq-jsonrpc" / "tests"))

#: The fixture ``buses`` (isolated buses, all closed after the test), defined once in
#: helpers.py for every suite that uses it.
buses = helpers.buses
