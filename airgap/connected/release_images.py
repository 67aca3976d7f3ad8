"""The images a release installs, read from the release's own files (``images list``).

Istio's operator reads a profile (``manifests/profiles/P.yaml``) laid over the profile it names in
``spec.profile`` (``default`` when it names none; ``empty`` is the empty base), then the charts'
``values.yaml`` for anything no profile sets. From that: ``spec.hub`` and ``spec.tag`` (a
component's ``values.X.hub``/``tag`` win), and the images: ``values.pilot.image`` when pilot is
enabled; ``values.global.proxy.image`` (sidecars and gateways) and
``values.global.proxy_init.image``; ``values.cni.image`` when ``components.cni.enabled``. An
image value with a ``/`` is a whole reference and is taken as it is. Nothing is hard-coded per
version: a release whose files do not name an image is an error naming the file and the key.

Trust: the release folder as ``release extract`` verified it; each file read is re-hashed against
RELEASE.json first (:func:`airgap.core.release.check_release_file`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from airgap.errors import InvalidInput

MAX_PROFILE = 1024 * 1024
_PROFILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def _load_yaml(release: Path, member: str) -> dict[str, Any]:
    import yaml

    from airgap.core.files import read_capped
    from airgap.core.release import check_release_file

    path = check_release_file(release, member)
    try:
        doc = yaml.safe_load(read_capped(path, MAX_PROFILE, "release YAML file"))
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path}: not valid YAML") from exc
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise InvalidInput(f"{path}: expected a YAML mapping")
    return doc


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        return {k: _merge(base.get(k), over[k]) if k in base else over[k] for k in over} | {
            k: v for k, v in base.items() if k not in over
        }
    return over


def load_profile(release: Path, profile: str, depth: int = 0) -> dict[str, Any]:
    """The profile's IstioOperator ``spec``, laid over the profile it is based on."""
    if not _PROFILE.match(profile) or depth > 4:
        raise InvalidInput(f"profile {profile[:80]!a}: not a profile name (or profiles base on each other in a loop)")
    from airgap.core.release import release_root

    if not (release_root(release) / "manifests" / "profiles" / f"{profile}.yaml").is_file():
        if profile == "empty":
            return {}
        raise InvalidInput(f"{release}: the release has no profile {profile!r} (manifests/profiles/{profile}.yaml)")
    spec = _load_yaml(release, f"manifests/profiles/{profile}.yaml").get("spec") or {}
    if not isinstance(spec, dict):
        raise InvalidInput(f"{release}: manifests/profiles/{profile}.yaml: spec is not a mapping")
    base = spec.get("profile") or (None if profile in ("default", "empty") else "default")
    if base is None or base == profile:
        return spec
    return dict(_merge(load_profile(release, str(base), depth + 1), spec))


def _chart_values(release: Path) -> list[tuple[str, dict[str, Any]]]:
    from airgap.core.release import release_root

    root = release_root(release)
    files = sorted(p.relative_to(root).as_posix() for p in (root / "manifests" / "charts").glob("**/values.yaml"))
    return [(f, _load_yaml(release, f)) for f in files]


def _lookup(doc: Any, keys: list[str]) -> Any:
    for k in keys:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(k)
    return doc


def release_image_refs(release: Path, profile: str | None = None) -> list[str]:
    """``REGISTRY/PATH/NAME:TAG`` of every image an install of ``release`` with ``profile`` needs."""
    from airgap.connected.catalog import defaults_for, release_version

    defaults = defaults_for(release_version(release))
    profile = profile or defaults.profile
    spec = load_profile(release, profile)
    values = spec.get("values") or {}
    charts = _chart_values(release)
    where = f"{release} (profile {profile})"

    def value(path: str) -> Any:
        keys = path.split(".")
        found = _lookup(values, keys)
        for _, doc in charts if found in (None, "") else ():
            found = _lookup(doc, keys)
            if found not in (None, ""):
                break
        return found

    def ref(component: str, image_key: str) -> str:
        image = value(image_key)
        if not isinstance(image, str) or not image:
            raise InvalidInput(
                f"{where}: no image for {component}: values.{image_key} is not set in the profile or charts"
            )
        if "/" in image:
            return image
        hub = value(f"{component}.hub") or spec.get("hub") or value("global.hub")
        tag = value(f"{component}.tag") or spec.get("tag") or value("global.tag")
        if not isinstance(hub, str) or not hub or not isinstance(tag, str | int | float) or tag == "":
            raise InvalidInput(f"{where}: no hub or tag for {component} (spec.hub, spec.tag)")
        return f"{hub}/{image}:{tag}"

    components = spec.get("components") or {}
    refs = []
    if _lookup(components, ["pilot", "enabled"]) is not False:
        refs.append(ref("pilot", "pilot.image"))
    refs.append(ref("global.proxy", "global.proxy.image"))
    refs.append(ref("global.proxy_init", "global.proxy_init.image"))
    if _lookup(components, ["cni", "enabled"]) is True:
        refs.append(ref("cni", "cni.image"))
    extra = defaults.line.images if defaults.line else ()
    refs += [image if "/" in image else f"{spec.get('hub')}/{image}:{spec.get('tag')}" for image in extra]
    return list(dict.fromkeys(refs))
