"""``airgap bundle create/verify/inspect/import`` through the CLI: exit codes, stderr, nothing half-written.

Every attack from the issue's "Prove it" list runs through ``bundle import --output-dir DIR`` and
must fail with the contract's exit code, one ``airgap: error:`` line, and DIR left empty.
"""

# ruff: noqa: F811  (the bkeys fixture is imported from tests.bundle_fixtures)

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from airgap.core.bundle import format_time
from tests.bundle_fixtures import (  # noqa: F401
    Keys,
    RawEntry,
    _logged_pki_template,
    bkeys,
    logged_pki,
    read_entries,
    resign,
    write_entries,
)
from tests.helpers import Result, one_error_line, run_cli, tree


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"AIRGAP_STATE_DIR": str(tmp_path / "state")}


def _create(pki: Path, keys: Keys, passfile: Path, out: Path, *extra: str | Path, cluster: str = "c1") -> Result:
    return run_cli(
        "bundle",
        "create",
        cluster,
        "--dir",
        pki,
        "--sign-key",
        keys.signer,
        "--recipient",
        keys.recipient_pub,
        "--passphrase-file",
        passfile,
        "--out",
        out,
        *extra,
    )


def _import(bundle: Path, keys: Keys, env: dict[str, str], *extra: str | Path, cluster: str = "c1") -> Result:
    if "--output-dir" in extra and "--sops-age" not in extra:
        extra = (*extra, "--plaintext-secrets")  # these tests read the rendered key; tests/cli/test_gitops_cli.py: SOPS
    return run_cli(
        "bundle",
        "import",
        bundle,
        "--trust",
        keys.signer_pub,
        "--identity",
        keys.identity,
        "--cluster",
        cluster,
        *extra,
        env=env,
    )


@pytest.fixture
def bundle(pki: Path, bkeys: Keys, passfile: Path, tmp_path: Path) -> Path:
    inc = tmp_path / "notes.txt"
    inc.write_bytes(b"notes\n" * 300)
    out = tmp_path / "c1.bundle"
    r = _create(pki, bkeys, passfile, out, "--include", inc)
    assert r.code == 0, r.err
    return out


# -- the happy path ------------------------------------------------------------------------------------
def test_create_verify_inspect_import(bundle: Path, bkeys: Keys, env: dict[str, str], tmp_path: Path) -> None:
    r = run_cli("bundle", "verify", bundle, "--trust", bkeys.signer_pub)
    assert r.code == 0, r.err
    assert r.out.startswith(f"Verified OK: {bundle}")
    assert "cacerts/ca-key.pem.age" in r.out and "(age-encrypted)" in r.out

    rj = run_cli("bundle", "verify", bundle, "--trust", bkeys.signer_pub, "--json")
    doc = json.loads(rj.out)
    assert doc["verified"] is True and doc["cluster"] == "c1" and doc["sequence"] == 1
    assert [m["path"] for m in doc["members"]][-1] == "include/notes.txt"

    ri = run_cli("bundle", "inspect", bundle)
    assert ri.code == 0 and ri.out.startswith("UNVERIFIED")
    rij = json.loads(run_cli("bundle", "inspect", bundle, "--json").out)
    assert rij["verified"] is False and rij["manifest"]["bundle_id"] == doc["bundle_id"]

    out = tmp_path / "rendered"
    r = _import(bundle, bkeys, env, "--output-dir", out)
    assert r.code == 0, r.err
    assert tree(out) == ["00-namespace.yaml", "10-cacerts-secret.yaml"]
    assert "sequence 1" in r.out
    state = json.loads((tmp_path / "state" / "accepted.json").read_text())
    assert [v["sequence"] for v in state["accepted"].values()] == [1]

    # the same bundle renders byte-identical files
    out2 = tmp_path / "rendered2"
    assert _import(bundle, bkeys, env, "--output-dir", out2).code == 0
    for name in tree(out):
        assert (out / name).read_bytes() == (out2 / name).read_bytes()


def test_dry_run_writes_nothing(bundle: Path, bkeys: Keys, env: dict[str, str], tmp_path: Path) -> None:
    before = tree(tmp_path)
    r = _import(bundle, bkeys, env, "--dry-run")
    assert r.code == 0, r.err
    assert "Would apply: Secret istio-system/cacerts" in r.out and "nothing written" in r.out
    assert tree(tmp_path) == before


def test_dry_run_and_output_dir_are_exclusive(bundle: Path, bkeys: Keys, env: dict[str, str], tmp_path: Path) -> None:
    r = _import(bundle, bkeys, env, "--dry-run", "--output-dir", tmp_path / "o")
    assert r.code == 2
    assert "cannot be used together" in r.err
    assert not (tmp_path / "o").exists()


def test_output_dir_existing_files_refused(bundle: Path, bkeys: Keys, env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "o"
    out.mkdir()
    (out / "10-cacerts-secret.yaml").write_text("mine\n")
    r = _import(bundle, bkeys, env, "--output-dir", out)
    assert r.code == 4
    assert one_error_line(r).endswith("10-cacerts-secret.yaml: already exists; refusing to overwrite")
    assert tree(out) == ["10-cacerts-secret.yaml"]
    assert not (tmp_path / "state" / "accepted.json").exists()


# -- create: errors ------------------------------------------------------------------------------------
def test_create_refuses_plaintext(pki: Path, bkeys: Keys, passfile: Path, tmp_path: Path) -> None:
    r = run_cli(
        "bundle", "create", "c1", "--dir", pki, "--sign-key", bkeys.signer, "--passphrase-file", passfile,
        "--out", tmp_path / "x.bundle",
    )  # fmt: skip
    assert r.code == 4
    assert "refusing to write the CA private key in plaintext" in one_error_line(r)
    assert not (tmp_path / "x.bundle").exists()
    r = run_cli(
        "bundle", "create", "c1", "--dir", pki, "--sign-key", bkeys.signer, "--passphrase-file", passfile,
        "--no-encrypt", "--out", tmp_path / "x.bundle",
    )  # fmt: skip
    assert r.code == 0, r.err
    assert "IN THE CLEAR" in r.out


def test_create_errors(pki: Path, bkeys: Keys, passfile: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.bundle"
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("not it\n")
    r = _create(pki, bkeys, wrong, out)
    assert r.code == 3 and "wrong passphrase" in one_error_line(r)
    r = _create(pki, bkeys, passfile, out, cluster="c9")
    assert r.code == 4 and "no CA for cluster 'c9'" in one_error_line(r)
    assert not out.exists()
    out.write_bytes(b"keep")
    r = _create(pki, bkeys, passfile, out)
    assert r.code == 4 and one_error_line(r) == f"airgap: error: {out}: already exists; refusing to overwrite"
    assert out.read_bytes() == b"keep"
    r = run_cli(
        "bundle", "create", "c1", "--dir", pki, "--sign-key", bkeys.signer, "--recipient", "age1nope",
        "--passphrase-file", passfile, "--out", tmp_path / "y.bundle",
    )  # fmt: skip
    assert r.code == 3 and "not an age X25519 recipient" in one_error_line(r)
    assert not (tmp_path / "y.bundle").exists()


def test_create_with_encrypted_sign_key(pki: Path, bkeys: Keys, passfile: Path, tmp_path: Path) -> None:
    r = run_cli("keys", "new", "officer", "--out", tmp_path / "k", "--passphrase-file", passfile)
    assert r.code == 0, r.err
    r = run_cli(
        "bundle", "create", "c1", "--dir", pki, "--sign-key", tmp_path / "k" / "officer.key",
        "--recipient", bkeys.recipient, "--passphrase-file", passfile, "--out", tmp_path / "b.bundle",
    )  # fmt: skip
    assert r.code == 0, r.err
    assert run_cli("bundle", "verify", tmp_path / "b.bundle", "--trust", tmp_path / "k" / "officer.pub").code == 0


# -- verify / inspect: errors ----------------------------------------------------------------------------
def test_verify_errors(bundle: Path, bkeys: Keys, tmp_path: Path) -> None:
    r = run_cli("bundle", "verify", bundle, "--trust", bkeys.other_signer_pub)
    assert r.code == 1 and "which is not a --trust key" in one_error_line(r)
    r = run_cli("bundle", "verify", bundle)
    assert r.code == 3 and "--trust" in one_error_line(r)
    r = run_cli("bundle", "verify", tmp_path / "missing.bundle", "--trust", bkeys.signer_pub)
    assert r.code == 3 and "bundle not found" in one_error_line(r)
    r = run_cli("bundle", "inspect", tmp_path / "missing.bundle")
    assert r.code == 3 and "bundle not found" in one_error_line(r)


# -- every attack through import --output-dir: exit code, one error line, DIR empty ------------------------
def _expect_refused_import(bad: Path, keys: Keys, env: dict[str, str], tmp_path: Path, code: int, needle: str) -> None:
    out = tmp_path / "DIR"
    out.mkdir(exist_ok=True)
    siblings = tree(tmp_path)
    r = _import(bad, keys, env, "--output-dir", out)
    assert r.code == code, (r.code, r.err)
    assert needle in one_error_line(r), r.err
    assert tree(out) == []
    assert tree(tmp_path) == siblings  # no temp folder left beside DIR, no state written


Mutation = Callable[[list[RawEntry]], list[RawEntry]]


def _drop(name: str) -> Mutation:
    return lambda es: [e for e in es if e.name != name]


def _change(name: str) -> Mutation:
    return lambda es: [RawEntry(e.name, e.data[:-1] + bytes([e.data[-1] ^ 1])) if e.name == name else e for e in es]


def _dup(name: str) -> Mutation:
    return lambda es: [x for e in es for x in ([e, e] if e.name == name else [e])]


MEMBERS = [
    "cacerts/ca-cert.pem",
    "cacerts/ca-key.pem.age",
    "cacerts/cert-chain.pem",
    "cacerts/root-cert.pem",
    "include/notes.txt",
]


@pytest.mark.parametrize("name", MEMBERS)
def test_member_dropped_changed_duplicated(
    bundle: Path,
    bkeys: Keys,
    env: dict[str, str],
    tmp_path: Path,
    name: str,
) -> None:
    _expect_refused_import(resign(bundle, tmp_path / "drop.bundle", bkeys.signer, members=_drop(name)),
                           bkeys, env, tmp_path, 1, "missing")  # fmt: skip
    _expect_refused_import(resign(bundle, tmp_path / "chg.bundle", bkeys.signer, members=_change(name)),
                           bkeys, env, tmp_path, 1, "does not match its SHA-256")  # fmt: skip
    _expect_refused_import(resign(bundle, tmp_path / "dup.bundle", bkeys.signer, members=_dup(name)),
                           bkeys, env, tmp_path, 3, "appears twice")  # fmt: skip


@pytest.mark.parametrize(
    ("entry", "code", "needle"),
    [
        (RawEntry("include/extra.sh", b"echo pwned\n"), 1, "is not in the manifest"),
        (RawEntry("../../etc/cron.d/x", b"x"), 3, "escapes the bundle"),
        (RawEntry("/etc/cron.d/x", b"x"), 3, "absolute path"),
        (RawEntry("include/ln", b"", typeflag=b"2", linkname="/etc/shadow"), 3, "symbolic link"),
        (RawEntry("include/hl", b"", typeflag=b"1", linkname="cacerts/ca-cert.pem"), 3, "hard link"),
    ],
)
def test_extra_and_unsafe_members(
    bundle: Path,
    bkeys: Keys,
    env: dict[str, str],
    tmp_path: Path,
    entry: RawEntry,
    code: int,
    needle: str,
) -> None:
    bad = resign(bundle, tmp_path / "x.bundle", bkeys.signer, members=lambda es: [*es, entry])
    _expect_refused_import(bad, bkeys, env, tmp_path, code, needle)


def test_byte_flips(bundle: Path, bkeys: Keys, env: dict[str, str], tmp_path: Path) -> None:
    data = bundle.read_bytes()
    good = tmp_path / "good"
    assert _import(bundle, bkeys, {"AIRGAP_STATE_DIR": str(tmp_path / "s2")}, "--output-dir", good).code == 0
    rng = random.Random(7)
    for pos in sorted(rng.sample(range(len(data)), 40)):
        flipped = bytearray(data)
        flipped[pos] ^= 0x80
        bad = tmp_path / "flip.bundle"
        bad.write_bytes(flipped)
        out = tmp_path / "DIR"
        out.mkdir(exist_ok=True)
        r = _import(bad, bkeys, env, "--output-dir", out)
        if r.code == 0:  # only bytes no check covers may pass, and then the output is identical
            assert all((out / n).read_bytes() == (good / n).read_bytes() for n in tree(good)), pos
            import shutil

            shutil.rmtree(out)
            continue
        assert r.code in (1, 3), (pos, r.err)
        one_error_line(r)
        assert tree(out) == [], pos


def test_truncated_and_empty(bundle: Path, bkeys: Keys, env: dict[str, str], tmp_path: Path) -> None:
    data = bundle.read_bytes()
    for n in (0, 10, 512, len(data) // 2, len(data) - 1024, len(data) - 1):
        bad = tmp_path / "t.bundle"
        bad.write_bytes(data[:n])
        _expect_refused_import(bad, bkeys, env, tmp_path, 3, "empty file" if n == 0 else "truncated")


def test_untrusted_signer(bundle: Path, bkeys: Keys, env: dict[str, str], tmp_path: Path) -> None:
    bad = resign(bundle, tmp_path / "u.bundle", bkeys.other_signer)
    _expect_refused_import(bad, bkeys, env, tmp_path, 1, "not a --trust key")


def test_wrong_recipient_identity(bundle: Path, bkeys: Keys, env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "DIR"
    out.mkdir()
    r = run_cli(
        "bundle", "import", bundle, "--trust", bkeys.signer_pub, "--identity", bkeys.other_identity,
        "--cluster", "c1", "--output-dir", out, "--plaintext-secrets", env=env,
    )  # fmt: skip
    assert r.code == 3
    assert one_error_line(r) == (
        f"airgap: error: {bkeys.other_identity}: this identity is not one of the bundle's recipients"
    )
    assert tree(out) == []


def test_another_clusters_bundle(pki: Path, bkeys: Keys, passfile: Path, env: dict[str, str], tmp_path: Path) -> None:
    b2 = tmp_path / "c2.bundle"
    assert _create(pki, bkeys, passfile, b2, cluster="c2").code == 0
    _expect_refused_import(b2, bkeys, env, tmp_path, 4, "bundle was made for cluster 'c2', not 'c1'")


def test_expired_bundle(bundle: Path, bkeys: Keys, env: dict[str, str], tmp_path: Path) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=40)

    def age_it(d: dict[str, object]) -> dict[str, object]:
        return {**d, "created": format_time(past), "expires": format_time(past + dt.timedelta(days=30))}

    bad = resign(bundle, tmp_path / "old.bundle", bkeys.signer, manifest=age_it)
    _expect_refused_import(bad, bkeys, env, tmp_path, 4, "bundle expired at")


def test_replayed_older_bundle(pki: Path, bkeys: Keys, passfile: Path, env: dict[str, str], tmp_path: Path) -> None:
    old, new = tmp_path / "old.bundle", tmp_path / "new.bundle"
    assert _create(pki, bkeys, passfile, old).code == 0
    assert _create(pki, bkeys, passfile, new).code == 0
    assert _import(new, bkeys, env, "--output-dir", tmp_path / "first").code == 0
    _expect_refused_import(old, bkeys, env, tmp_path, 4, "sequence 1 is older than sequence 2")


def test_passphrase_protected_identity(
    pki: Path, bkeys: Keys, passfile: Path, env: dict[str, str], tmp_path: Path
) -> None:
    r = run_cli("keys", "new", "op", "--kind", "recipient", "--out", tmp_path / "k", "--passphrase-file", passfile)
    assert r.code == 0, r.err
    b = tmp_path / "b.bundle"
    r = run_cli(
        "bundle", "create", "c1", "--dir", pki, "--sign-key", bkeys.signer, "--recipient", tmp_path / "k" / "op.pub",
        "--passphrase-file", passfile, "--out", b,
    )  # fmt: skip
    assert r.code == 0, r.err
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("nope\n")
    out = tmp_path / "DIR"
    out.mkdir()
    base = (
        "bundle",
        "import",
        b,
        "--trust",
        bkeys.signer_pub,
        "--identity",
        tmp_path / "k" / "op.key",
        "--cluster",
        "c1",
        "--plaintext-secrets",
    )
    r = run_cli(*base, "--output-dir", out, "--passphrase-file", wrong, env=env)
    assert r.code == 3
    assert one_error_line(r) == f"airgap: error: {tmp_path / 'k' / 'op.key'}: wrong passphrase or corrupt identity file"
    assert tree(out) == []
    r = run_cli(*base, "--output-dir", out, "--passphrase-file", passfile, env=env)
    assert r.code == 0, r.err
    assert tree(out) == ["00-namespace.yaml", "10-cacerts-secret.yaml"]


def test_output_dir_needs_sops_or_plaintext(bundle: Path, bkeys: Keys, env: dict[str, str], tmp_path: Path) -> None:
    for extra in ((), ("--context", "ctx")):
        r = run_cli(
            "bundle", "import", bundle, "--trust", bkeys.signer_pub, "--identity", bkeys.identity, "--cluster", "c1",
            *extra, "--output-dir", tmp_path / "o", env=env,
        )  # fmt: skip
        assert r.code == 2
        assert "would write a Secret in plaintext (the cacerts Secret holds the CA private key)" in r.err
        assert "--sops-age RECIPIENT" in r.err and "--plaintext-secrets" in r.err
        assert not (tmp_path / "o").exists() and not (tmp_path / "state").exists()
    r = _import(bundle, bkeys, env, "--sops-age", bkeys.recipient_pub)
    assert r.code == 2 and "only apply to --output-dir" in r.err
    r = _import(
        bundle, bkeys, env, "--output-dir", tmp_path / "o", "--sops-age", bkeys.recipient_pub, "--plaintext-secrets"
    )
    assert r.code == 2 and "cannot be used together" in r.err
    assert not (tmp_path / "o").exists()


def test_import_needs_identity_for_encrypted_key(
    bundle: Path, bkeys: Keys, env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "DIR"
    r = run_cli(
        "bundle", "import", bundle, "--trust", bkeys.signer_pub, "--cluster", "c1", "--output-dir", out,
        "--plaintext-secrets", env=env,
    )  # fmt: skip
    assert r.code == 3
    assert "the CA key is encrypted; give --identity KEY" in one_error_line(r)
    assert not out.exists()


def test_sign_passphrase_file(pki: Path, bkeys: Keys, passfile: Path, tmp_path: Path) -> None:
    other = tmp_path / "other-pass.txt"
    other.write_text("a different passphrase\n")
    assert run_cli("keys", "new", "officer", "--out", tmp_path / "k", "--passphrase-file", other).code == 0
    args = ("bundle", "create", "c1", "--dir", pki, "--sign-key", tmp_path / "k" / "officer.key",
            "--recipient", bkeys.recipient, "--passphrase-file", passfile)  # fmt: skip
    r = run_cli(*args, "--out", tmp_path / "a.bundle")
    assert r.code == 3 and "wrong passphrase" in one_error_line(r)
    assert not (tmp_path / "a.bundle").exists()
    r = run_cli(*args, "--sign-passphrase-file", other, "--out", tmp_path / "b.bundle")
    assert r.code == 0, r.err


# -- the ceremony log ------------------------------------------------------------------------------------
def _log_state(pki: Path) -> tuple[bytes, bytes]:
    return (pki / "ceremony.log").read_bytes(), (pki / "ceremony-head.json").read_bytes()


def _last_act(pki: Path) -> dict[str, object]:
    r = run_cli("audit", "show", pki, "--json")
    assert r.code == 0, r.err
    last: dict[str, object] = json.loads(r.out)["entries"][-1]
    return last


def test_logged_pki_without_the_log_key_refused(
    logged_pki: Path, bkeys: Keys, passfile: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Signed with a key that is not the officer's and no --log-key: exit 4, nothing written anywhere."""
    monkeypatch.delenv("AIRGAP_LOG_KEY", raising=False)
    before = _log_state(logged_pki)
    out = tmp_path / "c1.bundle"
    r = run_cli(
        "bundle", "create", "c1", "--dir", logged_pki, "--sign-key", bkeys.other_signer,
        "--recipient", bkeys.recipient_pub, "--passphrase-file", passfile, "--out", out,
    )  # fmt: skip
    assert r.code == 4
    line = one_error_line(r)
    assert "keeps a ceremony log and the signing key" in line
    assert line.endswith("give the officer's log key (--log-key KEY or $AIRGAP_LOG_KEY) so this bundle is recorded")
    assert not out.exists() and list(tmp_path.glob("*.bundle")) == []
    assert not (logged_pki / "state" / "sequence.json").exists()
    assert _log_state(logged_pki) == before
    # a --log-key that is not the registered officer key: refused the same way
    r = run_cli(
        "bundle", "create", "c1", "--dir", logged_pki, "--sign-key", bkeys.signer, "--log-key", bkeys.other_signer,
        "--recipient", bkeys.recipient_pub, "--passphrase-file", passfile, "--out", out,
    )  # fmt: skip
    assert r.code == 4 and "is not the officer key registered" in one_error_line(r)
    assert not out.exists() and _log_state(logged_pki) == before


@pytest.mark.parametrize("how", ["option", "env"])
def test_log_key_records_the_bundle(
    logged_pki: Path, bkeys: Keys, passfile: Path, tmp_path: Path, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIRGAP_LOG_KEY", raising=False)
    out = tmp_path / "c1.bundle"
    extra: list[str | Path] = ["--log-key", bkeys.signer] if how == "option" else []
    r = run_cli(
        "bundle", "create", "c1", "--dir", logged_pki, "--sign-key", bkeys.other_signer,
        "--recipient", bkeys.recipient_pub, "--passphrase-file", passfile, "--out", out, *extra,
        env={"AIRGAP_LOG_KEY": str(bkeys.signer)} if how == "env" else None,
    )  # fmt: skip
    assert r.code == 0, r.err
    assert "recorded as entry 5" in r.out
    last = _last_act(logged_pki)
    assert last["act"] == "bundle" and last["seq"] == 5
    verified = json.loads(run_cli("bundle", "verify", out, "--trust", bkeys.other_signer_pub, "--json").out)
    assert last["params"] == {  # type: ignore[comparison-overlap]
        "cluster": "c1",
        "bundle_id": verified["bundle_id"],
        "sequence": 1,
        "signer_key_id": verified["signer"],
        "ceremony_head": verified["ceremony_head"],
        "expires": verified["expires"],
        "manifest_sha256": last["params"]["manifest_sha256"],  # type: ignore[index]
    }
    r = run_cli("audit", "verify", logged_pki, "--trust", bkeys.signer_pub)
    assert r.code == 0, r.err
    assert r.out.startswith(f"Verified OK: 5 entries, head {last['hash']}")


def test_encrypted_log_key(logged_pki: Path, bkeys: Keys, passfile: Path, tmp_path: Path) -> None:
    """An encrypted log key opens with --log-key-passphrase-file, else the PKI passphrase; wrong one: exit 3."""
    from airgap.core.keys import load_private_key, write_private_key
    from tests.conftest import PASSPHRASE

    enc = tmp_path / "officer-enc.key"
    write_private_key(enc, load_private_key(bkeys.signer, None), PASSPHRASE)
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("nope\n")
    base: list[str | Path] = [
        "bundle", "create", "c1", "--dir", logged_pki, "--sign-key", bkeys.other_signer,
        "--recipient", bkeys.recipient_pub, "--passphrase-file", passfile, "--log-key", enc,
    ]  # fmt: skip
    before = _log_state(logged_pki)
    r = run_cli(*base, "--log-key-passphrase-file", wrong, "--out", tmp_path / "a.bundle")
    assert r.code == 3 and "wrong passphrase" in one_error_line(r)
    assert not (tmp_path / "a.bundle").exists() and _log_state(logged_pki) == before
    r = run_cli(*base, "--log-key-passphrase-file", passfile, "--out", tmp_path / "a.bundle")
    assert r.code == 0, r.err
    r = run_cli(*base, "--out", tmp_path / "b.bundle")  # the PKI passphrase opens it too
    assert r.code == 0, r.err
    assert _last_act(logged_pki)["seq"] == 6


def test_ceremony_head_round_trip_to_audit_verify(
    logged_pki: Path, bkeys: Keys, passfile: Path, env: dict[str, str], tmp_path: Path
) -> None:
    """Bundle made on a logged PKI -> verify/inspect show the head -> import keeps it -> audit verify --head."""
    out = tmp_path / "c1.bundle"
    r = _create(logged_pki, bkeys, passfile, out)  # --sign-key is the officer key: recorded by default
    assert r.code == 0, r.err
    head_before = json.loads(run_cli("audit", "show", logged_pki, "--json").out)["entries"][-2]["hash"]
    assert f"ceremony   head {head_before}; recorded as entry 5" in r.out

    doc = json.loads(run_cli("bundle", "verify", out, "--trust", bkeys.signer_pub, "--json").out)
    assert doc["format_version"] == 2 and doc["ceremony_head"] == head_before
    text = run_cli("bundle", "verify", out, "--trust", bkeys.signer_pub).out
    assert f"ceremony   {head_before}" in text
    ri = run_cli("bundle", "inspect", out)
    assert ri.code == 0 and f"ceremony   {head_before}" in ri.out
    assert json.loads(run_cli("bundle", "inspect", out, "--json").out)["manifest"]["ceremony_head"] == head_before

    r = _import(out, bkeys, env, "--output-dir", tmp_path / "rendered")
    assert r.code == 0, r.err
    assert f"ceremony head {head_before}" in r.out
    secret = (tmp_path / "rendered" / "10-cacerts-secret.yaml").read_text()
    assert f"airgap.dev/ceremony-head: {head_before}" in secret
    record = json.loads((tmp_path / "state" / "accepted.json").read_text())
    (kept,) = [v["ceremony_head"] for v in record["accepted"].values()]
    assert kept == head_before

    # the auditor, with the officer's public key and the head the jump host kept
    r = run_cli("audit", "verify", logged_pki, "--trust", bkeys.signer_pub, "--head", kept)
    assert r.code == 0, r.err
    assert r.out.startswith("Verified OK: 5 entries")
    # a log cut back to before that head no longer verifies against it
    lines = (logged_pki / "ceremony.log").read_bytes().splitlines(keepends=True)
    (logged_pki / "ceremony.log").write_bytes(b"".join(lines[:3]))
    r = run_cli("audit", "verify", logged_pki, "--trust", bkeys.signer_pub, "--head", kept)
    assert r.code == 1 and "truncated" in one_error_line(r)


def test_unlogged_and_legacy_bundles_show_no_head(
    bundle: Path, bkeys: Keys, env: dict[str, str], tmp_path: Path
) -> None:
    from tests.helpers import REPO

    doc = json.loads(run_cli("bundle", "verify", bundle, "--trust", bkeys.signer_pub, "--json").out)
    assert doc["ceremony_head"] is None
    assert "ceremony   (none: the PKI kept no ceremony log)" in run_cli("bundle", "inspect", bundle).out
    r = _import(bundle, bkeys, env, "--output-dir", tmp_path / "o")
    assert r.code == 0 and "ceremony head none" in r.out
    assert "ceremony-head" not in (tmp_path / "o" / "10-cacerts-secret.yaml").read_text()
    legacy = REPO / "bundles" / "examples" / "legacy-v1.bundle"
    r = run_cli("bundle", "inspect", legacy)
    assert r.code == 0 and "ceremony   (none: format 1 bundle" in r.out


def test_output_dir_with_unwritable_state_writes_nothing(
    bundle: Path, bkeys: Keys, env: dict[str, str], tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / ".lock").mkdir()  # cannot be opened as the lock file (root included)
    r = _import(bundle, bkeys, env, "--output-dir", tmp_path / "out")
    assert r.code == 3
    assert "state folder is not writable" in one_error_line(r)
    assert not (tmp_path / "out").exists()
    (tmp_path / "existing").mkdir()
    r = _import(bundle, bkeys, env, "--output-dir", tmp_path / "existing")
    assert r.code == 3 and tree(tmp_path / "existing") == []
    assert not (state / "accepted.json").exists()
