"""Generate the committed example images bundles in ``bundles/images-examples/`` (SPEC.md section 10).

Run ``python bundles/generate_images_examples.py`` to rewrite them, ``--check`` to verify that the
committed files are exactly what this generator makes. The keys under ``images-examples/keys/``
are made once and kept (TEST-ONLY); everything else is fixed: the images' bytes, ids, times, tar
headers and RFC 6979 (deterministic) ECDSA signatures.

Each example is one line of CATALOGUE: its name, what is wrong with it, and the exit code of
``airgap images verify FILE --trust keys/puller.pub``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import filecmp
import hashlib
import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from airgap.core.bundle.manifest import sign_manifest
from airgap.core.bundle.ustar import padding_for, ustar_header
from airgap.core.canonical import canonical_json
from airgap.core.images_bundle import ImageRecord, layout_index
from airgap.core.images_seal import Wanted, seal_images
from airgap.core.keys import encode_private_key, load_private_key, public_pem, spki_sha256

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE / "images-examples"
KEYS = EXAMPLES / "keys"
CREATED = dt.datetime(2026, 6, 1, 12, 0, 0, tzinfo=dt.UTC)
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


@dataclass(frozen=True)
class Example:
    name: str
    wrong: str
    verify: int
    make: Callable[[Path, Path], None]  # (folder with valid.images, output path)


# -- the images ----------------------------------------------------------------------------------------
def _blob(layout: Path, data: bytes, media_type: str) -> dict[str, Any]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "blobs" / "sha256" / digest[7:]).write_bytes(data)
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def _layer(layout: Path, seed: str, media_type: str = OCI_LAYER) -> dict[str, Any]:
    import gzip

    return _blob(layout, gzip.compress(hashlib.shake_256(seed.encode()).digest(700), 0, mtime=0), media_type)


def _manifest(layout: Path, arch: str, name: str, layers: list[dict[str, Any]], docker: bool = False) -> dict[str, Any]:
    config = {"architecture": arch, "os": "linux", "config": {"Labels": {"name": name}}}
    cfg = _blob(layout, json.dumps(config).encode(), DOCKER_CONFIG if docker else OCI_CONFIG)
    mt = DOCKER_MANIFEST if docker else OCI_MANIFEST
    doc = {"schemaVersion": 2, "mediaType": mt, "config": cfg, "layers": layers}
    return _blob(layout, json.dumps(doc, indent=3).encode(), mt)


def make_layout(layout: Path) -> list[tuple[Wanted, str, str]]:
    """pilot (a two-platform OCI index), proxyv2 (OCI), install-cni (Docker v2), one shared base layer."""
    base = _layer(layout, "base")
    per_arch = [(_manifest(layout, a, "pilot", [base, _layer(layout, f"pilot-{a}")]), a) for a in ("amd64", "arm64")]
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{**m, "platform": {"os": "linux", "architecture": a}} for m, a in per_arch],
    }
    pilot = _blob(layout, json.dumps(index, indent=3).encode(), OCI_INDEX)
    proxy = _manifest(layout, "amd64", "proxyv2", [base, _layer(layout, "proxyv2")])
    cni_layers = [{**base, "mediaType": DOCKER_LAYER}, _layer(layout, "cni", DOCKER_LAYER)]
    cni = _manifest(layout, "amd64", "install-cni", cni_layers, docker=True)
    return [
        (Wanted(n, f"docker.io/istio/{n}:1.8.6", "1.8.6"), d["digest"], d["mediaType"])
        for n, d in (("pilot", pilot), ("proxyv2", proxy), ("install-cni", cni))
    ]


# -- rewriting a bundle ------------------------------------------------------------------------------
def _entries(path: Path) -> list[tuple[str, bytes]]:
    import tarfile

    with tarfile.open(path) as tar:
        return [(i.name, tar.extractfile(i).read()) for i in tar.getmembers()]  # type: ignore[union-attr]


def _write(path: Path, entries: list[tuple[str, bytes]]) -> None:
    with open(path, "wb") as fh:
        for name, data in entries:
            fh.write(ustar_header(name, len(data)) + data + padding_for(len(data)))
        fh.write(b"\0" * 1024)


def _resign(valid: Path, out: Path, key: Any, mutate: Callable[[dict[str, Any], dict[str, bytes]], None]) -> None:
    entries = _entries(valid)
    doc = json.loads(entries[-2][1])
    members = dict(entries[:-2])
    mutate(doc, members)
    for m in doc["members"]:
        m["size"] = len(members[m["path"]])
        if not m["path"].startswith("blobs/"):
            m["sha256"] = hashlib.sha256(members[m["path"]]).hexdigest()
    data = canonical_json(doc)
    order = [(m["path"], members[m["path"]]) for m in doc["members"]]
    _write(out, [*order, ("manifest.json", data), ("manifest.json.sig", sign_manifest(key, data, deterministic=True))])


def _swap_manifest(
    doc: dict[str, Any], members: dict[str, bytes], name: str, edit: Callable[[dict[str, Any]], None]
) -> None:
    """Carry an edited copy of image ``name``'s manifest instead of the original (list, index.json updated)."""
    image = next(i for i in doc["images"] if i["name"] == name)
    old = image["digest"]
    manifest = json.loads(members[f"blobs/sha256/{old[7:]}"])
    edit(manifest)
    new_bytes = json.dumps(manifest).encode()
    new = "sha256:" + hashlib.sha256(new_bytes).hexdigest()
    for m in doc["members"]:
        if m["path"] == f"blobs/sha256/{old[7:]}":
            m["path"], m["sha256"] = f"blobs/sha256/{new[7:]}", new[7:]
    members[f"blobs/sha256/{new[7:]}"] = new_bytes
    image["digest"], image["media_type"] = new, manifest.get("mediaType", image["media_type"])
    sizes = {"sha256:" + m["sha256"]: len(members[m["path"]]) for m in doc["members"]}
    records = [
        ImageRecord(i["name"], i["source"], i["tag"], i["digest"], i["media_type"], tuple(i["platforms"]))
        for i in doc["images"]
    ]
    members["index.json"] = layout_index(records, sizes)


# -- the examples ------------------------------------------------------------------------------------
def _keys() -> tuple[Any, Any]:
    if not (KEYS / "puller.key").exists():
        KEYS.mkdir(parents=True, exist_ok=True)
        for name in ("puller", "stranger"):
            k = ec.generate_private_key(ec.SECP256R1())
            (KEYS / f"{name}.key").write_bytes(encode_private_key(k, None))
            (KEYS / f"{name}.pub").write_bytes(public_pem(k))
    return load_private_key(KEYS / "puller.key", None), load_private_key(KEYS / "stranger.key", None)


def _flip(valid: Path, out: Path, at: Callable[[list[tuple[str, bytes]]], int]) -> None:
    data = bytearray(valid.read_bytes())
    data[at(_entries(valid))] ^= 0x01
    out.write_bytes(bytes(data))


def _offset_of(entries: list[tuple[str, bytes]], name: str) -> int:
    pos = 0
    for n, d in entries:
        if n == name:
            return pos + 512
        pos += 512 + len(d) + (-len(d) % 512)
    raise KeyError(name)


def _catalogue(puller: Any, stranger: Any) -> list[Example]:
    def layer_of(entries: list[tuple[str, bytes]]) -> int:
        name = [n for n, _ in entries if n.startswith("blobs/")][-1]
        return _offset_of(entries, name) + 100

    def drop_last_blob(doc: dict[str, Any], members: dict[str, bytes]) -> None:
        doc["members"].pop()

    def stowaway(doc: dict[str, Any], members: dict[str, bytes]) -> None:
        h = hashlib.sha256(b"stowaway").hexdigest()
        members[f"blobs/sha256/{h}"] = b"stowaway"
        doc["members"].append({"path": f"blobs/sha256/{h}", "size": 8, "sha256": h})

    def lie(m: dict[str, Any]) -> None:
        m["layers"][1]["size"] += 1

    def schema1(m: dict[str, Any]) -> None:
        m["mediaType"] = "application/vnd.docker.distribution.manifest.v1+prettyjws"

    def traversal(valid: Path, out: Path) -> None:
        entries = _entries(valid)
        entries[2] = ("blobs/sha256/../../../etc/cron.d/evil", entries[2][1])
        _write(out, entries)

    def tamper_manifest(valid: Path, out: Path) -> None:
        entries = _entries(valid)
        entries[-2] = ("manifest.json", entries[-2][1].replace(b'"proxyv2"', b'"proxyv3"'))
        _write(out, entries)

    return [
        Example(
            "valid.images",
            "nothing: pilot (two-platform OCI index), proxyv2 (OCI), install-cni (Docker v2), shared base layer",
            0,
            lambda v, o: shutil.copyfile(v, o),
        ),
        Example(
            "tampered-layer.images",
            "one bit of a layer flipped after signing (hash mismatch)",
            1,
            lambda v, o: _flip(v, o, layer_of),
        ),
        Example(
            "tampered-manifest.images",
            "manifest.json edited (an image renamed) without re-signing (bad signature)",
            1,
            lambda v, o: tamper_manifest(v, o),
        ),
        Example(
            "untrusted-signer.images",
            "correctly signed, but by stranger.key, which is not trusted",
            1,
            lambda v, o: _resign(v, o, stranger, lambda d, m: d.update(signer=spki_sha256(stranger))),
        ),
        Example(
            "forged-signer-id.images",
            "signed by stranger.key while the manifest claims puller's key id",
            1,
            lambda v, o: _resign(v, o, stranger, lambda d, m: None),
        ),
        Example(
            "missing-blob.images",
            "re-signed without its last layer: a manifest names a blob the bundle lacks",
            1,
            lambda v, o: _resign(v, o, puller, drop_last_blob),
        ),
        Example(
            "unnamed-blob.images",
            "re-signed with an extra blob that no manifest names",
            1,
            lambda v, o: _resign(v, o, puller, stowaway),
        ),
        Example(
            "lying-size.images",
            "re-signed; proxyv2's manifest says a layer is one byte longer than it is",
            1,
            lambda v, o: _resign(v, o, puller, lambda d, m: _swap_manifest(d, m, "proxyv2", lie)),
        ),
        Example(
            "schema1.images",
            "re-signed; proxyv2's manifest is Docker schema 1 (not OCI or Docker v2)",
            3,
            lambda v, o: _resign(v, o, puller, lambda d, m: _swap_manifest(d, m, "proxyv2", schema1)),
        ),
        Example(
            "path-traversal.images",
            "an entry named blobs/sha256/../../../etc/cron.d/evil (escapes with '..')",
            3,
            traversal,
        ),
        Example(
            "truncated.images",
            "valid.images cut in half",
            3,
            lambda v, o: o.write_bytes(v.read_bytes()[: v.stat().st_size // 2]),
        ),
    ]


def generate(out: Path) -> list[Example]:
    puller, stranger = _keys()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        layout = Path(tmp) / "layout"
        tops = make_layout(layout)
        valid = Path(tmp) / "valid.images"
        kw: dict[str, Any] = {
            "key": puller,
            "now": CREATED,
            "bundle_id": "0123456789abcdef0123456789abcdef",
            "deterministic": True,
        }
        seal_images(layout, tops, out=valid, **kw)
        catalogue = _catalogue(puller, stranger)
        for e in catalogue:
            e.make(valid, out / e.name)
        seal_images(layout, tops, out=out / "valid-split.images", split=1024 * 1024, **kw)
    return catalogue


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed files instead of writing")
    args = ap.parse_args(argv)
    if not args.check:
        for p in EXAMPLES.glob("*.images*"):
            p.unlink()
        generate(EXAMPLES)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        names = sorted(p.name for p in Path(tmp).iterdir())
        committed = sorted(p.name for p in EXAMPLES.glob("*.images*"))
        same = names == committed and all(filecmp.cmp(Path(tmp) / n, EXAMPLES / n, shallow=False) for n in names)
    print("images examples up to date" if same else "images examples differ from the generator: re-run it")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
