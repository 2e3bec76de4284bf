"""berrymq-jsonl: an example berryMQ receiver plugin that appends messages to a JSON-lines
file. The plugin itself is :mod:`berrymq_jsonl.plugin` (entry point ``jsonl``)."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
