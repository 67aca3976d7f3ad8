"""The committed example images bundles: each verifies (or fails) exactly as its README line says."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import pytest

from airgap.core.images_bundle import verify_images
from airgap.core.keys import load_public_key
from airgap.errors import AirgapError
from tests.helpers import REPO, one_error_line, run_cli

EXAMPLES = REPO / "bundles" / "images-examples"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "generate_images_examples", REPO / "bundles" / "generate_images_examples.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["generate_images_examples"] = mod
    spec.loader.exec_module(mod)
    return mod


GEN = _generator()
CATALOGUE = {e.name: e for e in GEN._catalogue(None, None)}
CATALOGUE_VERIFY = {**{n: e.verify for n, e in CATALOGUE.items()}, "valid-split.images": 0}


def test_catalogue_matches_files_and_readme() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.images")) == sorted(CATALOGUE_VERIFY)
    readme = (EXAMPLES / "README.md").read_text()
    for e in CATALOGUE.values():
        assert f"| `{e.name}` | {e.wrong} | {e.verify} |" in readme


def test_generator_is_deterministic() -> None:
    assert GEN.main(["--check"]) == 0


@pytest.mark.parametrize("name", sorted(CATALOGUE_VERIFY))
def test_verify_outcome(name: str) -> None:
    trust = [load_public_key(EXAMPLES / "keys" / "puller.pub")]
    try:
        verify_images(EXAMPLES / name, trust)
        code = 0
    except AirgapError as exc:
        code = exc.exit_code
    assert code == CATALOGUE_VERIFY[name]


@pytest.mark.parametrize("name", sorted(CATALOGUE_VERIFY))
def test_verify_outcome_through_the_cli(name: str) -> None:
    r = run_cli("images", "verify", EXAMPLES / name, "--trust", EXAMPLES / "keys" / "puller.pub")
    assert r.code == CATALOGUE_VERIFY[name]
    if r.code:
        one_error_line(r, name)
