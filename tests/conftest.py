"""Session-wide fixtures: expensive PKI material is made once and copied per test."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import make_pki

# Fixture modules registered once, so every test shares one definition (a module that imported a
# session fixture got its own copy: the SoftHSM2 one re-pointed SOFTHSM2_CONF after the library
# had read it).
pytest_plugins = ["tests.softhsm", "tests.release_fixtures"]

PASSPHRASE = b"correct horse battery staple"
# The time the session PKIs are made: tests that pass ``now=NOW`` stay consistent with them however
# long the session runs before a template is first built (their notBefore is NOW minus the backdate).
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


@contextlib.contextmanager
def made_at_now() -> Iterator[None]:
    """Build session templates as if at :data:`NOW` (certificates' validity starts from it)."""
    with pytest.MonkeyPatch.context() as m:
        m.setattr("airgap.core.x509.now", lambda: NOW)
        yield


@pytest.fixture(scope="session")
def passfile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("pass") / "pass.txt"
    p.write_bytes(PASSPHRASE + b"\n")
    return p


@pytest.fixture(scope="session")
def _pki_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A P-256 PKI with a root and clusters c1, c2 (encrypted keys), built once per session."""
    d = tmp_path_factory.mktemp("pki-template") / "pki"
    with made_at_now():
        make_pki(d, ["c1", "c2"], passphrase=PASSPHRASE, key_passphrase=PASSPHRASE)
    return d


@pytest.fixture
def pki(_pki_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the session PKI (root + c1, c2; passphrase in ``passfile``)."""
    d = tmp_path / "pki"
    shutil.copytree(_pki_template, d)
    return d


def pytest_configure(config: pytest.Config) -> None:
    """A private jump host state folder for the whole process, before any fixture runs: session- and
    module-scoped fixtures (a release extracted once per module) run before the per-test one below,
    and wrote into the user's ~/.local/state/airgap."""
    state = tempfile.mkdtemp(prefix="airgap-test-state-")
    os.environ["AIRGAP_STATE_DIR"] = state
    config.add_cleanup(lambda: shutil.rmtree(state, ignore_errors=True))


@pytest.fixture(autouse=True)
def _own_state_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own jump host state folder (releases.json, history.jsonl, accepted.json),
    so no test reads or writes the user's ~/.local/state/airgap. Tests may set it again."""
    monkeypatch.setenv("AIRGAP_STATE_DIR", str(tmp_path_factory.mktemp("state")))
