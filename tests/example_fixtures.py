"""The committed example bundles and their generator (``bundles/``), for the tests that use them."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from tests.helpers import REPO

EXAMPLES = REPO / "bundles" / "examples"
KEYS = EXAMPLES / "keys"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_examples", REPO / "bundles" / "generate_examples.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["generate_examples"] = mod
    spec.loader.exec_module(mod)
    return mod


GEN = _generator()
