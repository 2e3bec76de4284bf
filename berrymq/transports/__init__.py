"""The transport contract and the built-in ``local`` transport."""
