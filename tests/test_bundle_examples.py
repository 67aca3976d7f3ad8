"""The committed example bundles: each fails (or passes) exactly as its README line says."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from airgap.connected.bundle_import import prepare_import, record_accepted, render_to_dir
from airgap.core.bundle import open_bundle
from airgap.core.keys import load_public_key
from airgap.errors import AirgapError
from tests.helpers import REPO, run_cli, tree

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
CATALOGUE = {e.name: e for e in GEN.CATALOGUE}


def _code(fn: object) -> int:
    try:
        fn()  # type: ignore[operator]
    except AirgapError as exc:
        return exc.exit_code
    return 0


def test_catalogue_matches_files_and_readme() -> None:
    files = sorted(p.name for p in EXAMPLES.glob("*.bundle"))
    assert files == sorted(CATALOGUE)
    readme = (EXAMPLES / "README.md").read_text()
    for e in CATALOGUE.values():
        assert f"| `{e.name}` | {e.wrong} |" in readme


def test_generator_is_deterministic(capsys: pytest.CaptureFixture[str]) -> None:
    assert GEN.main(["--check"]) == 0


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_verify_outcome(name: str) -> None:
    trust = [load_public_key(KEYS / "officer.pub")]
    code = _code(lambda: open_bundle(EXAMPLES / name, trust, now=GEN.CHECK_TIME))
    assert code == CATALOGUE[name].verify


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_import_outcome_and_nothing_written(name: str, tmp_path: Path) -> None:
    trust = [load_public_key(KEYS / "officer.pub")]
    state = tmp_path / "state"

    def imp(bundle: str, out: Path) -> None:
        p = prepare_import(EXAMPLES / bundle, trust, KEYS / "operator.key", None, "c1", state, GEN.CHECK_TIME)
        render_to_dir(p, out)
        record_accepted(p)

    if name != "valid.bundle":
        imp("valid.bundle", tmp_path / "first")
    out = tmp_path / "DIR"
    out.mkdir()
    code = _code(lambda: imp(name, out))
    assert code == CATALOGUE[name].imports
    if code:
        assert tree(out) == []
    else:
        assert tree(out) == ["00-namespace.yaml", "10-cacerts-secret.yaml"]


def test_valid_example_through_the_cli(tmp_path: Path) -> None:
    r = run_cli("bundle", "verify", EXAMPLES / "valid.bundle", "--trust", KEYS / "officer.pub")
    assert r.code == 0, r.err
    r = run_cli(
        "bundle", "import", EXAMPLES / "valid.bundle", "--trust", KEYS / "officer.pub", "--identity",
        KEYS / "operator.key", "--cluster", "c1", "--output-dir", tmp_path / "out",
        env={"AIRGAP_STATE_DIR": str(tmp_path / "state")},
    )  # fmt: skip
    assert r.code == 0, r.err
    secret = (tmp_path / "out" / "10-cacerts-secret.yaml").read_text()
    assert "airgap.dev/sequence: '2'" in secret
