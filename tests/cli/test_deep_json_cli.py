"""Fault 16 (issue 23): deeply nested JSON is refused by the one strict loader, never a crash.

3,000 nested brackets appended to ``ceremony.log`` is a tampered log (exit 1) for ``audit show``,
``audit verify`` and ``ca issue``; the same in ``RELEASE.json`` or ``accepted.json`` is malformed
state (exit 3). One ``airgap: error:`` line, naming the file.
"""

# ruff: noqa: F811  (fixtures imported from tests.bundle_fixtures)

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bundle_fixtures import Keys, _logged_pki_template, bkeys, logged_pki  # noqa: F401
from tests.helpers import one_error_line, run_cli
from tests.release_fixtures import make_signed_release

DEEP = b"[" * 3000 + b"]" * 3000
DEEP_OBJECT = b'{"a":' * 3000 + b"1" + b"}" * 3000


@pytest.mark.parametrize("junk", [DEEP, DEEP_OBJECT, b'{"seq": ' + DEEP + b"}"])
def test_fault_16_deep_ceremony_log_is_tampered_exit_1(
    logged_pki: Path, bkeys: Keys, passfile: Path, junk: bytes
) -> None:
    log = logged_pki / "ceremony.log"
    log.write_bytes(log.read_bytes() + junk + b"\n")
    for args in (
        ("audit", "show", logged_pki),
        ("audit", "verify", logged_pki, "--trust", bkeys.signer_pub),
        ("ca", "issue", "c9", "--dir", logged_pki, "--key-type", "ecdsa-p256", "--passphrase-file", passfile),
    ):
        r = run_cli(*args, env={"AIRGAP_LOG_KEY": str(bkeys.signer)})
        assert r.code == 1, (args, r.err)
        one_error_line(r, "ceremony.log", "nested too deeply")
    assert not (logged_pki / "c9").exists()


def test_fault_16_deep_release_record_is_malformed_exit_3(tmp_path: Path) -> None:
    tarball, sig, pub = make_signed_release(tmp_path / "rel")
    out = tmp_path / "extracted"
    assert run_cli("release", "extract", tarball, "--signature", sig, "--key", pub, "--out", out).code == 0
    (out / "RELEASE.json").write_bytes(DEEP)
    r = run_cli(
        "mesh", "install", "--release", out, "--cluster-name", "cluster1", "--network", "net1", "--mesh-id", "p1",
        "--output-dir", tmp_path / "o", env={"KUBECONFIG": str(tmp_path / "no-kubeconfig")},
    )  # fmt: skip
    assert r.code == 3, r.err
    one_error_line(r, "RELEASE.json", "release record is nested too deeply", alone=False)
    assert not (tmp_path / "o").exists()


def test_fault_16_deep_import_state_is_malformed_exit_3(
    logged_pki: Path, bkeys: Keys, passfile: Path, tmp_path: Path
) -> None:
    bundle = tmp_path / "c1.bundle"
    r = run_cli(
        "bundle", "create", "c1", "--dir", logged_pki, "--sign-key", bkeys.signer, "--recipient", bkeys.recipient,
        "--passphrase-file", passfile, "--out", bundle,
    )  # fmt: skip
    assert r.code == 0, r.err
    state = tmp_path / "state"
    state.mkdir()
    (state / "accepted.json").write_bytes(b'{"format": 1, "accepted": ' + DEEP + b"}")
    r = run_cli(
        "bundle", "import", bundle, "--trust", bkeys.signer_pub, "--identity", bkeys.identity, "--cluster", "c1",
        "--output-dir", tmp_path / "out", "--plaintext-secrets", env={"AIRGAP_STATE_DIR": str(state)},
    )  # fmt: skip
    assert r.code == 3, r.err
    one_error_line(r, "accepted.json", "import state is nested too deeply")
    assert not (tmp_path / "out").exists()
