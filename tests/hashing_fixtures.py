"""A real digest that counts what it is fed: proves every byte is hashed once (hashing and fetch tests)."""

from __future__ import annotations

import hashlib
from typing import Any


class Counted:
    """A real digest that also counts what it was fed."""

    def __init__(self, name: str) -> None:
        self._h = hashlib.new(name)
        self.name = name
        self.fed = 0

    def update(self, data: Any) -> None:
        self.fed += len(memoryview(data).cast("B"))
        self._h.update(data)

    def digest(self) -> bytes:
        return self._h.digest()

    def hexdigest(self) -> str:
        return self._h.hexdigest()
