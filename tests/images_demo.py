"""Stand-ins for the demo's images part (scripts/demo.d/10-images.sh); not a test module.

``python -m tests.images_demo prepare DIR``: a test CA and TLS certificate for 127.0.0.1, two
docker-registry configs on free loopback ports (``src``: TLS; ``dst``: TLS and htpasswd, with its
containers-auth.json), synthetic images in an OCI layout (a two-platform index, a shared base
layer, a Docker v2 image), and a signed Istio 1.8.6 release with its profile set. Prints shell
assignments (``SRC=… DST=…``) for the demo to ``eval``; the demo starts and kills the registries.

``python -m tests.images_demo seed DIR HOST``: push the synthetic images to ``HOST/istio/NAME:1.8.6``
with skopeo, byte for byte.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.oci_fixtures import make_mesh_layout
from tests.registry_fixtures import PASSWORD, USER, free_port, make_ca, seed, write_authfile
from tests.release_fixtures import make_signed_release


def prepare(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    ca = make_ca(folder / "ca")
    hosts = {}
    for name in ("src", "dst"):
        port = free_port()
        hosts[name] = f"127.0.0.1:{port}"
        root = folder / name
        root.mkdir(exist_ok=True)
        lines = [
            "version: 0.1",
            "log: {level: error, accesslog: {disabled: true}}",
            f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}}}",
            f"http: {{addr: 127.0.0.1:{port}, tls: {{certificate: {ca.cert}, key: {ca.key}}}}}",
        ]
        if name == "dst":
            hashed = subprocess.run(["htpasswd", "-Bbn", USER, PASSWORD], check=True, capture_output=True).stdout
            (root / "htpasswd").write_bytes(hashed)
            lines.append(f"auth: {{htpasswd: {{realm: airgap-demo, path: {root / 'htpasswd'}}}}}")
            write_authfile(folder / "auth.json", hosts[name])
        (root / "config.yml").write_text("\n".join(lines) + "\n")
    make_mesh_layout(folder / "layout")
    tarball, sig, pub = make_signed_release(folder / "release", version="1.8.6", istio_profiles=True)
    shutil.copyfile(pub, folder / "release" / "release-key.pem")
    print(f"SRC={hosts['src']} DST={hosts['dst']} IMG_CA={ca.ca_pem} IMG_TARBALL={tarball} IMG_SIG={sig}")


def main(argv: list[str]) -> None:
    if argv[:1] == ["prepare"]:
        prepare(Path(argv[1]))
    elif argv[:1] == ["seed"]:
        from tests.registry_fixtures import Registry, RegistryCA

        folder = Path(argv[1])
        ca = RegistryCA(folder / "ca" / "ca.pem", folder / "ca" / "tls.crt", folder / "ca" / "tls.key")
        reg = Registry(argv[2], ca, folder / "src", 0, None)  # type: ignore[arg-type]
        seed(reg, folder / "layout", ["pilot:1.8.6", "proxyv2:1.8.6", "install-cni:1.8.6"])
    else:
        raise SystemExit("usage: python -m tests.images_demo prepare DIR | seed DIR HOST")


if __name__ == "__main__":
    main(sys.argv[1:])
