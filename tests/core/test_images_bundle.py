"""The images bundle format: sealing from an OCI layout and the one-pass verifier (no registry needed)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from airgap.core.images_bundle import OCI_LAYOUT_BYTES, verify_images
from airgap.core.images_seal import seal_images
from airgap.core.oci import DOCKER_MANIFEST, INDEX_TYPES
from airgap.errors import DigestMismatch, InvalidInput, SignatureMismatch, VerificationError, WouldOverwrite
from tests.oci_fixtures import (
    bundle_entries,
    layout_tops,
    make_mesh_layout,
    replace_manifest,
    resign,
    write_entries,
)


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("oci") / "layout"
    make_mesh_layout(folder)
    return folder


@pytest.fixture(scope="module")
def sealed(layout: Path, key: ec.EllipticCurvePrivateKey, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "mesh.images"
    seal_images(layout, layout_tops(layout), key=key, out=out)  # type: ignore[arg-type]
    return out


def test_seal_and_verify_carries_each_blob_once_and_every_platform(sealed: Path, key: Any, layout: Path) -> None:
    v = verify_images(sealed, [key.public_key()])
    by_name = {i.name: i for i in v.images}
    assert set(by_name) == {"pilot", "proxyv2", "install-cni"}
    assert by_name["pilot"].media_type in INDEX_TYPES
    assert by_name["pilot"].platforms == ("linux/amd64", "linux/arm64")
    assert by_name["install-cni"].media_type == DOCKER_MANIFEST
    index = json.loads((layout / "index.json").read_text())
    for m in index["manifests"]:  # the digest each image had upstream
        name = m["annotations"]["org.opencontainers.image.ref.name"].split(":")[0]
        assert by_name[name].digest == m["digest"]
    # the shared base layer is carried once; every layout blob exactly once, byte for byte
    names = [n for n, _ in bundle_entries(sealed)]
    assert len(names) == len(set(names))
    blobs = {p.name: p.read_bytes() for p in (layout / "blobs" / "sha256").iterdir()}
    carried = {n.rsplit("/", 1)[1]: d for n, d in bundle_entries(sealed) if n.startswith("blobs/")}
    assert carried == blobs
    assert dict(bundle_entries(sealed))["oci-layout"] == OCI_LAYOUT_BYTES


def test_tar_xf_of_a_bundle_is_an_oci_layout_skopeo_reads(sealed: Path, tmp_path: Path) -> None:
    import tarfile

    skopeo = shutil.which("skopeo")
    if skopeo is None:
        pytest.skip("needs skopeo")
    with tarfile.open(sealed) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    from tests.registry_fixtures import skopeo as run_skopeo

    out = run_skopeo("inspect", "--raw", f"oci:{tmp_path / 'x'}:pilot:1.8.6")
    assert json.loads(out.stdout)["mediaType"] in INDEX_TYPES


@pytest.mark.parametrize("where", ["first header", "oci-layout", "a manifest", "a layer", "padding", "signed manifest"])
def test_a_flipped_byte_anywhere_fails(sealed: Path, key: Any, tmp_path: Path, where: str) -> None:
    data = bytearray(sealed.read_bytes())
    entries = bundle_entries(sealed)
    offsets, pos = {}, 0
    for name, body in entries:
        offsets[name] = pos + 512
        pos += 512 + len(body) + (-len(body) % 512)
    first_blob = next(n for n, _ in entries if n.startswith("blobs/"))
    layer = max((n for n, _ in entries if n.startswith("blobs/")), key=lambda n: len(dict(entries)[n]))
    at = {
        "first header": 10,
        "oci-layout": offsets["oci-layout"] + 3,
        "a manifest": offsets[first_blob] + 5,
        "a layer": offsets[layer] + len(dict(entries)[layer]) // 2,
        "padding": offsets["oci-layout"] + len(OCI_LAYOUT_BYTES) + 1,
        "signed manifest": offsets["manifest.json"] + 40,
    }[where]
    data[at] ^= 0x01
    bad = tmp_path / "bad.images"
    bad.write_bytes(bytes(data))
    with pytest.raises((VerificationError, InvalidInput)) as exc:
        verify_images(bad, [key.public_key()])
    assert str(bad) in str(exc.value)


def test_a_wrong_signer_fails(sealed: Path) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(SignatureMismatch, match="not a trusted key"):
        verify_images(sealed, [other.public_key()])


def test_a_signature_by_another_key_claiming_the_signer_fails(sealed: Path, key: Any, tmp_path: Path) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    forged = resign(sealed, tmp_path / "f.images", other, lambda doc, m: None)
    with pytest.raises(VerificationError, match="signature"):
        verify_images(forged, [key.public_key()])


def _manifest_of(sealed: Path, name: str) -> tuple[str, dict[str, Any]]:
    entries = dict(bundle_entries(sealed))
    doc = json.loads(entries["manifest.json"])
    digest = next(i["digest"] for i in doc["images"] if i["name"] == name)
    return digest, json.loads(entries[f"blobs/sha256/{digest[7:]}"])


def test_a_descriptor_that_lies_about_size_fails(sealed: Path, key: Any, tmp_path: Path) -> None:
    digest, manifest = _manifest_of(sealed, "proxyv2")
    manifest["layers"][1]["size"] += 1

    def mutate(doc: dict[str, Any], members: dict[str, bytes]) -> None:
        replace_manifest(doc, members, digest, json.dumps(manifest).encode())

    bad = resign(sealed, tmp_path / "lie.images", key, mutate)
    with pytest.raises(VerificationError, match=r"has \d+ bytes"):
        verify_images(bad, [key.public_key()])


def test_a_manifest_naming_a_blob_the_bundle_lacks_fails(sealed: Path, key: Any, tmp_path: Path) -> None:
    digest, manifest = _manifest_of(sealed, "proxyv2")
    manifest["layers"][1]["digest"] = "sha256:" + "ab" * 32

    def mutate(doc: dict[str, Any], members: dict[str, bytes]) -> None:
        replace_manifest(doc, members, digest, json.dumps(manifest).encode())

    bad = resign(sealed, tmp_path / "missing.images", key, mutate)
    with pytest.raises(VerificationError, match="which the bundle lacks"):
        verify_images(bad, [key.public_key()])


def test_a_carried_blob_nothing_names_fails(sealed: Path, key: Any, tmp_path: Path) -> None:
    import hashlib

    extra = b"stowaway"

    def mutate(doc: dict[str, Any], members: dict[str, bytes]) -> None:
        h = hashlib.sha256(extra).hexdigest()
        members[f"blobs/sha256/{h}"] = extra
        doc["members"].append({"path": f"blobs/sha256/{h}", "size": len(extra), "sha256": h})

    bad = resign(sealed, tmp_path / "extra.images", key, mutate)
    with pytest.raises(VerificationError, match="no manifest names"):
        verify_images(bad, [key.public_key()])


def test_a_media_type_that_is_not_oci_or_docker_v2_is_exit_3(sealed: Path, key: Any, tmp_path: Path) -> None:
    digest, manifest = _manifest_of(sealed, "proxyv2")
    manifest["mediaType"] = "application/vnd.docker.distribution.manifest.v1+prettyjws"

    def mutate(doc: dict[str, Any], members: dict[str, bytes]) -> None:
        new = replace_manifest(doc, members, digest, json.dumps(manifest).encode())
        for i in doc["images"]:
            if i["digest"] == new:
                i["media_type"] = manifest["mediaType"]

    bad = resign(sealed, tmp_path / "v1.images", key, mutate)
    with pytest.raises(InvalidInput, match="not an OCI or Docker v2"):
        verify_images(bad, [key.public_key()])


def test_a_manifest_over_the_cap_is_exit_3(sealed: Path, key: Any, tmp_path: Path) -> None:
    digest, manifest = _manifest_of(sealed, "proxyv2")
    big = json.dumps(manifest).encode()[:-1] + b" " * (4 * 1024 * 1024) + b"}"

    def mutate(doc: dict[str, Any], members: dict[str, bytes]) -> None:
        replace_manifest(doc, members, digest, big)

    bad = resign(sealed, tmp_path / "big.images", key, mutate)
    with pytest.raises(InvalidInput, match="size limit"):
        verify_images(bad, [key.public_key()])


def test_a_layout_path_escaping_its_folder_is_exit_3(sealed: Path, key: Any, tmp_path: Path) -> None:
    entries = bundle_entries(sealed)
    name, data = entries[2]
    entries[2] = ("blobs/sha256/../../../etc/" + name[-20:], data)
    bad = write_entries(tmp_path / "escape.images", entries)
    with pytest.raises(InvalidInput, match="escapes"):
        verify_images(bad, [key.public_key()])


def test_a_member_path_outside_the_layout_in_the_signed_list_is_exit_3(sealed: Path, key: Any, tmp_path: Path) -> None:
    def mutate(doc: dict[str, Any], members: dict[str, bytes]) -> None:
        old = doc["members"][2]["path"]
        members["blobs/x/" + old[-64:]] = members.pop(old)
        doc["members"][2]["path"] = "blobs/x/" + old[-64:]

    bad = resign(sealed, tmp_path / "outside.images", key, mutate)
    with pytest.raises(InvalidInput, match="not where the layout keeps it"):
        verify_images(bad, [key.public_key()])


def test_truncated_bundle_fails(sealed: Path, key: Any, tmp_path: Path) -> None:
    bad = tmp_path / "short.images"
    bad.write_bytes(sealed.read_bytes()[:-3000])
    with pytest.raises((InvalidInput, VerificationError)):
        verify_images(bad, [key.public_key()])


def test_split_parts_are_each_signed_and_a_bad_part_is_named(layout: Path, key: Any, tmp_path: Path) -> None:
    out = tmp_path / "mesh.images"
    m = seal_images(layout, layout_tops(layout), key=key, out=out, split=1024 * 1024)  # type: ignore[arg-type]
    assert m.parts is not None and len(m.parts) == 1  # the test images are small: one part
    v = verify_images(out, [key.public_key()])
    assert [p.name for p in v.manifest.parts or ()] == ["mesh.images.part001"]
    part = tmp_path / "mesh.images.part001"
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0x80
    part.write_bytes(bytes(data))
    with pytest.raises(VerificationError, match=r"mesh\.images\.part001"):
        verify_images(out, [key.public_key()])


def test_split_into_several_parts_round_trips(tmp_path: Path, key: Any) -> None:
    layout = tmp_path / "layout"
    make_mesh_layout(layout, base_size=3 * 1024 * 1024)
    out = tmp_path / "big.images"
    m = seal_images(layout, layout_tops(layout), key=key, out=out, split=1024 * 1024)  # type: ignore[arg-type]
    assert m.parts is not None and len(m.parts) >= 3
    assert all(p.size <= 1024 * 1024 for p in m.parts)
    assert len(verify_images(out, [key.public_key()]).images) == 3
    (tmp_path / "big.images.part002").unlink()
    with pytest.raises(InvalidInput, match="part002"):
        verify_images(out, [key.public_key()])


def test_since_carries_only_what_the_old_bundle_did_not(sealed: Path, key: Any, tmp_path: Path) -> None:
    base = verify_images(sealed, [key.public_key()])
    layout = tmp_path / "new"
    make_mesh_layout(layout, tag="1.8.7")  # same base layer, new own layers
    out = tmp_path / "delta.images"
    m = seal_images(layout, layout_tops(layout), key=key, out=out, base=base)  # type: ignore[arg-type]
    v = verify_images(out, [key.public_key()])
    assert v.base is not None and v.base.bundle_id == base.bundle_id
    carried = {f"sha256:{x.sha256}" for x in m.members[2:]}
    assert not carried & base.blob_digests()  # nothing the old bundle carried is carried again
    assert [i.digest for i in m.inherited] == [next(iter(base.blob_digests() & v.blob_digests()))]  # the base layer
    assert {i.image for i in m.inherited} <= {"pilot", "proxyv2", "install-cni"}
    assert out.stat().st_size < sealed.stat().st_size


def test_an_existing_output_is_refused(sealed: Path, layout: Path, key: Any) -> None:
    with pytest.raises(WouldOverwrite):
        seal_images(layout, layout_tops(layout), key=key, out=sealed)  # type: ignore[arg-type]


def test_a_layout_blob_that_is_not_its_digest_is_removed_and_fails(tmp_path: Path, key: Any) -> None:
    layout = tmp_path / "layout"
    make_mesh_layout(layout)
    victim = max((layout / "blobs" / "sha256").iterdir(), key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[100] ^= 1
    victim.write_bytes(bytes(data))
    with pytest.raises(DigestMismatch, match="not sha256:"):
        seal_images(layout, layout_tops(layout), key=key, out=tmp_path / "x.images")  # type: ignore[arg-type]
    assert not victim.exists()  # a re-run fetches it again
    assert not (tmp_path / "x.images").exists()


def test_an_entry_slipped_in_before_the_manifest_fails(sealed: Path, key: Any, tmp_path: Path) -> None:
    entries = bundle_entries(sealed)
    entries.insert(-2, ("blobs/sha256/" + "c" * 64, b"smuggled"))
    bad = write_entries(tmp_path / "slipped.images", entries)
    with pytest.raises(VerificationError, match="signed member list"):
        verify_images(bad, [key.public_key()])


def test_a_part_that_grew_fails_naming_it(layout: Path, key: Any, tmp_path: Path) -> None:
    out = tmp_path / "g.images"
    seal_images(layout, layout_tops(layout), key=key, out=out, split=1024 * 1024)  # type: ignore[arg-type]
    with open(tmp_path / "g.images.part001", "ab") as fh:
        fh.write(b"\0" * 512)
    with pytest.raises(VerificationError, match=r"g\.images\.part001: part is"):
        verify_images(out, [key.public_key()])


def test_the_member_stream_refuses_bytes_after_its_last_member(sealed: Path, key: Any) -> None:
    from airgap.core.images_bundle import _MemberStream

    v = verify_images(sealed, [key.public_key()])
    stream = _MemberStream(v.manifest.members, v.images, source="s")
    data = sealed.read_bytes()
    end = sum(512 + m.size + (-m.size % 512) for m in v.manifest.members)
    stream.feed(memoryview(data[:end]))
    stream.finish()
    with pytest.raises(VerificationError, match="after the last member"):
        stream.feed(memoryview(b"x"))
