"""The PKI folder's trust facts for ``mesh trust --plan``: certificates only, no passphrase."""

from __future__ import annotations

from pathlib import Path

import pytest

from airgap.core.x509 import fingerprint, load_cert_pem
from airgap.errors import InvalidInput, Refused
from airgap.offline.trustview import read_pki_trust
from tests.helpers import run_cli


def _fp(path: Path) -> str:
    return fingerprint(load_cert_pem(path.read_bytes(), source=str(path)))


def test_root_next_root_and_each_cluster(pki: Path, passfile: Path) -> None:
    a = _fp(pki / "root-cert.pem")
    view = read_pki_trust(pki)
    assert view.root == a and view.next_root is None
    assert [(c.name, c.issuing, c.trusted) for c in view.clusters] == [("c1", a, (a,)), ("c2", a, (a,))]
    args = ("--dir", pki, "--passphrase-file", passfile)
    assert run_cli("ca", "rotate-root", *args, "--key-type", "ecdsa-p256").code == 0
    assert run_cli("ca", "rotate", "c1", *args).code == 0
    b = _fp(pki / "next-root" / "root-cert.pem")
    view = read_pki_trust(pki)
    assert view.next_root == b
    c1, c2 = view.clusters
    assert (c1.issuing, c1.trusted) == (b, (a, b)) and (c2.issuing, c2.trusted) == (a, (a, b))
    assert view.cluster("c2") == c2 and view.cluster("nope") is None


def test_not_a_pki(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        read_pki_trust(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(Refused):
        read_pki_trust(tmp_path / "empty")
