"""Session-wide fixtures: expensive PKI material is made once and copied per test."""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from airgap.core import x509 as cx
from airgap.offline.ca import CAStore

PASSPHRASE = b"correct horse battery staple"
# When the session templates are "made": tests that check them at a fixed time (bundle_fixtures.NOW)
# stay right however late in a long run a template is first built (certificates are backdated by
# minutes only, so a template built later than that would be "not yet valid" at the fixed time).
SESSION_START = dt.datetime.now(dt.UTC).replace(microsecond=0)


@contextlib.contextmanager
def made_at(when: dt.datetime) -> Iterator[None]:
    """Build session templates as if at ``when`` (the certificates' clock only)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cx, "now", lambda: when)
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
    store = CAStore(d)
    with made_at(SESSION_START):
        store.init_root(key_type="ecdsa-p256", days=3650, org="Istio", cn="Root CA", passphrase=PASSPHRASE)
        store.issue(
            ["c1", "c2"],
            key_type="ecdsa-p256",
            days=730,
            org="Istio",
            cn="Intermediate CA",
            sans=["DNS:istiod.istio-system.svc"],
            passphrase=PASSPHRASE,
            key_passphrase=PASSPHRASE,
            workers=1,
        )
    return d


@pytest.fixture
def pki(_pki_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the session PKI (root + c1, c2; passphrase in ``passfile``)."""
    d = tmp_path / "pki"
    shutil.copytree(_pki_template, d)
    return d
