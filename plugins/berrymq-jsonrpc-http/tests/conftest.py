"""Fixtures of the HTTP plugin's tests."""

from __future__ import annotations

import helpers

#: The fixture ``buses`` (isolated buses, all closed after the test), defined once in
#: helpers.py for every suite that uses it.
buses = helpers.buses
