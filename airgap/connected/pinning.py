"""Installing by digest: every Istio image an install uses, named ``R/NAME@sha256:DIGEST``.

Trust: the images and their digests come from an images bundle verified (signature, then every
blob and manifest) by ``airgap.connected.images.open_images`` against the ``--trust`` keys; the
private registry R is the operator's choice. Not trusted: the registry, whose answer for each
digest is re-hashed before a live install (:func:`check_served`), and the overlays, which may not
set any ``hub``, ``tag`` or ``image`` of a pinned install.

Istio uses an image value that contains a ``/`` verbatim (its charts: ``{{ if contains "/"
.Values.pilot.image }}``), so ``values.pilot.image``, ``values.global.proxy.image`` (sidecars and
gateways), ``values.global.proxy_init.image`` and ``values.cni.image`` name the digest, and the
``hub`` is R. Istio has no field for a digest in ``tag`` (it is a Docker tag), so the rendered
``tag`` is :data:`UNPINNED_TAG`, a tag ``images push`` never pushes: an image this module did not
pin would fail to pull instead of running bytes nobody verified, and neither the release's version
tag nor the public hub appears in anything rendered.
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from airgap.errors import InvalidInput, NotServed, Refused, VerificationError

JSON = dict[str, Any]

UNPINNED_TAG = "airgap-pinned-by-digest"
PILOT, PROXY, CNI = "pilot", "proxyv2", "install-cni"
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
PINNED_IMAGE = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")
_NAME = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")  # one path component of a repository
_IMAGE_KEYS = ("hub", "tag", "image")
# Each image field of spec.values -> the image name Istio's charts give it (values.yaml of
# istio-discovery, gateways and istio-cni, identical in every release line airgap knows); a
# profile that sets the field names another image.
IMAGE_FIELDS: dict[tuple[str, ...], str] = {
    ("pilot", "image"): PILOT,
    ("global", "proxy", "image"): PROXY,
    ("global", "proxy_init", "image"): PROXY,
    ("cni", "image"): CNI,
}


class ImageRecordLike(Protocol):
    """What ``airgap.connected.images.ImageRecord`` exposes (the images bundle's one image)."""

    @property
    def name(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def tag(self) -> str: ...
    @property
    def digest(self) -> str: ...


class VerifiedImagesLike(Protocol):
    @property
    def images(self) -> Sequence[ImageRecordLike]: ...


Opener = Callable[[Path, Sequence[Any]], VerifiedImagesLike]


@dataclass(frozen=True)
class PinnedImage:
    name: str
    source: str
    tag: str
    digest: str

    def ref(self, registry: str) -> str:
        return f"{registry}/{self.name}@{self.digest}"


@dataclass(frozen=True)
class ImagePins:
    """The verified images of one bundle and the registry they are installed from."""

    registry: str
    bundle: Path
    images: tuple[PinnedImage, ...]  # sorted by name, one per name
    cni_in_profile: bool = False  # the release's profile enables CNI (so install-cni is needed)
    release_tag: str = ""  # the tag the release's charts expect; an image the install uses must have it
    pilot_in_profile: bool = True  # the profile runs istiod (a remote-cluster profile does not)
    names: tuple[tuple[tuple[str, ...], str], ...] = ()  # image field -> NAME, where the profile renames one

    def name_of(self, field: tuple[str, ...]) -> str:
        return dict(self.names).get(field, IMAGE_FIELDS[field])

    def by_name(self) -> dict[str, PinnedImage]:
        return {i.name: i for i in self.images}


# -- inputs ---------------------------------------------------------------------------------------------


def check_registry(value: str) -> str:
    """``HOST[:PORT][/PATH]`` (no scheme, tag or digest; the rule ``images push`` applies), without a
    trailing ``/`` (exit 3 otherwise)."""
    from airgap.connected.images import parse_registry

    host, path = parse_registry(value)
    return f"{host}/{path}" if path else host


def _open_images(bundle: Path, trust: Sequence[Any]) -> VerifiedImagesLike:
    """The images bundle, verified (signature, parts, every blob and reference) or raise."""
    from airgap.connected.images import open_images

    return open_images(Path(bundle), list(trust))


def _choose(name: str, records: list[PinnedImage], release_tag: str, bundle: Path) -> PinnedImage:
    """One image per name: the only one, or the one whose tag is the release's (its charts' version)."""
    matching = [r for r in records if r.tag == release_tag]
    if len(matching) == 1:
        return matching[0]
    sources = ", ".join(sorted(r.source for r in records))
    raise Refused(f"{bundle}: {len(records)} images named {name} ({sources}); none or several have tag {release_tag}")


def pins_from(verified: VerifiedImagesLike, registry: str, bundle: Path, release_tag: str) -> list[PinnedImage]:
    """The bundle's images, one per name, each digest checked for form (``sha256:`` + 64 hex)."""
    groups: dict[str, list[PinnedImage]] = {}
    for rec in verified.images:
        name, digest = str(rec.name), str(rec.digest)
        if not _NAME.match(name) or not DIGEST.match(digest):
            raise VerificationError(f"{bundle}: image record {name!r} has an invalid name or digest {digest!r}")
        groups.setdefault(name, []).append(PinnedImage(name, str(rec.source), str(rec.tag), digest))
    return [_choose(n, recs, release_tag, bundle) if len(recs) > 1 else recs[0] for n, recs in sorted(groups.items())]


def _image_name(value: str) -> str:
    """``pilot`` of ``pilot``, ``gcr.io/x/pilot:1.8`` or ``r/pilot@sha256:…``."""
    return value.rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0]


def _profile_facts(release: Path, profile: str) -> tuple[JSON, dict[tuple[str, ...], str]]:
    """The profile's ``spec`` (laid over its base, each file re-hashed: ``images list``'s reading) and
    the image names it sets."""
    from airgap.connected.release_images import load_profile

    spec = load_profile(release, profile)
    names = {}
    for field in IMAGE_FIELDS:
        value = _get(spec, "values", *field)
        if isinstance(value, str) and value and _image_name(value) != IMAGE_FIELDS[field]:
            names[field] = _image_name(value)
    return spec, names


def _get(doc: Any, *keys: str) -> Any:
    for k in keys:
        doc = doc.get(k) if isinstance(doc, dict) else None
    return doc


def load_pins(
    bundle: Path,
    trust: Sequence[Any],
    registry: str,
    *,
    release: Path,
    profile: str,
    opener: Opener | None = None,
) -> ImagePins:
    """Verify the images bundle and pair each image with ``registry`` (verify or raise)."""
    from airgap.connected.catalog import release_version

    registry = check_registry(registry)
    spec, names = _profile_facts(release, profile)
    release_tag = str(spec.get("tag") or release_version(release))
    verified = (opener or _open_images)(Path(bundle), trust)
    images = pins_from(verified, registry, Path(bundle), release_tag)
    cni = _get(spec, "components", "cni", "enabled") is True
    pilot = _get(spec, "components", "pilot", "enabled") is not False
    return ImagePins(registry, Path(bundle), tuple(images), cni, release_tag, pilot, tuple(sorted(names.items())))


# -- rendering ------------------------------------------------------------------------------------------


def _walk(doc: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if isinstance(doc, dict):
        for k, v in doc.items():
            if str(k) in _IMAGE_KEYS:
                yield (*path, str(k))
            yield from _walk(v, (*path, str(k)))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _walk(v, (*path, str(i)))


def refuse_image_overrides(path: Path, overlay: JSON) -> None:
    """An overlay of a pinned install may not choose a hub, tag or image anywhere (exit 3)."""
    for keys in _walk(overlay):
        raise InvalidInput(
            f"{path}: sets {'.'.join(keys)}, but --images pins every image by digest; drop it from the overlay"
        )


def _enabled(doc: JSON, component: str, in_profile: bool) -> bool:
    """An overlay's ``components.C.enabled`` wins over the profile's."""
    value = _get(doc, "spec", "components", component, "enabled")
    return in_profile if value is None else value is True


def image_fields(doc: JSON, pins: ImagePins, *, gateway_only: bool = False) -> dict[tuple[str, ...], str]:
    """Where each image goes (a path in the IstioOperator) -> the image name it needs."""
    wanted: list[tuple[str, ...]] = [("global", "proxy", "image")]  # sidecars and gateways
    if not gateway_only:
        wanted.append(("global", "proxy_init", "image"))
        if _enabled(doc, "pilot", pins.pilot_in_profile):
            wanted.append(("pilot", "image"))
        if _enabled(doc, "cni", pins.cni_in_profile):
            wanted.append(("cni", "image"))
    return {("spec", "values", *f): pins.name_of(f) for f in wanted}


def _set(doc: JSON, keys: tuple[str, ...], value: str) -> None:
    node = doc
    for k in keys[:-1]:
        nxt = node.get(k)
        if not isinstance(nxt, dict):
            nxt = node[k] = {}
        node = nxt
    node[keys[-1]] = value


def pin_operator(doc: JSON, pins: ImagePins, *, gateway_only: bool = False) -> JSON:
    """``doc`` with hub R, tag :data:`UNPINNED_TAG` and every image it uses as ``R/NAME@sha256:…``.

    Refused (exit 4) when the bundle lacks an image the install needs, naming every missing one.
    """
    out = copy.deepcopy(doc)
    fields = image_fields(out, pins, gateway_only=gateway_only)
    have = pins.by_name()
    missing = sorted({n for n in fields.values() if n not in have})
    if missing:
        raise Refused(
            f"{pins.bundle}: lacks image(s) {', '.join(missing)} that this install needs; "
            "carry them with airgap images pull"
        )
    for name in sorted(set(fields.values())):
        if pins.release_tag and have[name].tag != pins.release_tag:
            raise Refused(
                f"{pins.bundle}: image {name} is {have[name].source}, but the release installs tag "
                f"{pins.release_tag}: carry this release's images (airgap images pull --release)"
            )
    spec = out.setdefault("spec", {})
    spec["hub"] = pins.registry
    spec["tag"] = UNPINNED_TAG
    _set(out, ("spec", "values", "global", "hub"), pins.registry)
    for keys, name in fields.items():
        _set(out, keys, have[name].ref(pins.registry))
    return out


def pinned_refs(doc: JSON, pins: ImagePins, *, gateway_only: bool = False) -> dict[str, str]:
    """name -> ``R/NAME@sha256:…`` of every image ``doc`` (already pinned) uses."""
    have = pins.by_name()
    names = set(image_fields(doc, pins, gateway_only=gateway_only).values())
    return {n: have[n].ref(pins.registry) for n in sorted(names)}


# -- the live check -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegistryFlags:
    """How a live install reaches R to check it: ``--authfile`` (containers-auth.json; None: skopeo's
    usual places) and ``--ca-bundle`` (the registry's private CA)."""

    authfile: Path | None = None
    ca_bundle: Path | None = None


def check_served(
    refs: dict[str, str],
    flags: RegistryFlags = RegistryFlags(),
    *,
    notify: Callable[[str], None] = lambda _m: None,
) -> None:
    """Check the registry serves each ``R/NAME@sha256:D`` and that the bytes hash to D (verify or raise).

    Through the images wire (:mod:`airgap.connected.skopeo`: ``skopeo inspect --raw``, the auth file
    and a private ``--cert-dir`` for the CA bundle). Missing ones: exit 4, all named. Other bytes than
    the digest: exit 1. Unreachable, refused credentials: exit 5. Credentials come only from the auth
    file, never from an argument value, and are never shown.
    """
    from airgap.connected.skopeo import inspect_raw, registry_access

    missing: list[str] = []
    with registry_access(flags.ca_bundle, flags.authfile) as wire:
        for ref in refs.values():
            notify(f"checking the registry serves {ref}")
            try:
                body = inspect_raw(ref, wire)
            except NotServed:
                missing.append(ref)
                continue
            if "sha256:" + hashlib.sha256(body).hexdigest() != ref.rpartition("@")[2]:
                raise VerificationError(f"{ref}: the registry serves other bytes than this digest")
    if missing:
        raise Refused(
            f"the registry does not serve {len(missing)} pinned image(s): {', '.join(missing)}; "
            "push the bundle first (airgap images push)"
        )
