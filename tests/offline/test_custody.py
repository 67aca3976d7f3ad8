"""Split custody: SLIP-39 shares age-encrypted to custodians (the library part, and interop)."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import shamir_mnemonic

from airgap.core.age import new_recipient_key
from airgap.errors import InvalidInput, Refused, VerificationError
from airgap.offline import custody


@pytest.fixture(scope="module")
def custodians(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, str]]:
    """Five custodians' identity files (as keys new --kind recipient writes them) and recipients."""
    d = tmp_path_factory.mktemp("custodians")
    out = []
    for i in range(1, 6):
        k = new_recipient_key(f"custodian{i}", d, None)
        out.append((k.private, k.recipient))
    return out


def _ids(custodians: list[tuple[Path, str]], *which: int) -> list[custody.ShareIdentity]:
    return [custody.load_share_identity(custodians[i - 1][0], None) for i in which]


def _made(tmp_path: Path, custodians: list[tuple[Path, str]], m: int, n: int, secret: bytes | None = None) -> Path:
    pki = tmp_path / "pki"
    pki.mkdir()
    custody.write_set(pki, custody.split(m, [r for _, r in custodians[:n]], secret=secret))
    return pki


@pytest.mark.parametrize(
    ("spec", "want"), [("2-of-3", (2, 3)), ("3of5", (3, 5)), ("1-of-1", (1, 1)), ("16-of-16", (16, 16))]
)
def test_parse_spec(spec: str, want: tuple[int, int]) -> None:
    assert custody.parse_spec(spec) == want


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("2/3", "expected M-of-N"),
        ("4-of-3", "M must be"),
        ("0-of-3", "M must be"),
        ("2-of-17", "N must be"),
        ("1-of-3", "1-of-N"),
        ("", "expected M-of-N"),
    ],
)
def test_parse_spec_refuses(spec: str, needle: str) -> None:
    with pytest.raises(InvalidInput, match=needle):
        custody.parse_spec(spec)


def test_split_refuses_a_custodian_twice(custodians: list[tuple[Path, str]]) -> None:
    r = custodians[0][1]
    with pytest.raises(InvalidInput, match="given twice"):
        custody.split(2, [r, r, custodians[1][1]])
    with pytest.raises(InvalidInput, match="not an age X25519 recipient"):
        custody.split(2, ["age1nope", r, custodians[1][1]])


def test_interop_age_cli_and_reference_combine(tmp_path: Path, custodians: list[tuple[Path, str]]) -> None:
    """Each share file opens with the age CLI and its custodian's identity; the words combine in shamir_mnemonic."""
    secret = bytes(range(32))
    pki = _made(tmp_path, custodians, 2, 3, secret)
    words = []
    for k in (1, 2, 3):
        f = pki / "custody" / f"share-{k}.age"
        assert f.stat().st_mode & 0o777 == 0o600
        p = subprocess.run(["age", "-d", "-i", str(custodians[k - 1][0]), str(f)], capture_output=True, check=True)
        words.append(p.stdout.decode().strip())
        # another custodian's identity does not open it
        other = custodians[k % 3][0]
        assert subprocess.run(["age", "-d", "-i", str(other), str(f)], capture_output=True).returncode != 0
    assert all(len(w.split()) == 33 for w in words)  # SLIP-39, 256-bit secret
    for pair in itertools.combinations(words, 2):
        assert shamir_mnemonic.combine_mnemonics(list(pair)) == secret
    for one in words:
        with pytest.raises(shamir_mnemonic.MnemonicError):
            shamir_mnemonic.combine_mnemonics([one])


def test_record(tmp_path: Path, custodians: list[tuple[Path, str]]) -> None:
    pki = _made(tmp_path, custodians, 2, 3)
    doc = json.loads((pki / "custody" / "custody.json").read_bytes())
    assert (doc["threshold"], doc["count"]) == (2, 3)
    assert [s["recipient"] for s in doc["shares"]] == [r for _, r in custodians[:3]]
    assert [s["file"] for s in doc["shares"]] == [f"custody/share-{k}.age" for k in (1, 2, 3)]
    import hashlib

    for s in doc["shares"]:
        assert s["sha256"] == hashlib.sha256((pki / s["file"]).read_bytes()).hexdigest()
    text = (pki / "custody" / "custody.json").read_text()
    assert "AGE-SECRET-KEY" not in text and not any(w in text for w in ("academic", "acid"))
    assert sorted(p.name for p in (pki / "custody").iterdir()) == [
        "custody.json",
        "share-1.age",
        "share-2.age",
        "share-3.age",
    ]


def test_any_m_recover_and_m_minus_1_do_not(tmp_path: Path, custodians: list[tuple[Path, str]]) -> None:
    secret = b"\x42" * 32
    pki = _made(tmp_path, custodians, 3, 5, secret)
    want = custody.derive_passphrase(secret)
    for combo in itertools.combinations(range(1, 6), 3):
        opened = custody.open_root_passphrase(pki, _ids(custodians, *combo))
        assert opened.passphrase == want and opened.shares == combo
    for combo in itertools.combinations(range(1, 6), 2):
        with pytest.raises(InvalidInput, match=r"2 distinct share\(s\) given .* 3 of 5 needed: 1 more"):
            custody.open_root_passphrase(pki, _ids(custodians, *combo))
    # more than M: the M lowest are used, the result is the same
    opened = custody.open_root_passphrase(pki, _ids(custodians, 5, 4, 2, 1))
    assert opened.passphrase == want and opened.shares == (1, 2, 4)


def test_same_share_twice_counts_once(tmp_path: Path, custodians: list[tuple[Path, str]]) -> None:
    pki = _made(tmp_path, custodians, 2, 3)
    with pytest.raises(InvalidInput, match=r"1 distinct share\(s\) given \(shares: 1\).* 1 more"):
        custody.open_root_passphrase(pki, _ids(custodians, 1, 1))


def test_wrong_identity_names_the_share_files(tmp_path: Path, custodians: list[tuple[Path, str]]) -> None:
    pki = _made(tmp_path, custodians, 2, 3)
    stranger = custodians[4][0]
    with pytest.raises(InvalidInput) as e:
        custody.open_root_passphrase(pki, _ids(custodians, 1, 5))
    assert str(stranger) in str(e.value) and "share-1.age" in str(e.value) and "share-3.age" in str(e.value)


def test_tampered_or_swapped_share_file(tmp_path: Path, custodians: list[tuple[Path, str]]) -> None:
    pki = _made(tmp_path, custodians, 2, 3)
    f = pki / "custody" / "share-2.age"
    data = bytearray(f.read_bytes())
    data[-5] ^= 1
    f.write_bytes(bytes(data))
    with pytest.raises(VerificationError, match=r"share-2.age: does not match its SHA-256"):
        custody.open_root_passphrase(pki, _ids(custodians, 1, 2))
    # a share of another set, re-recorded with a matching hash: refused by its SLIP-39 identifier
    other = tmp_path / "other"
    other.mkdir()
    custody.write_set(other, custody.split(2, [r for _, r in custodians[:3]]))
    shutil.copy(other / "custody" / "share-2.age", f)
    doc = json.loads((pki / "custody" / "custody.json").read_bytes())
    doc["shares"][1]["sha256"] = json.loads((other / "custody" / "custody.json").read_bytes())["shares"][1]["sha256"]
    (pki / "custody" / "custody.json").write_text(json.dumps(doc))
    with pytest.raises(InvalidInput, match=r"share-2\.age: is a share of another set"):
        custody.open_root_passphrase(pki, _ids(custodians, 1, 2))


def test_typed_words(tmp_path: Path, custodians: list[tuple[Path, str]]) -> None:
    secret = b"\x07" * 32
    pki = _made(tmp_path, custodians, 2, 3, secret)
    words = subprocess.run(
        ["age", "-d", "-i", str(custodians[2][0]), str(pki / "custody" / "share-3.age")],
        capture_output=True,
        check=True,
    ).stdout.decode()
    opened = custody.open_root_passphrase(pki, _ids(custodians, 1), typed=[("typed share", "  " + words.upper())])
    assert opened.shares == (1, 3) and opened.passphrase == custody.derive_passphrase(secret)
    bad = words.split()
    bad[5] = "academic" if bad[5] != "academic" else "acid"
    with pytest.raises(InvalidInput, match="typed share: not a valid SLIP-39 share"):
        custody.open_root_passphrase(pki, _ids(custodians, 1), typed=[("typed share", " ".join(bad))])


def test_corrupt_record(tmp_path: Path, custodians: list[tuple[Path, str]]) -> None:
    pki = _made(tmp_path, custodians, 2, 3)
    rec = pki / "custody" / "custody.json"
    doc = json.loads(rec.read_bytes())
    doc["shares"][0]["file"] = "../../etc/passwd"
    rec.write_text(json.dumps(doc))
    with pytest.raises(InvalidInput, match="custody record is corrupt"):
        custody.read_record(pki)
    rec.write_text("{")
    with pytest.raises(InvalidInput, match="custody record is corrupt"):
        custody.read_record(pki)
    shutil.rmtree(pki / "custody")
    with pytest.raises(Refused, match="not under split custody"):
        custody.read_record(pki)


def test_write_set_never_overwrites(tmp_path: Path, custodians: list[tuple[Path, str]]) -> None:
    pki = _made(tmp_path, custodians, 2, 3)
    before = (pki / "custody" / "share-1.age").read_bytes()
    with pytest.raises(Refused, match="already exists"):
        custody.write_set(pki, custody.split(2, [r for _, r in custodians[:3]]))
    assert (pki / "custody" / "share-1.age").read_bytes() == before


def test_passphrase_protected_identity(tmp_path: Path) -> None:
    k = new_recipient_key("guarded", tmp_path, b"pw of custodian")
    k2 = new_recipient_key("plain", tmp_path, None)
    pki = tmp_path / "pki"
    pki.mkdir()
    custody.write_set(pki, custody.split(2, [k.recipient, k2.recipient]))
    with pytest.raises(InvalidInput, match="passphrase-protected"):
        custody.load_share_identity(k.private, None)
    ids = [custody.load_share_identity(k.private, b"pw of custodian"), custody.load_share_identity(k2.private, None)]
    assert custody.open_root_passphrase(pki, ids).shares == (1, 2)


def test_repr_hides_the_passphrase(custodians: list[tuple[Path, str]]) -> None:
    new = custody.split(2, [r for _, r in custodians[:3]])
    assert new.passphrase.decode() not in repr(new)
