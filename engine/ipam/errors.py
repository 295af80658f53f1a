"""The typed error of an exhausted address or id pool."""

from __future__ import annotations

from engine.errors import InsufficientCapacity


class AddressExhausted(InsufficientCapacity):
    """Every address (or VNI) of the ranges asked is taken; the message names them and
    their sizes. Nothing was written."""
