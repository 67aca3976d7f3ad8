"""`airgap images list | pull | verify | push`: exit codes, the one error line, --json."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from airgap.core.images_seal import seal_images
from airgap.core.keys import load_private_key, new_signing_key
from airgap.core.release import extract_release
from airgap.errors import InvalidInput
from tests.helpers import one_error_line, run_cli
from tests.oci_fixtures import layout_tops, make_mesh_layout
from tests.registry_fixtures import make_ca, requires_registry, seed, skopeo_raw, start_registry
from tests.release_fixtures import make_signed_release

PASS = b"images pass phrase"


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("rel")
    tarball, sig, pub = make_signed_release(tmp, version="1.8.6", istio_profiles=True, hub="docker.io/istio")
    extract_release(tarball, tmp / "istio", sig, key=pub)
    return tmp / "istio"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    folder = tmp_path_factory.mktemp("keys")
    made = new_signing_key("op", folder, PASS)
    (folder / "pass.txt").write_bytes(PASS + b"\n")
    return made.private, made.public, folder / "pass.txt"


@pytest.fixture(scope="module")
def sealed(keys: tuple[Path, Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("b")
    make_mesh_layout(tmp / "layout")
    key = load_private_key(keys[0], PASS)
    seal_images(tmp / "layout", layout_tops(tmp / "layout"), key=key, out=tmp / "mesh.images")  # type: ignore[arg-type]
    return tmp / "mesh.images"


def test_list_reads_the_release_profiles(release: Path) -> None:
    r = run_cli("images", "list", "--release", release)
    assert r.code == 0, r.err
    assert r.out.splitlines() == ["docker.io/istio/pilot:1.8.6", "docker.io/istio/proxyv2:1.8.6"]
    r = run_cli("images", "list", "--release", release, "--profile", "cni", "--json")
    assert r.code == 0, r.err
    assert [i["name"] for i in json.loads(r.out)["images"]] == ["pilot", "proxyv2", "install-cni"]


def test_list_of_a_profile_the_release_lacks_is_exit_3(release: Path) -> None:
    r = run_cli("images", "list", "--release", release, "--profile", "nosuch")
    assert r.code == 3
    one_error_line(r, "nosuch")


def test_list_of_a_changed_profile_is_exit_1(release: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "rel"
    shutil.copytree(release, copy)
    profile = next(copy.glob("istio-*/manifests/profiles/default.yaml"))
    profile.write_text(profile.read_text().replace("image: pilot", "image: evil/pilot"))
    r = run_cli("images", "list", "--release", copy)
    assert r.code == 1
    one_error_line(r, "default.yaml", "changed")


def test_verify_lists_images_and_json(sealed: Path, keys: tuple[Path, Path, Path]) -> None:
    r = run_cli("images", "verify", sealed, "--trust", keys[1])
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[0].startswith("Verified OK: images bundle ") and "blobs" in lines[0]
    assert any(line.startswith("docker.io/istio/pilot:1.8.6  sha256:") and "linux/arm64" in line for line in lines)
    r = run_cli("images", "verify", sealed, "--trust", keys[1], "--json")
    doc = json.loads(r.out)
    assert doc["verified"] is True and {i["name"] for i in doc["images"]} == {"pilot", "proxyv2", "install-cni"}
    assert all(len(i["digest"]) == 71 for i in doc["images"])


def test_verify_tampered_is_exit_1_with_one_line(sealed: Path, keys: tuple[Path, Path, Path], tmp_path: Path) -> None:
    data = bytearray(sealed.read_bytes())
    data[2000] ^= 0x20
    bad = tmp_path / "bad.images"
    bad.write_bytes(bytes(data))
    r = run_cli("images", "verify", bad, "--trust", keys[1])
    assert r.code == 1
    one_error_line(r, str(bad))


def test_verify_wrong_signer_is_exit_1(sealed: Path, tmp_path: Path) -> None:
    other = new_signing_key("other", tmp_path, None)
    r = run_cli("images", "verify", sealed, "--trust", other.public)
    assert r.code == 1
    one_error_line(r, "not a trusted key")


def test_verify_without_trust_is_exit_3(sealed: Path) -> None:
    r = run_cli("images", "verify", sealed)
    assert r.code == 3
    one_error_line(r, "--trust")


def test_verify_not_a_bundle_is_exit_3(tmp_path: Path, keys: tuple[Path, Path, Path]) -> None:
    junk = tmp_path / "junk.images"
    junk.write_bytes(b"x" * 3000)
    r = run_cli("images", "verify", junk, "--trust", keys[1])
    assert r.code == 3
    one_error_line(r, str(junk))


@pytest.mark.parametrize("bad", ["pilot:1.8.6", "docker.io/istio/pilot", "docker.io/istio/pilot@sha256:" + "a" * 64])
def test_pull_with_a_malformed_image_is_exit_3(bad: str, keys: tuple[Path, Path, Path], tmp_path: Path) -> None:
    r = run_cli("images", "pull", "--image", bad, "--sign-key", keys[0], "--out", tmp_path / "x.images")
    assert r.code == 3
    one_error_line(r, "REGISTRY/PATH/NAME:TAG")


def test_pull_with_a_bad_split_is_exit_2(keys: tuple[Path, Path, Path], tmp_path: Path) -> None:
    r = run_cli(
        "images", "pull", "--image", "r.io/a/b:1", "--sign-key", keys[0], "--out", tmp_path / "x", "--split", "4X"
    )
    assert r.code == 2


def test_push_to_a_malformed_registry_is_exit_3(sealed: Path, keys: tuple[Path, Path, Path]) -> None:
    r = run_cli("images", "push", sealed, "--trust", keys[1], "--registry", "https://reg.example:5000")
    assert r.code == 3
    one_error_line(r, "HOST[:PORT][/PATH]")


@requires_registry
def test_pull_split_verify_push_through_the_cli(release: Path, keys: tuple[Path, Path, Path], tmp_path: Path) -> None:
    ca = make_ca(tmp_path / "ca")
    src = start_registry(tmp_path / "src", ca)
    dst = start_registry(tmp_path / "dst", ca, auth=True)
    try:
        refs = make_mesh_layout(tmp_path / "layout")
        seed(src, tmp_path / "layout", ["pilot:1.8.6", "proxyv2:1.8.6"], path="istio")
        out = tmp_path / "usb" / "mesh.images"
        out.parent.mkdir()
        pull: list[Any] = ["images", "pull", "--release", release, "--from", f"{src.host}/istio"]
        pull += [
            "--sign-key",
            keys[0],
            "--passphrase-file",
            keys[2],
            "--out",
            out,
            "--split",
            "1M",
            "--ca-bundle",
            ca.ca_pem,
        ]
        r = run_cli(*pull)
        assert r.code == 0, r.err
        assert (tmp_path / "usb" / "mesh.images.part001").is_file()
        r = run_cli("images", "verify", out, "--trust", keys[1], "--json")
        assert r.code == 0, r.err
        assert json.loads(r.out)["parts"] == ["mesh.images.part001"]
        push: list[Any] = ["images", "push", out, "--trust", keys[1], "--registry", f"{dst.host}/mesh"]
        push += ["--ca-bundle", ca.ca_pem, "--authfile", dst.authfile, "--state", tmp_path / "state", "--json"]
        r = run_cli(*push)
        assert r.code == 0, r.err
        doc = json.loads(r.out)
        assert {i["name"]: i["digest"] for i in doc["images"]} == {
            "pilot": refs["pilot:1.8.6"].digest,
            "proxyv2": refs["proxyv2:1.8.6"].digest,
        }
        assert "pusher" not in r.out + r.err and "s3cret" not in r.out + r.err  # credentials never shown
        raw = skopeo_raw(dst, "mesh/pilot:1.8.6")
        assert "sha256:" + hashlib.sha256(raw).hexdigest() == refs["pilot:1.8.6"].digest
        nowhere = {"HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(tmp_path), "REGISTRY_AUTH_FILE": ""}
        r = run_cli(
            "images",
            "push",
            out,
            "--trust",
            keys[1],
            "--registry",
            f"{dst.host}/mesh",
            "--ca-bundle",
            ca.ca_pem,
            env=nowhere,
        )
        assert r.code == 3  # no auth file given and none in the usual places: a clear error, nothing more
        one_error_line(r, "asks for credentials", alone=False)
    finally:
        src.stop()
        dst.stop()


def test_sizes_references_and_registries_parse_strictly() -> None:
    import typer

    from airgap.cli.images import parse_size
    from airgap.connected.images import parse_reference, parse_registry

    assert [parse_size(v) for v in ("4G", "700MiB", "1048576", "64k")] == [4 * 1024**3, 700 * 1024**2, 1048576, 65536]
    with pytest.raises(typer.BadParameter):
        parse_size("-1G")
    ref = parse_reference("gcr.io/gke-release/asm/pilot:1.8.6-asm.8")
    assert (ref.repository, ref.name, ref.tag) == ("gcr.io/gke-release/asm/pilot", "pilot", "1.8.6-asm.8")
    assert parse_reference("127.0.0.1:5000/a/b:1").repository == "127.0.0.1:5000/a/b"
    assert parse_registry("reg.local:5000/mesh/istio/") == ("reg.local:5000", "mesh/istio")
    assert parse_registry("reg.local") == ("reg.local", "")
    for bad in ("reg.local/UPPER", "user:pw@reg.local", "reg.local/../x", "-reg/x"):
        with pytest.raises(InvalidInput, match="HOST"):
            parse_registry(bad)
