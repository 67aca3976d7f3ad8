"""The images bundle: an OCI image layout inside airgap's signed container (``bundles/SPEC.md`` §10).

Layout of a bundle file (one file, or a small head file and ``--split`` parts)::

    oci-layout                  {"imageLayoutVersion":"1.0.0"}
    index.json                  the layout's index, made from the signed image list (canonical JSON)
    blobs/sha256/<hex> ...      every blob once: top-level manifests and indexes, then child
                                manifests, then configs and layers (a manifest before what it names)
    manifest.json               the signed manifest (canonical JSON): images, members, base, parts
    manifest.json.sig           DER ECDSA over manifest.json, by the signer's P-256/P-384 key

Split: ``BUNDLE`` holds only manifest.json and its signature; ``BUNDLE.partNNN`` (named in the
signed manifest with size and SHA-256) concatenated are the member entries above.

Trust: everything is hostile until :func:`verify_images` returns. Steps, in order: (1) container
structure and caps, (2) the manifest's schema, (3) the signature against the caller's keys,
(4) every part's size and SHA-256 (a bad part is named), (5) every member's header, size and
SHA-256 as the bytes stream past, in one pass, (6) every manifest and index parsed (OCI or
Docker v2 only, under caps) and every descriptor it holds matched to a carried blob of that size
or to a blob the base bundle carried; nothing carried that nothing names.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from airgap.core.atomic import create_file
from airgap.core.bundle.manifest import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    check_signer_key,
    format_time,
    parse_manifest_json,
    parse_time,
)
from airgap.core.bundle.ustar import BLOCK, read_member, scan_archive, ustar_header
from airgap.core.canonical import canonical_json, load_json
from airgap.core.hashing import Digests
from airgap.core.keys import PublicKey, spki_sha256
from airgap.core.limits import (
    DEFAULT_LIMITS,
    MAX_IMAGE_MEMBERS,
    MAX_IMAGES,
    MAX_IMAGES_MANIFEST,
    MAX_OCI_MANIFEST,
    Limits,
)
from airgap.core.oci import INDEX_TYPES, MANIFEST_TYPES, Descriptor, check_digest, parse_manifest
from airgap.core.progress import NO_PROGRESS, Progress
from airgap.core.signatures import verify_bytes
from airgap.errors import DigestMismatch, InvalidInput, Malformed, SignatureMismatch, TooLarge, VerificationError

FORMAT = "airgap-images"
FORMAT_VERSION = 1
OCI_LAYOUT = "oci-layout"
LAYOUT_INDEX = "index.json"
OCI_LAYOUT_BYTES = b'{"imageLayoutVersion":"1.0.0"}'
REF_NAME = "org.opencontainers.image.ref.name"
CHUNK = 1024 * 1024
_TOP = {"format", "format_version", "bundle_id", "created", "signer", "base", "images", "members", "inherited", "parts"}
_IMAGE_KEYS = {"name", "source", "tag", "digest", "media_type", "platforms"}
_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_BLOB = re.compile(r"^blobs/sha256/([0-9a-f]{64})$")
_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_PART = re.compile(r"^[A-Za-z0-9._-]{1,200}\.part[0-9]{3}$")
_REF = re.compile(r"^[A-Za-z0-9._:/-]{1,255}$")


@dataclass(frozen=True)
class ImageRecord:
    """One image the bundle carries (pushed as ``REGISTRY/PATH/NAME:TAG`` and by ``digest``)."""

    name: str  # last element of the source repository ("pilot")
    source: str  # REGISTRY/PATH/NAME:TAG it was pulled from
    tag: str
    digest: str  # "sha256:<hex>" of the top-level manifest or index, as the registry names it
    media_type: str
    platforms: tuple[str, ...]

    def to_doc(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "tag": self.tag,
            "digest": self.digest,
            "media_type": self.media_type,
            "platforms": list(self.platforms),
        }


@dataclass(frozen=True)
class Member:
    path: str
    size: int
    sha256: str

    def to_doc(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True)
class Inherited:
    """A blob this bundle's manifests name but its base bundle carried (and pushed under ``image``)."""

    digest: str
    size: int
    image: str

    def to_doc(self) -> dict[str, Any]:
        return {"digest": self.digest, "size": self.size, "image": self.image}


@dataclass(frozen=True)
class Part:
    name: str
    size: int
    sha256: str

    def to_doc(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True)
class Base:
    bundle_id: str
    sha256: str  # of the base bundle's signed manifest bytes

    def to_doc(self) -> dict[str, Any]:
        return {"bundle_id": self.bundle_id, "sha256": self.sha256}


@dataclass(frozen=True)
class ImagesManifest:
    bundle_id: str
    created: str
    signer: str
    base: Base | None
    images: tuple[ImageRecord, ...]
    members: tuple[Member, ...]
    inherited: tuple[Inherited, ...]
    parts: tuple[Part, ...] | None

    def to_doc(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "bundle_id": self.bundle_id,
            "created": self.created,
            "signer": self.signer,
            "base": None if self.base is None else self.base.to_doc(),
            "images": [i.to_doc() for i in self.images],
            "members": [m.to_doc() for m in self.members],
            "inherited": [i.to_doc() for i in self.inherited],
            "parts": None if self.parts is None else [p.to_doc() for p in self.parts],
        }

    def canonical_bytes(self) -> bytes:
        return canonical_json(self.to_doc())


def new_bundle_id() -> str:
    return secrets.token_hex(16)


def layout_index(images: Sequence[ImageRecord], sizes: dict[str, int]) -> bytes:
    """The layout's ``index.json``: one entry per image, named ``NAME:TAG`` (``oci:DIR:NAME:TAG``)."""
    entries = [
        {
            "mediaType": i.media_type,
            "digest": i.digest,
            "size": sizes[i.digest],
            "annotations": {REF_NAME: f"{i.name}:{i.tag}"},
        }
        for i in images
    ]
    return canonical_json({"schemaVersion": 2, "manifests": entries})


# -- manifest schema ---------------------------------------------------------------------------------
def _bad(source: str, what: str) -> Malformed:
    return Malformed(f"{source}: images manifest: {what}")


def _keys(doc: Any, keys: set[str], *, source: str, what: str) -> dict[str, Any]:
    if not isinstance(doc, dict) or set(doc) != keys:
        raise _bad(source, f"{what} must have exactly the fields {sorted(keys)}")
    return doc


def _size(v: Any, *, source: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 2**53:
        raise _bad(source, "a size is not a non-negative integer")
    return v


def _hex64(v: Any, *, source: str) -> str:
    if not isinstance(v, str) or not _HEX64.match(v):
        raise _bad(source, "a sha256 is not 64 lowercase hex digits")
    return v


def _image(doc: Any, *, source: str) -> ImageRecord:
    d = _keys(doc, _IMAGE_KEYS, source=source, what="an image")
    if not isinstance(d["name"], str) or not _NAME.match(d["name"]):
        raise _bad(source, f"image name {str(d['name'])[:80]!a} is not a repository name")
    if not isinstance(d["tag"], str) or not _TAG.match(d["tag"]):
        raise _bad(source, "an image tag is not a tag")
    if not isinstance(d["source"], str) or not _REF.match(d["source"]):
        raise _bad(source, "an image source is not a reference")
    if d["media_type"] not in INDEX_TYPES | MANIFEST_TYPES:
        raise InvalidInput(f"{source}: media type {str(d['media_type'])[:100]!a} is not an OCI or Docker v2 image type")
    plats = d["platforms"]
    if not isinstance(plats, list) or not all(isinstance(p, str) and len(p) <= 100 for p in plats):
        raise _bad(source, "image platforms must be a list of strings")
    digest = check_digest(d["digest"], source=source)
    return ImageRecord(d["name"], d["source"], d["tag"], digest, d["media_type"], tuple(plats))


def _members(items: Any, *, source: str) -> tuple[Member, ...]:
    if not isinstance(items, list) or len(items) > MAX_IMAGE_MEMBERS + 2:
        raise _bad(source, f"members must be a list of at most {MAX_IMAGE_MEMBERS} blobs")
    out = []
    for i, doc in enumerate(items):
        d = _keys(doc, {"path", "size", "sha256"}, source=source, what="a member")
        path, sha = d["path"], _hex64(d["sha256"], source=source)
        fixed = {0: OCI_LAYOUT, 1: LAYOUT_INDEX}.get(i)
        blob = _BLOB.match(path) if isinstance(path, str) else None
        if (fixed is not None and path != fixed) or (fixed is None and (blob is None or blob.group(1) != sha)):
            raise _bad(source, f"member {i} {str(path)[:100]!a} is not where the layout keeps it")
        out.append(Member(path, _size(d["size"], source=source), sha))
    if len({m.path for m in out}) != len(out) or len(out) < 2:
        raise _bad(source, "members must start with oci-layout and index.json and name each blob once")
    return tuple(out)


def _optional_list(doc: Any, keys: set[str], *, source: str, what: str) -> list[dict[str, Any]]:
    if not isinstance(doc, list) or len(doc) > MAX_IMAGE_MEMBERS:
        raise _bad(source, f"{what} must be a list")
    return [_keys(d, keys, source=source, what=what) for d in doc]


def validate_images_manifest(doc: Any, *, source: str) -> ImagesManifest:
    """Check the signed manifest's shape (step 2); nothing in it is trusted until its signature is."""
    d = _keys(doc, _TOP, source=source, what="the manifest")
    if d["format"] != FORMAT or d["format_version"] != FORMAT_VERSION:
        raise _bad(source, f"not an {FORMAT} bundle of format version {FORMAT_VERSION}")
    if not isinstance(d["bundle_id"], str) or not _HEX32.match(d["bundle_id"]):
        raise _bad(source, "bundle_id is not 32 lowercase hex digits")
    if not isinstance(d["created"], str):
        raise _bad(source, "created is not a time")
    parse_time(d["created"], source=source)
    base = None
    if d["base"] is not None:
        b = _keys(d["base"], {"bundle_id", "sha256"}, source=source, what="base")
        if not isinstance(b["bundle_id"], str) or not _HEX32.match(b["bundle_id"]):
            raise _bad(source, "base bundle_id is not 32 lowercase hex digits")
        base = Base(b["bundle_id"], _hex64(b["sha256"], source=source))
    if not isinstance(d["images"], list) or not 1 <= len(d["images"]) <= MAX_IMAGES:
        raise _bad(source, f"images must list 1 to {MAX_IMAGES} images")
    images = tuple(_image(i, source=source) for i in d["images"])
    if len({(i.name, i.tag) for i in images}) != len(images):
        raise _bad(source, "two images have the same name and tag")
    inherited = tuple(
        Inherited(check_digest(i["digest"], source=source), _size(i["size"], source=source), _image_name(i, source))
        for i in _optional_list(d["inherited"], {"digest", "size", "image"}, source=source, what="inherited")
    )
    if inherited and base is None:
        raise _bad(source, "blobs are inherited but no base bundle is named")
    parts = None
    if d["parts"] is not None:
        raw = _optional_list(d["parts"], {"name", "size", "sha256"}, source=source, what="parts")
        if not raw or not all(isinstance(p["name"], str) and _PART.match(p["name"]) for p in raw):
            raise _bad(source, "parts must name one or more NAME.partNNN files")
        parts = tuple(Part(p["name"], _size(p["size"], source=source), _hex64(p["sha256"], source=source)) for p in raw)
    signer = _hex64(d["signer"], source=source)
    members = _members(d["members"], source=source)
    return ImagesManifest(d["bundle_id"], d["created"], signer, base, images, members, inherited, parts)


def _image_name(doc: dict[str, Any], source: str) -> str:
    if not isinstance(doc["image"], str) or not _NAME.match(doc["image"]):
        raise _bad(source, "an inherited blob names no image")
    return str(doc["image"])


# -- the verified result -----------------------------------------------------------------------------
_SEAL = object()


@dataclass(frozen=True)
class VerifiedImages:
    """An images bundle that passed every step of :func:`verify_images`; only it makes one."""

    path: Path
    manifest: ImagesManifest
    manifest_bytes: bytes
    signer_key_id: str
    owners: dict[str, str] = field(repr=False)  # blob digest -> an image (name) whose manifests name it
    _seal: object = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._seal is not _SEAL:
            raise TypeError("VerifiedImages is made only by verify_images()")

    @property
    def images(self) -> tuple[ImageRecord, ...]:
        return self.manifest.images

    @property
    def bundle_id(self) -> str:
        return self.manifest.bundle_id

    @property
    def base(self) -> Base | None:
        return self.manifest.base

    @property
    def manifest_sha256(self) -> str:
        return _sha256(self.manifest_bytes)

    def blob_digests(self) -> set[str]:
        """Every blob this bundle carries or inherits (``sha256:<hex>``)."""
        carried = {"sha256:" + m.sha256 for m in self.manifest.members[2:]}
        return carried | {i.digest for i in self.manifest.inherited}

    def files(self) -> tuple[Path, ...]:
        """The files that make the bundle: the bundle (or head) file, then its parts."""
        parts = self.manifest.parts or ()
        return (self.path, *(self.path.parent / p.name for p in parts))


def _sha256(data: bytes) -> str:
    d = Digests(["sha256"])
    d.update(data)
    return d.hexdigest()


# -- streaming member check (step 5) -----------------------------------------------------------------
class _MemberStream:
    """Checks the member entries as their bytes stream past: header, data hash, zero padding.

    Keeps in memory only what step 6 parses: oci-layout, index.json, and blobs that a manifest
    seen so far (or the image list) names as a manifest, index or config (each under a cap).
    """

    def __init__(
        self, members: Sequence[Member], images: Sequence[ImageRecord], *, source: str, extract: Path | None = None
    ) -> None:
        self._members = list(members)
        self._extract = extract
        self._out: IO[bytes] | None = None
        self._source = source
        self._i = -1
        self._state = "header"
        self._need = BLOCK
        self._buf = bytearray()
        self._hash = Digests(["sha256"])
        self._keep: bytearray | None = None
        self.kept: dict[str, bytes] = {}
        self.wanted: dict[str, str] = {i.digest: i.media_type for i in images}

    def feed(self, chunk: memoryview) -> None:
        while chunk:
            if self._state == "end":
                raise VerificationError(f"{self._source}: data after the last member")
            take = min(self._need, len(chunk))
            piece, chunk = chunk[:take], chunk[take:]
            self._need -= take
            if self._state == "data":
                self._hash.update(piece)
                if self._keep is not None:
                    self._keep += piece
                if self._out is not None:
                    self._out.write(piece)
            elif self._state == "header":
                self._buf += piece
            elif piece.tobytes().count(0) != take:
                raise VerificationError(f"{self._source}: non-zero padding after {self._members[self._i].path}")
            if self._need == 0:
                self._next()

    def _next(self) -> None:
        if self._state == "header":
            self._start_member(bytes(self._buf))
            self._buf = bytearray()
        elif self._state == "data":
            self._end_member()
        else:
            self._state, self._need = "header", BLOCK
            if self._i + 1 == len(self._members):
                self._state, self._need = "end", 0
        if self._state == "data" and self._need == 0:
            self._next()

    def _start_member(self, header: bytes) -> None:
        self._i += 1
        if self._i >= len(self._members):
            raise VerificationError(f"{self._source}: more entries than the signed manifest lists")
        m = self._members[self._i]
        if header != ustar_header(m.path, m.size):
            raise VerificationError(f"{self._source}: entry {self._i + 1} is not {m.path} of {m.size} bytes as signed")
        digest = "sha256:" + m.sha256
        keep = m.path in (OCI_LAYOUT, LAYOUT_INDEX) or digest in self.wanted
        if keep and m.size > MAX_OCI_MANIFEST:
            raise InvalidInput(f"{self._source}: {m.path} is over the manifest size limit ({MAX_OCI_MANIFEST} bytes)")
        self._keep = bytearray() if keep else None
        if self._extract is not None and self._i >= 2:
            self._out = os.fdopen(create_file(self._extract / m.sha256, 0o600), "wb")
        self._hash = Digests(["sha256"])
        self._state, self._need = "data", m.size

    def _end_member(self) -> None:
        m = self._members[self._i]
        if self._out is not None:
            self._out.close()
            self._out = None
        if self._hash.hexdigest() != m.sha256:
            raise DigestMismatch(f"{self._source}: {m.path} does not match its SHA-256 in the signed manifest")
        if self._keep is not None:
            data = bytes(self._keep)
            digest = "sha256:" + m.sha256
            self.kept[m.path if m.path in (OCI_LAYOUT, LAYOUT_INDEX) else digest] = data
            media_type = self.wanted.get(digest)
            if media_type in INDEX_TYPES | MANIFEST_TYPES:
                self._want_children(data, digest, media_type)
        self._keep = None
        self._state, self._need = "pad", -m.size % BLOCK
        if self._need == 0:
            self._state, self._need = ("end", 0) if self._i + 1 == len(self._members) else ("header", BLOCK)

    def _want_children(self, data: bytes, digest: str, media_type: str) -> None:
        parsed = parse_manifest(data, source=f"{self._source}: {digest}", expected_type=media_type)
        for ref in parsed.references:
            if ref.media_type in INDEX_TYPES | MANIFEST_TYPES or (not parsed.is_index and ref is parsed.references[0]):
                self.wanted.setdefault(ref.digest, ref.media_type)

    def finish(self) -> None:
        if self._state != "end" and not (
            self._i + 1 == len(self._members) and self._state == "header" and not self._buf
        ):
            raise VerificationError(f"{self._source}: the bundle ends before its last member")
        if self._buf:
            raise VerificationError(f"{self._source}: data after the last member")


# -- step 6: the references --------------------------------------------------------------------------
def _platforms_of_config(data: bytes, *, source: str) -> tuple[str, ...]:
    doc = load_json(data, what=f"{source}: an image config", max_bytes=MAX_OCI_MANIFEST)
    if not isinstance(doc, dict) or not isinstance(doc.get("os"), str) or not isinstance(doc.get("architecture"), str):
        return ()
    variant = doc.get("variant")
    return ("/".join([doc["os"], doc["architecture"]] + ([variant] if isinstance(variant, str) else [])),)


def _check_references(m: ImagesManifest, stream: _MemberStream, *, source: str) -> dict[str, str]:
    """Every descriptor of every carried manifest names a carried blob of that size or an inherited
    one; every carried blob is named; each image's platforms are what its manifests say. Returns
    an owner image for every blob digest (carried or inherited)."""
    sizes = {"sha256:" + b.sha256: b.size for b in m.members[2:]}
    inherited = {i.digest: i for i in m.inherited}
    owners: dict[str, str] = {}
    for image in m.images:
        plats = _walk(image, image.digest, image.media_type, sizes, inherited, stream, owners, source=source)
        if tuple(plats) != image.platforms:
            raise VerificationError(f"{source}: image {image.name} claims platforms the manifests do not name")
    for digest in sizes:
        if digest not in owners:
            raise VerificationError(f"{source}: carries blob {digest} that no manifest names")
    for digest, inh in inherited.items():
        owners.setdefault(digest, inh.image)
    sizes_all = {**sizes, **{d: i.size for d, i in inherited.items()}}
    if stream.kept.get(OCI_LAYOUT) != OCI_LAYOUT_BYTES:
        raise VerificationError(f"{source}: oci-layout is not the one an image layout has")
    if stream.kept.get(LAYOUT_INDEX) != layout_index(m.images, sizes_all):
        raise VerificationError(f"{source}: index.json does not match the signed image list")
    return owners


def _walk(
    image: ImageRecord,
    digest: str,
    media_type: str,
    sizes: dict[str, int],
    inherited: dict[str, Inherited],
    stream: _MemberStream,
    owners: dict[str, str],
    *,
    source: str,
) -> list[str]:
    owners.setdefault(digest, image.name)
    data = stream.kept.get(digest)
    if data is None:
        if digest in inherited:
            return []
        raise VerificationError(f"{source}: image {image.name} names manifest {digest}, which the bundle lacks")
    parsed = parse_manifest(data, source=f"{source}: {digest}", expected_type=media_type)
    for ref in parsed.references:
        size = sizes.get(ref.digest, inherited[ref.digest].size if ref.digest in inherited else None)
        if size is None:
            raise VerificationError(f"{source}: {digest} names blob {ref.digest}, which the bundle lacks")
        if size != ref.size:
            raise DigestMismatch(f"{source}: {digest} says {ref.digest} has {ref.size} bytes; it has {size}")
        owners.setdefault(ref.digest, image.name)
    if parsed.is_index:
        for ref in parsed.references:
            _walk(image, ref.digest, ref.media_type, sizes, inherited, stream, owners, source=source)
        return list(parsed.platforms)
    config: Descriptor = parsed.references[0]
    kept = stream.kept.get(config.digest)
    return list(_platforms_of_config(kept, source=source)) if kept is not None else []


# -- reading the container ---------------------------------------------------------------------------
def _read_head(fh: IO[bytes], size: int, *, source: str, limits: Limits) -> tuple[bytes, bytes, int]:
    """Steps 1: the container's entries; returns the manifest bytes, the signature, and where the
    member entries end (the manifest's header offset)."""
    lim = replace(limits, max_members=MAX_IMAGE_MEMBERS + 2, max_manifest_size=MAX_IMAGES_MANIFEST)
    entries = scan_archive(fh, size, limits=lim, source=source)
    if len(entries) < 2 or [e.name for e in entries[-2:]] != [MANIFEST_NAME, SIGNATURE_NAME]:
        raise Malformed(f"{source}: not an images bundle (no manifest.json and manifest.json.sig at its end)")
    manifest_entry, sig_entry = entries[-2], entries[-1]
    return (
        read_member(fh, manifest_entry, source=source),
        read_member(fh, sig_entry, source=source),
        manifest_entry.offset - BLOCK,
    )


def _check_signature(
    manifest_bytes: bytes, signature: bytes, trust: Sequence[PublicKey], *, source: str
) -> tuple[ImagesManifest, str]:
    """Steps 2 and 3."""
    doc = parse_manifest_json(manifest_bytes, source=source)
    manifest = validate_images_manifest(doc, source=source)
    if not trust:
        raise InvalidInput(f"{source}: no trusted key given")
    for key in trust:
        check_signer_key(key, source="trusted key")
        key_id = spki_sha256(key)
        if key_id != manifest.signer:
            continue
        try:
            verify_bytes(key, manifest_bytes, signature)
        except VerificationError as exc:
            raise SignatureMismatch(f"{source}: {exc.message} (signer {key_id})") from exc
        return manifest, key_id
    raise SignatureMismatch(f"{source}: signed by key {manifest.signer}, which is not a trusted key")


def _stream_file(fh: IO[bytes], length: int, sinks: Sequence[Any], *, source: str, progress: Progress) -> None:
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    done = 0
    fh.seek(0)
    while done < length:
        got = fh.readinto(view[: min(CHUNK, length - done)])  # type: ignore[attr-defined]
        if not got:
            raise VerificationError(f"{source}: truncated")
        for sink in sinks:
            sink(view[:got])
        done += got
        progress.advance(got)


def _stream_part(fh: IO[bytes], length: int, stream: _MemberStream, *, source: str, progress: Progress) -> Digests:
    """One part, read once: its SHA-256 on a worker thread while this one checks the members in it
    (hashlib lets go of the GIL, so the two hashes run on two cores). Returns the part's digest."""
    from concurrent.futures import Future, ThreadPoolExecutor

    digests = Digests(["sha256"])
    done = 0
    pending: Future[None] | None = None
    with ThreadPoolExecutor(1) as pool:
        while done < length:
            chunk = fh.read(min(CHUNK, length - done))  # a fresh buffer: the worker may still hash the last
            if not chunk:
                raise VerificationError(f"{source}: truncated")
            if pending is not None:
                pending.result()
            pending = pool.submit(digests.update, chunk)
            stream.feed(memoryview(chunk))
            done += len(chunk)
            progress.advance(len(chunk))
        if pending is not None:
            pending.result()
    return digests


def _open(path: Path, what: str) -> IO[bytes]:
    from airgap.core.files import open_regular

    return open_regular(path, what)


def verify_images(
    path: Path,
    trust: Sequence[PublicKey],
    *,
    limits: Limits = DEFAULT_LIMITS,
    progress: Progress = NO_PROGRESS,
    extract: Path | None = None,
) -> VerifiedImages:
    """Verify an images bundle (steps 1-6 of the module docstring) and return what it carries.

    ``extract``: a private, empty folder that receives every carried blob as ``HEX`` while it is
    hashed (one pass). Its content may be used only when this returns; on any error the caller
    removes it.
    """
    path = Path(path)
    source = str(path)
    with _open(path, "images bundle") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > limits.max_bundle_size:
            raise TooLarge(f"{source}: over the bundle size limit ({limits.max_bundle_size} bytes)")
        manifest_bytes, signature, members_end = _read_head(fh, size, source=source, limits=limits)
        manifest, key_id = _check_signature(manifest_bytes, signature, trust, source=source)
        stream = _MemberStream(manifest.members, manifest.images, source=source, extract=extract)
        total = sum(BLOCK + m.size + (-m.size % BLOCK) for m in manifest.members)
        progress.start("verifying images bundle", total)
        if manifest.parts is None:
            if members_end != total:
                raise VerificationError(f"{source}: the entries do not match the signed member list")
            _stream_file(fh, members_end, [stream.feed], source=source, progress=progress)
        else:
            if members_end != 0:
                raise VerificationError(f"{source}: a split bundle's head file must hold only its manifest")
            _verify_parts(path, manifest.parts, stream, total, limits=limits, progress=progress)
        stream.finish()
        progress.finish()
    owners = _check_references(manifest, stream, source=source)
    return VerifiedImages(path, manifest, manifest_bytes, key_id, owners, _seal=_SEAL)


def _verify_parts(
    path: Path, parts: Sequence[Part], stream: _MemberStream, total: int, *, limits: Limits, progress: Progress
) -> None:
    """Step 4 and 5 for a split bundle: each part's size and hash (named when bad), members across parts."""
    if sum(p.size for p in parts) != total:
        raise VerificationError(f"{path}: the parts' sizes do not add up to the signed members")
    for part in parts:
        part_path = path.parent / part.name
        with _open(part_path, "bundle part") as fh:
            if os.fstat(fh.fileno()).st_size != part.size:
                raise VerificationError(
                    f"{part_path}: part is {os.fstat(fh.fileno()).st_size} bytes; signed: {part.size}"
                )
            try:
                digests = _stream_part(fh, part.size, stream, source=str(part_path), progress=progress)
            except VerificationError as exc:
                raise VerificationError(f"{part_path}: bad part ({exc})") from exc
            if digests.hexdigest() != part.sha256:
                raise DigestMismatch(f"{part_path}: part does not match its SHA-256 in the signed manifest")


__all__ = [
    "FORMAT",
    "LAYOUT_INDEX",
    "OCI_LAYOUT",
    "OCI_LAYOUT_BYTES",
    "Base",
    "ImageRecord",
    "ImagesManifest",
    "Inherited",
    "Member",
    "Part",
    "VerifiedImages",
    "format_time",
    "layout_index",
    "new_bundle_id",
    "validate_images_manifest",
    "verify_images",
]
