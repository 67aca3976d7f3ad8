"""Errors typed by cause (issue 26 item 2): each cause is a subclass of its exit-code family,
and library calls raise the precise one at the raise site."""

from __future__ import annotations

from pathlib import Path

import pytest

from airgap import errors
from airgap.core.atomic import write_new
from airgap.core.files import read_capped
from airgap.core.keys import load_private_key
from airgap.errors import (
    ChainBroken,
    DigestMismatch,
    Expired,
    InvalidInput,
    LogTampered,
    Malformed,
    NetworkError,
    NotFound,
    NotServed,
    Refused,
    Rollback,
    SignatureMismatch,
    TooLarge,
    UnsafePath,
    VerificationError,
    WouldOverwrite,
    WrongCluster,
    WrongPassphrase,
    WrongRelease,
)

FAMILIES = {
    VerificationError: (SignatureMismatch, DigestMismatch, ChainBroken, LogTampered, WrongRelease),
    InvalidInput: (NotFound, Malformed, TooLarge, UnsafePath, WrongPassphrase),
    Refused: (WouldOverwrite, Rollback, Expired, WrongCluster),
    NetworkError: (NotServed,),
}


def test_each_cause_keeps_its_familys_exit_code() -> None:
    for family, causes in FAMILIES.items():
        for cause in causes:
            assert issubclass(cause, family)
            assert cause("x").exit_code == family.exit_code
    listed = {c.__name__ for cs in FAMILIES.values() for c in cs}
    defined = {
        n for n, v in vars(errors).items()
        if isinstance(v, type) and issubclass(v, errors.AirgapError) and v.__module__ == errors.__name__
    }  # fmt: skip
    families = {"AirgapError", "VerificationError", "InvalidInput", "Refused", "ClusterError", "NetworkError"}
    assert defined - listed == families


def test_library_calls_raise_the_cause(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x" * 10)
    with pytest.raises(WouldOverwrite):
        write_new(tmp_path / "f", b"y")
    with pytest.raises(NotFound):
        read_capped(tmp_path / "missing", 100, "private key")
    with pytest.raises(TooLarge):
        read_capped(tmp_path / "f", 5, "private key")
    (tmp_path / "fifo").symlink_to(tmp_path)  # a folder behind a link
    with pytest.raises(InvalidInput):
        read_capped(tmp_path / "fifo", 5, "private key")


def test_wrong_passphrase_is_its_own_cause(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"right passphrase"),
    )
    (tmp_path / "k.pem").write_bytes(pem)
    with pytest.raises(WrongPassphrase):
        load_private_key(tmp_path / "k.pem", b"wrong passphrase")


def test_a_tampered_log_is_log_tampered(tmp_path: Path) -> None:
    from airgap.offline.ceremony import read_entries

    (tmp_path / "ceremony.log").write_bytes(b'{"act": 1}\n')
    with pytest.raises(LogTampered):
        read_entries(tmp_path)


def test_a_verification_error_keeps_its_subject_and_reason_apart() -> None:
    about = SignatureMismatch("signature does not verify with k1", subject=Path("/out/x.tar.gz"))
    assert (about.subject, about.reason) == ("/out/x.tar.gz", "signature does not verify with k1")
    assert str(about) == about.message == "/out/x.tar.gz: signature does not verify with k1"
    for cause in FAMILIES[VerificationError]:  # release fetch re-raises any of them about a URL (subject=)
        said = cause("the reason", subject="https://m/x")
        assert (said.subject, said.reason, said.message) == ("https://m/x", "the reason", "https://m/x: the reason")
    plain = VerificationError("/out/x.tar.gz: changed")  # no subject given: the reason is the whole message
    assert (plain.subject, plain.reason, plain.message) == (None, "/out/x.tar.gz: changed", "/out/x.tar.gz: changed")
