"""Synthetic container images written as an OCI image layout (what ``skopeo copy oci:`` reads).

``make_mesh_layout(folder)`` writes three images named like Istio's, sharing a base layer:

* ``pilot:1.8.6``: an OCI index with two platforms (linux/amd64, linux/arm64), each a manifest of
  config + shared base layer + its own layer;
* ``proxyv2:1.8.6``: one OCI manifest (linux/amd64): config + shared base layer + its own layer;
* ``install-cni:1.8.6``: a Docker v2 schema 2 manifest (linux/amd64) over the same base layer.

Layers are gzip streams of pseudo-random bytes (not tars: registries and skopeo copy a gzip
layer byte for byte without looking inside). ``big=`` sizes make the bench's images (streamed, never held in memory).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

from airgap.core.oci import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
TAG = "1.8.6"


@dataclass(frozen=True)
class Blob:
    media_type: str
    digest: str
    size: int

    def descriptor(self, **extra: object) -> dict[str, object]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, **extra}


def write_blob(layout: Path, data: bytes, media_type: str) -> Blob:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = layout / "blobs" / "sha256" / digest[7:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return Blob(media_type, digest, len(data))


def write_random_blob(layout: Path, size: int, media_type: str, *, seed: bytes) -> Blob:
    """A gzip layer (stored blocks: gzip framing, no compression work) of about ``size``
    pseudo-random bytes, streamed in 1 MiB chunks (SHAKE-256 of ``seed``). Layers must really be
    gzip: skopeo sniffs a layer and compresses one that is not, which changes its digest."""
    tmp = layout / "blobs" / "sha256" / f".tmp-{os.getpid()}"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    z = zlib.compressobj(0, zlib.DEFLATED, 31)
    written = 0
    with open(tmp, "wb") as fh:
        done, n = 0, 0
        while done < size:
            chunk = hashlib.shake_256(seed + n.to_bytes(8, "big")).digest(min(1024 * 1024, size - done))
            out = z.compress(chunk) + (z.flush() if done + len(chunk) >= size else b"")
            fh.write(out)
            h.update(out)
            done, n, written = done + len(chunk), n + 1, written + len(out)
    digest = "sha256:" + h.hexdigest()
    tmp.rename(layout / "blobs" / "sha256" / digest[7:])
    return Blob(media_type, digest, written)


def _config(layout: Path, arch: str, name: str, media_type: str = OCI_CONFIG) -> Blob:
    doc = {"architecture": arch, "os": "linux", "config": {"Labels": {"name": name}}, "rootfs": {"type": "layers"}}
    return write_blob(layout, json.dumps(doc, indent=2).encode(), media_type)


def write_manifest(layout: Path, config: Blob, layers: list[Blob], media_type: str = OCI_MANIFEST) -> Blob:
    doc = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": config.descriptor(),
        "layers": [b.descriptor() for b in layers],
    }
    # indent=3: manifests are kept byte for byte, so an odd spelling proves nobody re-serialised them
    return write_blob(layout, json.dumps(doc, indent=3).encode(), media_type)


def write_index(layout: Path, manifests: list[tuple[Blob, str]]) -> Blob:
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [m.descriptor(platform={"os": "linux", "architecture": arch}) for m, arch in manifests],
    }
    return write_blob(layout, json.dumps(doc, indent=3).encode(), OCI_INDEX)


def write_layout_index(layout: Path, refs: dict[str, Blob]) -> None:
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    entries = [b.descriptor(annotations={"org.opencontainers.image.ref.name": name}) for name, b in refs.items()]
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": entries}))


def _layer(layout: Path, size: int, seed: str, media_type: str = OCI_LAYER) -> Blob:
    if size > 64 * 1024:
        return write_random_blob(layout, size, media_type, seed=seed.encode())
    return write_blob(layout, gzip.compress(hashlib.shake_256(seed.encode()).digest(size), 0, mtime=0), media_type)


def make_mesh_layout(
    folder: Path, *, base_size: int = 40_000, unique_size: int = 9_000, tag: str = TAG
) -> dict[str, Blob]:
    """Write the three test images into an OCI layout at ``folder``; returns ``NAME:TAG`` -> top-level blob."""
    folder.mkdir(parents=True, exist_ok=True)
    base = _layer(folder, base_size, "base")
    base_docker = Blob(DOCKER_LAYER, base.digest, base.size)
    per_arch = []
    for arch in ("amd64", "arm64"):
        own = _layer(folder, unique_size, f"pilot-{arch}-{tag}")
        per_arch.append((write_manifest(folder, _config(folder, arch, f"pilot-{tag}"), [base, own]), arch))
    pilot = write_index(folder, per_arch)
    proxy_own = _layer(folder, unique_size, f"proxyv2-{tag}")
    proxy = write_manifest(folder, _config(folder, "amd64", f"proxyv2-{tag}"), [base, proxy_own])
    cni_own = _layer(folder, unique_size // 3, f"cni-{tag}", DOCKER_LAYER)
    cni_config = _config(folder, "amd64", f"install-cni-{tag}", DOCKER_CONFIG)
    cni = write_manifest(folder, cni_config, [base_docker, cni_own], DOCKER_MANIFEST)
    refs = {f"pilot:{tag}": pilot, f"proxyv2:{tag}": proxy, f"install-cni:{tag}": cni}
    write_layout_index(folder, refs)
    return refs


# -- images bundles for tests ------------------------------------------------------------------------
def layout_tops(layout: Path, source_host: str = "docker.io/istio") -> list[tuple[object, str, str]]:
    """``seal_images`` input for every image of a layout written by :func:`make_mesh_layout`."""
    from airgap.core.images_seal import Wanted

    index = json.loads((layout / "index.json").read_text())
    tops: list[tuple[object, str, str]] = []
    for m in index["manifests"]:
        name, tag = m["annotations"]["org.opencontainers.image.ref.name"].split(":")
        tops.append((Wanted(name, f"{source_host}/{name}:{tag}", tag), m["digest"], m["mediaType"]))
    return tops


def bundle_entries(path: Path) -> list[tuple[str, bytes]]:
    """(name, data) of every entry of an (unsplit) images bundle, in order."""
    import tarfile

    with tarfile.open(path) as tar:
        out = []
        for info in tar.getmembers():
            fh = tar.extractfile(info)
            assert fh is not None
            out.append((info.name, fh.read()))
        return out


def write_entries(path: Path, entries: list[tuple[str, bytes]]) -> Path:
    """An images bundle file from (name, data) entries, laid out as the format requires."""
    from airgap.core.bundle.ustar import padding_for, ustar_header

    with open(path, "wb") as fh:
        for name, data in entries:
            fh.write(ustar_header(name, len(data)) + data + padding_for(len(data)))
        fh.write(b"\0" * 1024)
    return path


def resign(path: Path, out: Path, key: object, mutate: object) -> Path:
    """Rewrite an images bundle with ``mutate(manifest_doc, members: dict[name, bytes])`` applied,
    then the manifest re-signed by ``key``: an attack that only a check after the signature catches."""
    from airgap.core.bundle.manifest import sign_manifest
    from airgap.core.canonical import canonical_json

    entries = bundle_entries(path)
    doc = json.loads(entries[-2][1])
    members = dict(entries[:-2])
    mutate(doc, members)  # type: ignore[operator]
    for m in doc["members"]:
        m["size"] = len(members[m["path"]])
        if not m["path"].startswith("blobs/"):
            m["sha256"] = hashlib.sha256(members[m["path"]]).hexdigest()
    order = [m["path"] for m in doc["members"]]
    data = canonical_json(doc)
    return write_entries(
        out,
        [(n, members[n]) for n in order] + [("manifest.json", data), ("manifest.json.sig", sign_manifest(key, data))],
    )  # type: ignore[arg-type]


def replace_manifest(doc: dict[str, object], members: dict[str, bytes], old: str, new_bytes: bytes) -> str:
    """In a bundle being rewritten by :func:`resign`: carry ``new_bytes`` instead of the manifest
    ``old`` (same place in the order), point the image list at it, rebuild index.json."""
    from airgap.core.images_bundle import ImageRecord, layout_index

    new = "sha256:" + hashlib.sha256(new_bytes).hexdigest()
    entries = doc["members"]
    assert isinstance(entries, list)
    for m in entries:
        if m["path"] == f"blobs/sha256/{old[7:]}":
            m["path"], m["sha256"] = f"blobs/sha256/{new[7:]}", new[7:]
    members[f"blobs/sha256/{new[7:]}"] = new_bytes
    images = doc["images"]
    assert isinstance(images, list)
    for i in images:
        if i["digest"] == old:
            i["digest"] = new
    sizes = {"sha256:" + m["sha256"]: len(members[m["path"]]) for m in entries}
    records = [
        ImageRecord(i["name"], i["source"], i["tag"], i["digest"], i["media_type"], tuple(i["platforms"]))
        for i in images
    ]
    members["index.json"] = layout_index(records, sizes)
    return new
