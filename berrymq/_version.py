"""The version of the core distribution (read by setup.cfg and the plugin host)."""

__version__ = "0.4.0"
