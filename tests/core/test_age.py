"""age recipient keys: files, passphrases, and interop with the real ``age`` CLI."""

from __future__ import annotations

import os
import pty
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pyrage
import pytest

from airgap.core import age
from airgap.errors import InvalidInput, Refused, VerificationError
from tests.helpers import run_cli, tree

AGE = shutil.which("age")
AGE_KEYGEN = shutil.which("age-keygen")
needs_age = pytest.mark.skipif(AGE is None, reason="the age CLI is not installed (Debian package 'age')")


@pytest.fixture(scope="module")
def encrypted_identity(tmp_path_factory: pytest.TempPathFactory) -> age.RecipientKeyFiles:
    """One passphrase-protected identity per module: age's scrypt costs about a second."""
    return age.new_recipient_key("sealed", tmp_path_factory.mktemp("age"), b"open sesame")


def test_new_recipient_key_files(tmp_path: Path) -> None:
    made = age.new_recipient_key("op", tmp_path, None)
    assert made.private == tmp_path / "op.key"
    assert stat.S_IMODE(made.private.stat().st_mode) == 0o600
    assert made.public.read_text() == made.recipient + "\n"
    assert made.recipient.startswith("age1")
    text = made.private.read_text()
    assert f"# public key: {made.recipient}" in text
    ids = age.load_identities(made.private, None)
    assert [str(i.to_public()) for i in ids] == [made.recipient]


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    made = age.new_recipient_key("op", tmp_path, None)
    before = made.private.read_bytes()
    with pytest.raises(Refused, match="already exists"):
        age.new_recipient_key("op", tmp_path, None)
    assert made.private.read_bytes() == before
    (tmp_path / "other.pub").write_text("x\n")
    with pytest.raises(Refused):
        age.new_recipient_key("other", tmp_path, None)
    assert not (tmp_path / "other.key").exists()


def test_encrypted_identity(encrypted_identity: age.RecipientKeyFiles) -> None:
    data = encrypted_identity.private.read_bytes()
    assert data.startswith(b"age-encryption.org/v1\n")
    assert b"AGE-SECRET-KEY" not in data
    assert age.identity_is_encrypted(encrypted_identity.private)
    ids = age.load_identities(encrypted_identity.private, b"open sesame")
    assert str(ids[0].to_public()) == encrypted_identity.recipient
    # pyrage reads it as the plain age passphrase format
    assert b"AGE-SECRET-KEY-1" in pyrage.passphrase.decrypt(data, "open sesame")


def test_wrong_or_missing_passphrase(encrypted_identity: age.RecipientKeyFiles) -> None:
    with pytest.raises(InvalidInput, match="wrong passphrase") as info:
        age.load_identities(encrypted_identity.private, b"nope")
    assert info.value.exit_code == 3
    with pytest.raises(InvalidInput, match="passphrase is needed"):
        age.load_identities(encrypted_identity.private, None)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "no age identity"),
        (b"# only a comment\n", "no age identity"),
        (b"hello\n", "not an age identity file"),
        (b"AGE-SECRET-KEY-1QQQQ\n", "malformed age identity"),
        (b"\xff\xfe", "not an age identity file"),
    ],
)
def test_malformed_identity_files(tmp_path: Path, content: bytes, message: str) -> None:
    p = tmp_path / "id.key"
    p.write_bytes(content)
    with pytest.raises(InvalidInput, match=message):
        age.load_identities(p, None)


def test_missing_identity_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="not found"):
        age.load_identities(tmp_path / "nope.key", None)


def test_recipients_file_and_literal(tmp_path: Path) -> None:
    a = age.new_recipient_key("a", tmp_path, None)
    b = age.new_recipient_key("b", tmp_path, None)
    both = tmp_path / "team.txt"
    both.write_text(f"# team\n{a.recipient}\n\n{b.recipient}\n")
    assert age.load_recipients(str(both)) == [a.recipient, b.recipient]
    assert age.load_recipients(a.recipient) == [a.recipient]
    bad = tmp_path / "bad.txt"
    bad.write_text("ssh-ed25519 AAAA\n")
    with pytest.raises(InvalidInput, match="not an age X25519 recipient"):
        age.load_recipients(str(bad))
    with pytest.raises(InvalidInput, match="not found"):
        age.load_recipients(str(tmp_path / "missing.pub"))


def test_encrypt_decrypt_roundtrip_and_wrong_identity(tmp_path: Path) -> None:
    a = age.new_recipient_key("a", tmp_path, None)
    b = age.new_recipient_key("b", tmp_path, None)
    ct = age.encrypt(b"secret key", [a.recipient])
    assert age.decrypt(ct, age.load_identities(a.private, None), source="m", max_size=1024) == b"secret key"
    with pytest.raises(InvalidInput, match="not one of the bundle's recipients"):
        age.decrypt(ct, age.load_identities(b.private, None), source="m", max_size=1024)
    tampered = bytearray(ct)
    tampered[-5] ^= 1
    with pytest.raises(VerificationError, match="decryption failed"):
        age.decrypt(bytes(tampered), age.load_identities(a.private, None), source="m", max_size=1024)
    with pytest.raises(InvalidInput, match="too large"):
        age.decrypt(ct, age.load_identities(a.private, None), source="m", max_size=3)


@needs_age
def test_age_cli_decrypts_with_unencrypted_identity(tmp_path: Path) -> None:
    made = age.new_recipient_key("op", tmp_path, None)
    msg = tmp_path / "msg.age"
    msg.write_bytes(age.encrypt(b"ca key bytes", [made.recipient]))
    out = subprocess.run([AGE, "-d", "-i", made.private, msg], capture_output=True, check=True)  # type: ignore[list-item]
    assert out.stdout == b"ca key bytes"


@needs_age
def test_age_cli_decrypts_with_passphrase_protected_identity(
    encrypted_identity: age.RecipientKeyFiles, tmp_path: Path
) -> None:
    """The real age CLI prompts on the terminal; drive it through a pseudo-terminal."""
    msg = tmp_path / "msg.age"
    msg.write_bytes(age.encrypt(b"ca key bytes", [encrypted_identity.recipient]))
    out = tmp_path / "plain"
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.execvp(AGE, [AGE, "-d", "-i", str(encrypted_identity.private), "-o", str(out), str(msg)])  # type: ignore[list-item]
    seen = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
        if b"passphrase" in seen.lower():
            os.write(fd, b"open sesame\n")
            seen = b""
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0
    assert out.read_bytes() == b"ca key bytes"


@pytest.mark.skipif(AGE_KEYGEN is None, reason="age-keygen is not installed")
def test_identity_from_age_keygen_loads(tmp_path: Path) -> None:
    p = tmp_path / "k.txt"
    subprocess.run([AGE_KEYGEN, "-o", p], capture_output=True, check=True)  # type: ignore[list-item]
    ids = age.load_identities(p, None)
    pub = subprocess.run([AGE_KEYGEN, "-y", p], capture_output=True, check=True, text=True).stdout.strip()  # type: ignore[list-item]
    assert str(ids[0].to_public()) == pub


def test_cli_keys_new_recipient(tmp_path: Path) -> None:
    r = run_cli("keys", "new", "op", "--kind", "recipient", "--out", tmp_path / "k", "--no-passphrase")
    assert r.code == 0, r.err
    assert "UNENCRYPTED" in r.out
    rec = (tmp_path / "k" / "op.pub").read_text().strip()
    assert rec in r.out
    r2 = run_cli("keys", "new", "op", "--kind", "recipient", "--out", tmp_path / "k", "--no-passphrase")
    assert r2.code == 4
    assert r2.err.strip() == f"airgap: error: {tmp_path / 'k' / 'op.key'}: already exists; refusing to overwrite"
    assert tree(tmp_path / "k") == ["op.key", "op.pub"]
