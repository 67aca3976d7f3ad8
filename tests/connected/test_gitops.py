"""airgap.connected.gitops: the fleet layout renderer, and what a killed render leaves behind.

A render killed with SIGKILL (no cleanup runs) at the worst moment, with every file staged and
none published, leaves temporary files under DIR: they hold sops ciphertext only, never the key
or the token; the next render removes them.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from airgap.connected.gitops import KUSTOMIZATION, RenderedFile, render_cluster, write_sops_config
from airgap.core import age, sops
from airgap.core.atomic import TMP_PREFIX
from airgap.errors import InvalidInput, Refused
from tests.helpers import REPO, tree

TOKEN = "eyJhbGciOiJSUzI1NiJ9.remote-secret-token-" + "t" * 40


def _pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _secret(pem: bytes, name: str = "cacerts") -> dict[str, Any]:
    """A Secret as mesh connect renders remote secrets: a key in data and a token in stringData."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "istio-system", "labels": {"istio/multiCluster": "true"}},
        "type": "Opaque",
        "data": {"ca-key.pem": base64.b64encode(pem).decode()},
        "stringData": {"token": TOKEN},
    }


def _needles(pem: bytes) -> list[bytes]:
    body = [ln for ln in pem.splitlines() if ln and not ln.startswith(b"-----")]
    return [b"PRIVATE KEY-----", base64.b64encode(pem), pem, *body, TOKEN.encode(), b"AGE-SECRET-KEY-1"]


def _grep_all(folder: Path, needles: list[bytes]) -> int:
    files = [p for p in folder.rglob("*") if p.is_file()]
    for p in files:
        data = p.read_bytes()
        for n in needles:
            assert n not in data, f"{p} holds secret material"
    return len(files)


@pytest.fixture(scope="module")
def flux(tmp_path_factory: pytest.TempPathFactory) -> age.RecipientKeyFiles:
    return age.new_recipient_key("flux", tmp_path_factory.mktemp("flux"), None)


_KILLED = textwrap.dedent(
    """
    import json, os, signal, sys
    from pathlib import Path
    import airgap.core.atomic as atomic
    import airgap.connected.gitops as gitops
    from airgap.core import sops

    where, root, secret, recipient = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4]
    def die(*_a, **_k):  # SIGKILL: no finally, no cleanup
        os.kill(os.getpid(), signal.SIGKILL)
    if where == "tree":
        gitops.os.replace = die  # every file staged, none published
        files = [gitops.RenderedFile(n, secret=secret) for n in ("10-secret.sops.yaml", "20-b.sops.yaml")]
        gitops.render_cluster(root, "c1", files, recipients=[recipient])
    else:
        atomic.publish = die  # the temp file is complete, not yet linked to its name
        root.mkdir()
        sops.write_secret_file(root / "s.sops.yaml", secret, [recipient])
    """
)


@pytest.mark.parametrize("where", ["tree", "file"])
def test_killed_render_leaves_only_ciphertext(where: str, flux: age.RecipientKeyFiles, tmp_path: Path) -> None:
    pem = _pem()
    root = tmp_path / "gitops"
    p = subprocess.run(
        [sys.executable, "-c", _KILLED, where, str(root), json.dumps(_secret(pem)), flux.recipient],
        capture_output=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert p.returncode == -9, p.stderr  # killed, as meant
    leftovers = [x for x in root.rglob("*") if x.is_file() and TMP_PREFIX in str(x.relative_to(root))]
    assert leftovers, tree(root)  # the kill came after the ciphertext was on disk
    for x in leftovers:
        assert sops.is_sops_file(x.read_bytes())
    assert _grep_all(root, _needles(pem)) == len(leftovers)
    if where == "tree":  # the next render removes the leftovers and publishes
        done = render_cluster(
            root, "c1", [RenderedFile("10-secret.sops.yaml", secret=_secret(pem))], recipients=[flux.recipient]
        )
        assert done.actions["10-secret.sops.yaml"] == "created"
        assert tree(root) == [
            "clusters",
            "clusters/c1",
            "clusters/c1/10-secret.sops.yaml",
            f"clusters/c1/{KUSTOMIZATION}",
        ]
        assert yaml.safe_load(sops.decrypt_yaml((done.folder / "10-secret.sops.yaml").read_bytes(), flux.private)) == (
            sops.with_content_digest(_secret(pem))
        )
        _grep_all(root, _needles(pem))


def test_kustomization_lists_every_command_s_resources(flux: age.RecipientKeyFiles, tmp_path: Path) -> None:
    pem = _pem()
    ns = b"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: istio-system\n"
    r1 = render_cluster(
        tmp_path,
        "c1",
        [
            RenderedFile("00-namespace.yaml", data=ns, keep_existing=True),
            RenderedFile("10-a.sops.yaml", secret=_secret(pem)),
        ],
        recipients=[flux.recipient],
    )
    assert r1.changed and r1.summary().startswith("00-namespace.yaml created")
    labelled = ns + b"  labels:\n    topology.istio.io/network: n1\n"
    r2 = render_cluster(
        tmp_path,
        "c1",
        [
            RenderedFile("00-namespace.yaml", data=labelled, replaceable=lambda old: b"network" not in old),
            RenderedFile("30-svc.yaml", data=b"kind: Service\n"),
            RenderedFile("cluster.yaml", data=b"kind: IstioOperator\n"),  # not a kustomize resource
        ],
        recipients=None,
    )
    assert r2.actions["00-namespace.yaml"] == "updated" and r2.actions[KUSTOMIZATION] == "updated"
    kust = yaml.safe_load((tmp_path / "clusters" / "c1" / KUSTOMIZATION).read_text())
    assert kust["resources"] == ["00-namespace.yaml", "10-a.sops.yaml", "30-svc.yaml"]
    # the first command again: its namespace stays (kept), its secret is unchanged, nothing moves
    again = render_cluster(
        tmp_path,
        "c1",
        [
            RenderedFile("00-namespace.yaml", data=ns, keep_existing=True),
            RenderedFile("10-a.sops.yaml", secret=_secret(pem)),
        ],
        recipients=[flux.recipient],
    )
    assert not again.changed and again.summary() == "unchanged"
    assert again.actions == {"00-namespace.yaml": "kept", "10-a.sops.yaml": "unchanged", KUSTOMIZATION: "unchanged"}
    # a different network label is not replaceable: refused, folder untouched
    before = {p: p.read_bytes() for p in (tmp_path / "clusters" / "c1").iterdir()}
    with pytest.raises(Refused, match="already exists with other content"):
        render_cluster(
            tmp_path,
            "c1",
            [
                RenderedFile("30-svc.yaml", data=b"kind: Service\nmetadata: {}\n"),
                RenderedFile(
                    "00-namespace.yaml", data=ns + b"  labels: {x: y}\n", replaceable=lambda o: b"network" not in o
                ),
            ],
            recipients=None,
        )
    assert {p: p.read_bytes() for p in (tmp_path / "clusters" / "c1").iterdir()} == before


def test_cluster_names_and_links(tmp_path: Path) -> None:
    for bad in ("../x", "a/b", ".", "..", "", TMP_PREFIX + "x", "-x"):
        with pytest.raises(InvalidInput, match="not usable as a cluster folder name"):
            render_cluster(tmp_path, bad, [], recipients=None)
    folder = tmp_path / "clusters" / "c1"
    folder.mkdir(parents=True)
    (tmp_path / "elsewhere.yaml").write_text("x\n")
    (folder / "30-svc.yaml").symlink_to(tmp_path / "elsewhere.yaml")
    with pytest.raises(Refused, match="not a regular file"):
        render_cluster(tmp_path, "c1", [RenderedFile("30-svc.yaml", data=b"kind: Service\n")], recipients=None)
    assert (tmp_path / "elsewhere.yaml").read_text() == "x\n"


def test_sops_config_follows_the_recipients(flux: age.RecipientKeyFiles, tmp_path: Path) -> None:
    other = age.new_recipient_key("other", tmp_path, None)
    assert write_sops_config(tmp_path / "g", [flux.recipient]) == "created"
    assert write_sops_config(tmp_path / "g", [flux.recipient]) == "unchanged"
    assert write_sops_config(tmp_path / "g", [flux.recipient, other.recipient]) == "updated"
    rule = yaml.safe_load((tmp_path / "g" / ".sops.yaml").read_text())["creation_rules"][0]
    assert rule["age"] == f"{flux.recipient},{other.recipient}"


def test_one_render_at_a_time_per_cluster_folder(tmp_path: Path) -> None:
    import fcntl
    import os
    import threading

    folder = tmp_path / "clusters" / "c1"
    folder.mkdir(parents=True)
    stale = folder / f"{TMP_PREFIX}render-other"  # what a concurrent render is staging right now
    stale.mkdir()
    fd = os.open(folder, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another render holds the folder
    done = threading.Event()

    def render() -> None:
        render_cluster(tmp_path, "c1", [RenderedFile("30-svc.yaml", data=b"kind: Service\n")], recipients=None)
        done.set()

    t = threading.Thread(target=render)
    t.start()
    try:
        assert not done.wait(0.5)  # waits for the lock: the other render's staging is left alone
        assert stale.exists() and not (folder / "30-svc.yaml").exists()
    finally:
        os.close(fd)  # the other render finishes
    t.join(30)
    assert done.is_set() and (folder / "30-svc.yaml").exists() and not stale.exists()
