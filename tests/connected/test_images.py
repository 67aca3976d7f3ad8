"""images pull / verify / push against real registries (Debian docker-registry, TLS, htpasswd),
with skopeo as the independent client that checks what was pushed."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from airgap.connected.images import PullRequest, open_images, parse_reference, pull_images, push_images
from airgap.connected.skopeo import registry_access
from airgap.core.history import IMAGES_PUSH, read_events
from airgap.errors import InvalidInput, NetworkError, Refused, VerificationError
from tests.oci_fixtures import make_mesh_layout
from tests.registry_fixtures import (
    FaultyServer,
    Registry,
    RegistryCA,
    make_ca,
    registry_blob_files,
    requires_registry,
    seed,
    skopeo,
    skopeo_raw,
    start_registry,
)

pytestmark = requires_registry
IMAGES = ["pilot:1.8.6", "proxyv2:1.8.6", "install-cni:1.8.6"]


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> RegistryCA:
    return make_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """NAME:TAG -> the digest each test image has upstream."""
    layout = tmp_path_factory.mktemp("up") / "layout"
    refs = make_mesh_layout(layout)
    return {k: v.digest for k, v in refs.items()} | {"_layout": str(layout)}


@pytest.fixture(scope="module")
def source(ca: RegistryCA, upstream: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    reg = start_registry(tmp_path_factory.mktemp("src"), ca)
    try:
        seed(reg, Path(upstream["_layout"]), IMAGES)
        yield reg
    finally:
        reg.stop()


@pytest.fixture
def target(ca: RegistryCA, tmp_path: Path) -> Iterator[Registry]:
    reg = start_registry(tmp_path / "dst", ca, auth=True)
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _request(host: str, *, platforms: tuple[str, ...] = ()) -> PullRequest:
    return PullRequest(tuple(parse_reference(f"{host}/istio/{i}") for i in IMAGES), None, platforms, None)


@pytest.fixture(scope="module")
def bundle(source: Registry, ca: RegistryCA, key: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("b") / "mesh.images"
    with registry_access(ca.ca_pem, None) as access:
        pull_images(_request(source.host), key=key, out=out, access=access)
    return out


def _push(b: Path, key: Any, reg: Registry, ca: RegistryCA, state: Path, path: str = "mesh") -> Any:
    with registry_access(ca.ca_pem, reg.authfile) as access:
        return push_images(b, [key.public_key()], f"{reg.host}/{path}", access=access, state=state)


def test_pull_keeps_upstream_digests_and_every_platform(bundle: Path, key: Any, upstream: dict[str, str]) -> None:
    v = open_images(bundle, [key.public_key()])
    assert {f"{i.name}:{i.tag}": i.digest for i in v.images} == {k: upstream[k] for k in IMAGES}
    assert {i.name: i.platforms for i in v.images}["pilot"] == ("linux/amd64", "linux/arm64")
    assert not (bundle.parent / ".mesh.images.pull").exists()  # the work folder goes once the bundle is written


def test_push_then_skopeo_sees_the_upstream_digests_and_each_platform(
    bundle: Path, key: Any, target: Registry, ca: RegistryCA, upstream: dict[str, str], tmp_path: Path
) -> None:
    result = _push(bundle, key, target, ca, tmp_path / "state")
    for name_tag in IMAGES:
        raw = skopeo_raw(target, f"mesh/{name_tag}")
        assert "sha256:" + hashlib.sha256(raw).hexdigest() == upstream[name_tag]
    for arch in ("amd64", "arm64"):  # each platform pulls from the pushed index
        out = skopeo(
            "copy", "--override-arch", arch, "--src-cert-dir", str(target.cert_dir),
            "--src-authfile", str(target.authfile),
            f"docker://{target.host}/mesh/pilot:1.8.6", f"oci:{tmp_path / arch}:p",
        )  # fmt: skip
        assert out.returncode == 0
        config = json.loads(skopeo("inspect", "--config", "--raw", f"oci:{tmp_path / arch}:p").stdout)
        assert config["architecture"] == arch
    refs = {i["name"]: i["reference"] for i in result.images}
    assert refs["pilot"] == f"{target.host}/mesh/pilot@{upstream['pilot:1.8.6']}"
    (event,) = [e for e in read_events(tmp_path / "state").events if e["kind"] == IMAGES_PUSH]
    v = open_images(bundle, [key.public_key()])
    assert {k: event[k] for k in ("bundle_id", "bundle_sha256", "signer", "registry", "base")} == {
        "bundle_id": v.bundle_id,
        "bundle_sha256": v.manifest_sha256,
        "signer": v.signer_key_id,
        "registry": f"{target.host}/mesh",
        "base": None,
    }
    assert sorted(event["images"], key=lambda i: i["name"]) == sorted(result.images, key=lambda i: i["name"])


def test_push_again_changes_nothing(bundle: Path, key: Any, target: Registry, ca: RegistryCA, tmp_path: Path) -> None:
    _push(bundle, key, target, ca, tmp_path / "state")
    before = {p: p.stat().st_mtime_ns for p in registry_blob_files(target)}
    _push(bundle, key, target, ca, tmp_path / "state")
    assert {p: p.stat().st_mtime_ns for p in registry_blob_files(target)} == before


def test_a_flipped_byte_pushes_nothing(
    bundle: Path, key: Any, target: Registry, ca: RegistryCA, tmp_path: Path
) -> None:
    data = bytearray(bundle.read_bytes())
    data[len(data) // 3] ^= 0x04
    bad = tmp_path / "bad.images"
    bad.write_bytes(bytes(data))
    with pytest.raises((VerificationError, InvalidInput)):
        _push(bad, key, target, ca, tmp_path / "state")
    assert list(registry_blob_files(target)) == []
    assert not (tmp_path / "state" / "history.jsonl").exists()


def test_missing_credentials_push_nothing(
    bundle: Path, key: Any, target: Registry, ca: RegistryCA, tmp_path: Path
) -> None:
    empty = tmp_path / "auth.json"
    empty.write_text('{"auths": {}}')
    with registry_access(ca.ca_pem, empty) as access, pytest.raises(InvalidInput, match="asks for credentials"):
        push_images(bundle, [key.public_key()], f"{target.host}/mesh", access=access, state=tmp_path / "s")
    assert list(registry_blob_files(target)) == []


def test_wrong_credentials_are_exit_5(bundle: Path, key: Any, target: Registry, ca: RegistryCA, tmp_path: Path) -> None:
    from tests.registry_fixtures import write_authfile

    wrong = write_authfile(tmp_path / "auth.json", target.host, password="nope")
    with registry_access(ca.ca_pem, wrong) as access, pytest.raises(NetworkError, match="refused the credentials"):
        push_images(bundle, [key.public_key()], f"{target.host}/mesh", access=access, state=tmp_path / "s")
    assert list(registry_blob_files(target)) == []


def test_a_delta_onto_a_registry_without_its_base_is_refused(
    bundle: Path, key: Any, source: Registry, ca: RegistryCA, target: Registry, tmp_path: Path
) -> None:
    layout = tmp_path / "new"
    make_mesh_layout(layout, tag="1.8.7")
    seed(source, layout, ["proxyv2:1.8.7"])
    out = tmp_path / "delta.images"
    request = PullRequest((parse_reference(f"{source.host}/istio/proxyv2:1.8.7"),), None, (), None)
    with registry_access(ca.ca_pem, None) as access:
        m = pull_images(request, key=key, out=out, access=access, since=bundle)
    assert m.base is not None and len(m.inherited) == 1
    base_id = open_images(bundle, [key.public_key()]).bundle_id
    with pytest.raises(Refused, match=f"base bundle {base_id}.*{m.inherited[0].digest}"):
        _push(out, key, target, ca, tmp_path / "state")
    assert list(registry_blob_files(target)) == []
    _push(bundle, key, target, ca, tmp_path / "state")  # the base first, then the delta completes
    _push(out, key, target, ca, tmp_path / "state")
    raw = skopeo_raw(target, "mesh/proxyv2:1.8.7")
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == m.images[0].digest
    assert read_events(tmp_path / "state").events[-1]["base"] == base_id


def test_a_source_serving_other_bytes_than_its_digest_is_exit_1(
    ca: RegistryCA, key: Any, upstream: dict[str, str], tmp_path: Path
) -> None:
    reg = start_registry(tmp_path / "evil", ca)
    try:
        seed(reg, Path(upstream["_layout"]), ["proxyv2:1.8.6"])
        biggest = max(registry_blob_files(reg), key=lambda p: p.stat().st_size)
        data = bytearray(biggest.read_bytes())
        data[len(data) // 2] ^= 0x01
        biggest.write_bytes(bytes(data))
        request = PullRequest((parse_reference(f"{reg.host}/istio/proxyv2:1.8.6"),), None, (), None)
        with registry_access(ca.ca_pem, None) as access, pytest.raises(VerificationError):
            pull_images(request, key=key, out=tmp_path / "x.images", access=access)
        assert not (tmp_path / "x.images").exists()
    finally:
        reg.stop()


@pytest.mark.parametrize("status", [401, 404, 500, 0])
def test_a_failing_registry_is_exit_5_after_retries(
    bundle: Path, key: Any, ca: RegistryCA, tmp_path: Path, status: int
) -> None:
    from tests.registry_fixtures import write_authfile

    server = FaultyServer(ca, status)
    try:
        auth = write_authfile(tmp_path / "auth.json", server.host)
        with registry_access(ca.ca_pem, auth) as access, pytest.raises(NetworkError):
            push_images(bundle, [key.public_key()], f"{server.host}/mesh", access=access, state=tmp_path / "s")
        assert server.hits >= (4 if status in (0, 500) else 1)  # a drop or a 5xx is retried
    finally:
        server.stop()
    assert not (tmp_path / "s" / "history.jsonl").exists()


def test_a_pull_from_a_failing_source_is_exit_5_and_resumes(
    ca: RegistryCA, key: Any, source: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "r.images"
    request = PullRequest(
        (parse_reference(f"{source.host}/istio/proxyv2:1.8.6"), parse_reference("127.0.0.1:9/istio/pilot:1.8.6")),
        None,
        (),
        None,
    )
    with registry_access(ca.ca_pem, None) as access, pytest.raises(NetworkError):
        pull_images(request, key=key, out=out, access=access)
    work = tmp_path / ".r.images.pull"
    kept = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (work / "blobs" / "sha256").iterdir()}
    assert len(kept) >= 4 and not out.exists()  # proxyv2's manifest, config and two layers were kept
    request = PullRequest((parse_reference(f"{source.host}/istio/proxyv2:1.8.6"),), None, (), None)
    monkeypatch.setattr("airgap.connected.images.shutil.rmtree", lambda *a, **k: None)  # keep the work folder to look
    with registry_access(ca.ca_pem, None) as access:
        pull_images(request, key=key, out=out, access=access)
    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (work / "blobs" / "sha256").iterdir()}
    layers = {k for k in kept if (work / "blobs" / "sha256" / k).stat().st_size > 5000}  # not manifests/configs
    assert len(layers) == 2
    assert {k: after[k] for k in layers} == {k: kept[k] for k in layers}  # no layer was fetched or written again
    assert open_images(out, [key.public_key()]).images[0].name == "proxyv2"


def test_platform_narrows_an_index_to_one_manifest(
    ca: RegistryCA, key: Any, source: Registry, upstream: dict[str, str], tmp_path: Path
) -> None:
    request = PullRequest((parse_reference(f"{source.host}/istio/pilot:1.8.6"),), None, ("linux/arm64",), None)
    with registry_access(ca.ca_pem, None) as access:
        pull_images(request, key=key, out=tmp_path / "arm.images", access=access)
    (image,) = open_images(tmp_path / "arm.images", [key.public_key()]).images
    assert image.platforms == ("linux/arm64",) and image.digest != upstream["pilot:1.8.6"]


def test_from_pulls_from_a_mirror_and_keeps_the_release_reference(
    ca: RegistryCA, key: Any, source: Registry, tmp_path: Path
) -> None:
    request = PullRequest((parse_reference("docker.io/istio/proxyv2:1.8.6"),), f"{source.host}/istio", (), None)
    with registry_access(ca.ca_pem, None) as access:
        pull_images(request, key=key, out=tmp_path / "m.images", access=access)
    (image,) = open_images(tmp_path / "m.images", [key.public_key()]).images
    assert image.source == "docker.io/istio/proxyv2:1.8.6"


def test_a_connection_dropped_mid_blob_is_exit_5_and_a_rerun_completes(
    bundle: Path, key: Any, target: Registry, ca: RegistryCA, tmp_path: Path
) -> None:
    from tests.registry_fixtures import DroppingProxy, write_authfile

    proxy = DroppingProxy(target.host, cut_after=20_000, drops=-1)  # every connection dies mid-blob
    try:
        auth = write_authfile(tmp_path / "auth.json", proxy.host)
        with registry_access(ca.ca_pem, auth) as access, pytest.raises(NetworkError):
            push_images(bundle, [key.public_key()], f"{proxy.host}/mesh", access=access, state=tmp_path / "s")
        assert proxy.cut >= 1
    finally:
        proxy.stop()
    assert not (tmp_path / "s" / "history.jsonl").exists()
    clear = DroppingProxy(target.host, cut_after=20_000, drops=0)  # the same way in, now without drops
    try:
        auth = write_authfile(tmp_path / "auth2.json", clear.host)
        with registry_access(ca.ca_pem, auth) as access:
            push_images(bundle, [key.public_key()], f"{clear.host}/mesh", access=access, state=tmp_path / "s")
    finally:
        clear.stop()
    raw = skopeo_raw(target, "mesh/pilot:1.8.6")
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == open_images(bundle, [key.public_key()]).images[0].digest


def test_platform_a_single_platform_image_lacks_is_exit_3(
    ca: RegistryCA, key: Any, source: Registry, tmp_path: Path
) -> None:
    request = PullRequest((parse_reference(f"{source.host}/istio/proxyv2:1.8.6"),), None, ("linux/s390x",), None)
    with registry_access(ca.ca_pem, None) as access, pytest.raises(InvalidInput, match="single-platform image"):
        pull_images(request, key=key, out=tmp_path / "s.images", access=access)
    assert not (tmp_path / "s.images").exists()


def test_platform_choices_on_an_index(ca: RegistryCA, key: Any, source: Registry, tmp_path: Path) -> None:
    request = PullRequest(
        (parse_reference(f"{source.host}/istio/pilot:1.8.6"),), None, ("linux/arm64", "linux/s390x"), None
    )
    with registry_access(ca.ca_pem, None) as access:
        pull_images(request, key=key, out=tmp_path / "one.images", access=access)  # only arm64 matches: one
    request = PullRequest(
        (parse_reference(f"{source.host}/istio/pilot:1.8.6"),), None, ("linux/amd64", "linux/arm64"), None
    )
    with registry_access(ca.ca_pem, None) as access:
        pull_images(request, key=key, out=tmp_path / "all.images", access=access)  # all of them: the index
    assert open_images(tmp_path / "all.images", [key.public_key()]).images[0].platforms == (
        "linux/amd64",
        "linux/arm64",
    )


def test_credentials_never_reach_a_command_line_or_a_child_environment(
    bundle: Path, key: Any, target: Registry, ca: RegistryCA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import base64

    from airgap.core import subproc
    from tests.registry_fixtures import PASSWORD

    seen: list[tuple[list[str], dict[str, str]]] = []
    real = subproc.run

    def spy(argv: Any, **kw: Any) -> Any:
        seen.append((list(argv), subproc.child_env(kw.get("env"))))
        return real(argv, **kw)

    monkeypatch.setattr(subproc, "run", spy)
    _push(bundle, key, target, ca, tmp_path / "state")
    secret_forms = {PASSWORD, base64.b64encode(f"pusher:{PASSWORD}".encode()).decode()}
    assert seen and all(s not in " ".join(argv) + " ".join(env.values()) for argv, env in seen for s in secret_forms)
    assert all("--dest-authfile" in argv for argv, _ in seen if argv[1] == "copy")


def test_auth_file_keys_with_a_namespace_or_scheme_are_found(tmp_path: Path) -> None:
    from airgap.connected.skopeo import RegistryAccess

    auth = tmp_path / "auth.json"
    auth.write_text(
        json.dumps({"auths": {"https://reg.local:5000": {"auth": "dTpw"}, "other.io/ns": {"auth": "eDp5"}}})
    )
    access = RegistryAccess(None, auth)
    assert access.credentials("reg.local:5000") == ("u", "p")
    assert access.credentials("other.io") == ("x", "y")
    assert access.credentials("third.io") is None


def test_the_registry_questions_follow_the_token_flow(ca: RegistryCA, tmp_path: Path) -> None:
    from airgap.connected.registry_check import RegistryClient
    from airgap.connected.skopeo import registry_access
    from tests.registry_fixtures import TokenRegistry, write_authfile

    held = "sha256:" + "1" * 64
    server = TokenRegistry(ca, {"mesh/pilot": {held}})
    try:
        auth = write_authfile(tmp_path / "auth.json", server.host)
        with registry_access(ca.ca_pem, auth) as access:
            client = RegistryClient(server.host, access)
            client.check_access()
            assert client.has_blob("mesh/pilot", held)
            assert not client.has_blob("mesh/pilot", "sha256:" + "2" * 64)
        scopes = [s for m, p, s in server.requests if p == "/token"]
        assert "repository:mesh/pilot:pull" in scopes
        empty = tmp_path / "empty.json"
        empty.write_text('{"auths": {}}')
        with registry_access(ca.ca_pem, empty) as access, pytest.raises(InvalidInput, match="asks for credentials"):
            RegistryClient(server.host, access).check_access()
        wrong = write_authfile(tmp_path / "wrong.json", server.host, password="nope")
        with registry_access(ca.ca_pem, wrong) as access, pytest.raises(NetworkError, match="token service refused"):
            RegistryClient(server.host, access).check_access()
    finally:
        server.stop()


def test_push_asks_head_first_and_mounts_a_blob_another_repository_has(
    bundle: Path, key: Any, ca: RegistryCA, tmp_path: Path
) -> None:
    reg = start_registry(tmp_path / "logged", ca, access_log=True)
    try:
        _push(bundle, key, reg, ca, tmp_path / "state")
    finally:
        reg.stop()
    log = (tmp_path / "logged" / "registry.log").read_text()
    mounts = [
        line for line in log.splitlines() if '"POST /v2/mesh/' in line and "mount=sha256" in line and '" 201 ' in line
    ]
    assert {m.split("/v2/mesh/")[1].split("/")[0] for m in mounts} == {"proxyv2", "install-cni"}  # the shared base
    assert '"HEAD /v2/mesh/' in log


def test_pull_from_a_source_that_wants_credentials_uses_the_auth_file(
    bundle: Path, key: Any, target: Registry, ca: RegistryCA, upstream: dict[str, str], tmp_path: Path
) -> None:
    seed(target, Path(upstream["_layout"]), ["proxyv2:1.8.6"], path="mirror")
    request = PullRequest((parse_reference(f"{target.host}/mirror/proxyv2:1.8.6"),), None, (), None)
    empty = tmp_path / "empty.json"
    empty.write_text('{"auths": {}}')
    with registry_access(ca.ca_pem, empty) as access, pytest.raises(NetworkError, match="401"):
        pull_images(request, key=key, out=tmp_path / "no.images", access=access)
    with registry_access(ca.ca_pem, target.authfile) as access:
        pull_images(request, key=key, out=tmp_path / "yes.images", access=access)
    assert open_images(tmp_path / "yes.images", [key.public_key()]).images[0].digest == upstream["proxyv2:1.8.6"]


def test_a_delta_pull_downloads_only_what_its_base_lacks(
    ca: RegistryCA, key: Any, upstream: dict[str, str], tmp_path: Path
) -> None:
    reg = start_registry(tmp_path / "logged", ca, access_log=True)
    try:
        layout = tmp_path / "new"
        make_mesh_layout(layout, tag="1.8.7")
        seed(reg, Path(upstream["_layout"]), ["proxyv2:1.8.6"])
        seed(reg, layout, ["proxyv2:1.8.7"])
        with registry_access(ca.ca_pem, None) as access:
            old = PullRequest((parse_reference(f"{reg.host}/istio/proxyv2:1.8.6"),), None, (), None)
            pull_images(old, key=key, out=tmp_path / "old.images", access=access)
            log = tmp_path / "logged" / "registry.log"
            before = len(log.read_text().splitlines())
            new = PullRequest((parse_reference(f"{reg.host}/istio/proxyv2:1.8.7"),), None, (), None)
            m = pull_images(new, key=key, out=tmp_path / "new.images", access=access, since=tmp_path / "old.images")
        fetched = "\n".join(log.read_text().splitlines()[before:])
    finally:
        reg.stop()
    (shared,) = m.inherited  # the base layer both versions share
    assert f"/blobs/{shared.digest}" not in fetched  # not downloaded again
    own = [x for x in m.members[2:] if x.size > 5000]  # the new version's own layer
    assert own and all(f"/blobs/sha256:{x.sha256}" in fetched for x in own)
