"""Fault 2 (issue 23): no command writes through a link planted at a name it writes.

Each command runs once in a fresh folder while the names it creates are recorded (final names
from the tree, temporary names and lock files from every ``os.open``/``open`` that may create); temporary
names are made deterministic for the run. Then, for each recorded name, a fresh copy of the
starting state gets a symlink at that name (to an existing victim, and to a missing one) and
the command runs again: it must fail (or, for a temporary name it sweeps as a killed run's
leftover, remove the link unfollowed), leave the victim untouched (the missing one missing), and
publish no link of its own.
"""

# ruff: noqa: F811  (fixtures imported from tests.bundle_fixtures and tests.release_fixtures)

from __future__ import annotations

import builtins
import io
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from tests.bundle_fixtures import Keys, bkeys  # noqa: F401
from tests.helpers import run_cli
from tests.release_fixtures import _release_template, make_signed_release, release  # noqa: F401

VICTIM = b"victim: must never change\n"
Args = Callable[[Path], Sequence[str | Path]]


@pytest.fixture(autouse=True)
def _fixed_temp_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("airgap.core.atomic.secrets.token_hex", lambda n=6: "0" * (2 * n))


def _links(base: Path) -> set[Path]:
    return {p for p in base.rglob("*") if p.is_symlink()}


def _tree(base: Path) -> set[Path]:
    return set(base.rglob("*"))


def _record(base: Path, args: Args, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Run once; every name under ``base`` it created (final and temporary), relative to ``base``."""
    before = _tree(base)
    opened: set[Path] = set()
    real_open = os.open

    def recording_open(path: object, flags: int, *a: object, **kw: object) -> int:
        if flags & os.O_CREAT:
            opened.add(Path(os.path.abspath(os.fsdecode(path))))  # type: ignore[arg-type]
        return real_open(path, flags, *a, **kw)  # type: ignore[arg-type]

    real_io_open = io.open

    def recording_io_open(file: object, mode: str = "r", *a: object, **kw: object) -> object:
        if isinstance(file, (str, os.PathLike)) and set(mode) & set("wax+"):
            opened.add(Path(os.path.abspath(os.fsdecode(file))))
        return real_io_open(file, mode, *a, **kw)  # type: ignore[call-overload]

    with monkeypatch.context() as m:
        m.setattr(os, "open", recording_open)
        m.setattr(io, "open", recording_io_open)
        m.setattr(builtins, "open", recording_io_open)
        r = run_cli(*args(base), env=env)
    assert r.code == 0, r.err
    made = (_tree(base) - before) | opened
    names = sorted({p.relative_to(base) for p in made if p.is_relative_to(base)})
    assert names, "the command created nothing"
    return names


def _plant_each(
    start: Path, tmp: Path, args: Args, names: list[Path], env: Callable[[Path], dict[str, str]]
) -> Iterator[str]:
    """Yield one failure description per planted name the command wrote through (none expected)."""
    victim = tmp / "victim.txt"
    for i, rel in enumerate(names):
        for dangling in (False, True):
            base = tmp / f"run-{i}-{int(dangling)}"
            shutil.copytree(start, base, symlinks=True)
            target = tmp / f"missing-{i}" if dangling else victim
            victim.write_bytes(VICTIM)
            victim.chmod(0o644)
            if not (base / rel).parent.is_dir() or (base / rel).exists():
                continue  # inside a folder the command makes itself, or part of the starting state
            (base / rel).symlink_to(target)
            links_before = _links(base)
            r = run_cli(*args(base), env=env(base))
            if r.code == 0 and (base / rel).is_symlink():
                # exit 0 only when the run cleared the planted temp away (a killed run's leftovers)
                yield f"{rel} (dangling={dangling}): exit 0 with the link left in place"
            if victim.read_bytes() != VICTIM or victim.stat().st_mode & 0o777 != 0o644:
                yield f"{rel}: the victim was written"
            if dangling and target.exists():
                yield f"{rel}: the missing victim was created"
            if _links(base) - links_before:
                yield f"{rel}: a link was published: {sorted(_links(base) - links_before)}"
            shutil.rmtree(base)


def _check(tmp_path: Path, start: Path, args: Args, monkeypatch: pytest.MonkeyPatch) -> None:
    def env(base: Path) -> dict[str, str]:
        return {"AIRGAP_STATE_DIR": str(base / "state"), "AIRGAP_RELEASE_KEYS": str(base / "no-keys")}

    first = tmp_path / "first"
    shutil.copytree(start, first, symlinks=True)
    names = _record(first, args, env(first), monkeypatch)
    failures = list(_plant_each(start, tmp_path / "planted", args, names, env))
    assert not failures, "\n".join(failures)


def test_fault_2_planted_links_ca_init(tmp_path: Path, passfile: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    start = tmp_path / "start"
    start.mkdir()
    (start / "pki").mkdir()
    args: Args = lambda b: ("ca", "init", "--dir", b / "pki", "--key-type", "ecdsa-p256", "--passphrase-file", passfile)  # noqa: E731
    _check(tmp_path, start, args, monkeypatch)


def test_fault_2_planted_links_ca_issue(
    tmp_path: Path, pki: Path, passfile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = tmp_path / "start"
    start.mkdir()
    shutil.copytree(pki, start / "pki")
    args: Args = lambda b: (  # noqa: E731
        "ca", "issue", "c3", "--dir", b / "pki", "--key-type", "ecdsa-p256", "--passphrase-file", passfile
    )  # fmt: skip
    _check(tmp_path, start, args, monkeypatch)


def test_fault_2_planted_links_bundle_create(
    tmp_path: Path, pki: Path, passfile: Path, bkeys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = tmp_path / "start"
    start.mkdir()
    shutil.copytree(pki, start / "pki")
    args: Args = lambda b: (  # noqa: E731
        "bundle", "create", "c1", "--dir", b / "pki", "--sign-key", bkeys.signer, "--recipient", bkeys.recipient,
        "--passphrase-file", passfile, "--out", b / "out" / "c1.bundle",
    )  # fmt: skip
    (start / "out").mkdir()
    _check(tmp_path, start, args, monkeypatch)


def test_fault_2_planted_links_release_fetch_and_extract(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tarball, sig, pub = make_signed_release(tmp_path / "mirror")
    version = "1.8.6-asm.8"
    start = tmp_path / "start"
    (start / "out").mkdir(parents=True)
    fetch: Args = lambda b: (  # noqa: E731
        "release", "fetch", version, "--base-url", tarball.parent.as_uri(), "--key", pub, "--out", b / "out"
    )
    _check(tmp_path / "fetch", start, fetch, monkeypatch)
    extract: Args = lambda b: ("release", "extract", tarball, "--signature", sig, "--key", pub, "--out", b / "asm")  # noqa: E731
    _check(tmp_path / "extract", start, extract, monkeypatch)


def test_fault_2_planted_links_keys_new(tmp_path: Path, passfile: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    start = tmp_path / "start"
    (start / "keys").mkdir(parents=True)
    args: Args = lambda b: ("keys", "new", "officer", "--out", b / "keys", "--passphrase-file", passfile)  # noqa: E731
    _check(tmp_path, start, args, monkeypatch)


def test_fault_2_planted_links_bundle_import_output_dir(
    tmp_path: Path, pki: Path, passfile: Path, bkeys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = tmp_path / "c1.bundle"
    r = run_cli(
        "bundle", "create", "c1", "--dir", pki, "--sign-key", bkeys.signer, "--recipient", bkeys.recipient,
        "--passphrase-file", passfile, "--out", bundle,
    )  # fmt: skip
    assert r.code == 0, r.err
    start = tmp_path / "start"
    (start / "out").mkdir(parents=True)  # an existing folder: files are staged, then published one by one
    args: Args = lambda b: (  # noqa: E731
        "bundle", "import", bundle, "--trust", bkeys.signer_pub, "--identity", bkeys.identity, "--cluster", "c1",
        "--output-dir", b / "out", "--plaintext-secrets",
    )  # fmt: skip
    _check(tmp_path, start, args, monkeypatch)


def test_fault_2_planted_links_mesh_install_output_dir(
    tmp_path: Path, release: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = tmp_path / "start"
    (start / "out").mkdir(parents=True)
    args: Args = lambda b: (  # noqa: E731
        "mesh", "install", "--release", release, "--cluster-name", "cluster1", "--network", "net1",
        "--mesh-id", "p1", "--output-dir", b / "out",
    )  # fmt: skip
    _check(tmp_path, start, args, monkeypatch)


@pytest.mark.parametrize(
    "act",
    [
        ("ca", "revoke", "c2", "--reason", "keyCompromise"),
        ("ca", "crl", "--next-update-days", "7"),
        ("ca", "rotate", "c1", "--key-type", "ecdsa-p256", "--days", "30"),
    ],
    ids=["revoke", "crl", "rotate"],
)
def test_fault_2_planted_links_root_acts(
    act: tuple[str, ...], tmp_path: Path, pki: Path, passfile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = tmp_path / "start"
    start.mkdir()
    shutil.copytree(pki, start / "pki")
    args: Args = lambda b: (*act, "--dir", b / "pki", "--passphrase-file", passfile)  # noqa: E731
    _check(tmp_path, start, args, monkeypatch)
