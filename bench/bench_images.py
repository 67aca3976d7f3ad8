"""Images across the gap, side by side with skopeo (the tool users run instead).

Three images sharing a 256 MiB base layer, ~450 MiB unique in all (150 MiB each; one is a
two-platform index), served by Debian's docker-registry over loopback TLS.

1. pull: ``airgap images pull`` (fetch, verify, seal and sign one bundle) vs ``skopeo copy --all``
   of the same images into one OCI layout. Target <= 1.0.
2. verify: ``airgap images verify`` vs ``openssl dgst -sha256`` of the bundle. Target <= 1.15.
3. push: ``airgap images push`` (verify every byte, then push) into an empty registry vs ``skopeo
   copy --all`` from an OCI layout into an empty registry. Target <= 1.0.

Peak RSS of airgap's own process (``os.wait4`` of the python process; skopeo's is shown apart):
target < 128 MiB. Set ``AIRGAP_BENCH_IMAGES_SCALE`` (default 1.0) to shrink the images.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
ROUNDS = 2
MiB = 1024 * 1024


def timed_rss(cmd: list[str], **kw: Any) -> tuple[float, int]:
    os.sync()
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)
    _, status, usage = os.wait4(p.pid, 0)
    elapsed = time.perf_counter() - t0
    err = p.stderr.read() if p.stderr else b""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{cmd[:5]} failed: {err[-600:]!r}")
    return elapsed, usage.ru_maxrss


def make_images(work: Path, scale: float) -> dict[str, Any]:
    sys.path.insert(0, str(REPO))
    from tests.oci_fixtures import (
        OCI_LAYER,
        _config,
        write_index,
        write_layout_index,
        write_manifest,
        write_random_blob,
    )

    layout = work / "layout"
    base = write_random_blob(layout, int(256 * MiB * scale), OCI_LAYER, seed=b"bench-base")
    refs = {}
    for name in ("pilot", "proxyv2", "install-cni"):
        own = write_random_blob(layout, int(150 * MiB * scale), OCI_LAYER, seed=name.encode())
        if name == "pilot":  # a two-platform index; arm64 is small so the unique total stays ~450 MiB
            arm = write_random_blob(layout, 1 * MiB, OCI_LAYER, seed=b"pilot-arm64")
            amd = write_manifest(layout, _config(layout, "amd64", name), [base, own])
            arm_m = write_manifest(layout, _config(layout, "arm64", name), [base, arm])
            refs[f"{name}:1.8.6"] = write_index(layout, [(amd, "amd64"), (arm_m, "arm64")])
        else:
            refs[f"{name}:1.8.6"] = write_manifest(layout, _config(layout, "amd64", name), [base, own])
    write_layout_index(layout, refs)
    return {"layout": layout, "refs": list(refs)}


def main() -> None:
    sys.path.insert(0, str(REPO))
    from airgap.core.keys import new_signing_key
    from tests.registry_fixtures import make_ca, seed, start_registry

    scale = float(os.environ.get("AIRGAP_BENCH_IMAGES_SCALE", "1.0"))
    work = Path(tempfile.mkdtemp(prefix="airgap-bench-images-"))
    regs = []
    try:
        made = make_images(work, scale)
        ca = make_ca(work / "ca")
        src = start_registry(work / "src", ca)
        regs.append(src)
        seed(src, made["layout"], made["refs"])
        keys = new_signing_key("op", work, None)
        certs = src.cert_dir
        py = [sys.executable, "-m", "airgap", "images"]
        images = [a for r in made["refs"] for a in ("--image", f"{src.host}/istio/{r}")]
        rows: dict[str, Any] = {}

        # 1. pull
        ours, theirs, rss = [], [], []
        for n in range(ROUNDS):
            out = str(work / f"p{n}.images")
            t, r = timed_rss([*py, "pull", *images, "--sign-key", str(keys.private), "--out", out,
                              "--ca-bundle", str(ca.ca_pem)], cwd=REPO)  # fmt: skip
            ours.append(t)
            rss.append(r)
            t0 = time.perf_counter()
            for ref in made["refs"]:
                dest = f"oci:{work / f'sk{n}'}:{ref}"
                subprocess.run(["skopeo", "copy", "--quiet", "--all", "--src-cert-dir", str(certs),
                                f"docker://{src.host}/istio/{ref}", dest], check=True)  # fmt: skip
            theirs.append(time.perf_counter() - t0)
        bundle = work / "p0.images"
        rows["pull"] = (statistics.median(ours), statistics.median(theirs), max(rss), 1.0)

        # 2. verify
        ours, theirs, rss = [], [], []
        timed_rss(["openssl", "dgst", "-sha256", str(bundle)])
        for _ in range(5):
            t, _ = timed_rss(["openssl", "dgst", "-sha256", str(bundle)])
            theirs.append(t)
            t, r = timed_rss([*py, "verify", str(bundle), "--trust", str(keys.public)], cwd=REPO)
            ours.append(t)
            rss.append(r)
        rows["verify"] = (statistics.median(ours), statistics.median(theirs), max(rss), 1.15)
        # the fixed cost of a Python CLI (interpreter, typer, imports), for context
        startup = statistics.median(timed_rss([*py, "verify", "--help"], cwd=REPO)[0] for _ in range(5))
        print(f"verify without airgap's start-up ({startup:.2f} s): "
              f"{(rows['verify'][0] - startup) / rows['verify'][1]:.2f}x openssl")  # fmt: skip

        # 3. push, each round into fresh empty registries
        ours, theirs, rss = [], [], []
        for n in range(ROUNDS):
            a = start_registry(work / f"a{n}", ca)
            b = start_registry(work / f"b{n}", ca)
            regs += [a, b]
            t, r = timed_rss([*py, "push", str(bundle), "--trust", str(keys.public), "--registry", f"{a.host}/mesh",
                              "--ca-bundle", str(ca.ca_pem), "--state", str(work / "state")], cwd=REPO)  # fmt: skip
            ours.append(t)
            rss.append(r)
            t0 = time.perf_counter()
            for ref in made["refs"]:
                subprocess.run(["skopeo", "copy", "--quiet", "--all", "--preserve-digests", "--dest-cert-dir",
                                str(b.cert_dir), f"oci:{work / 'sk0'}:{ref}", f"docker://{b.host}/mesh/{ref}"],
                               check=True)  # fmt: skip
            theirs.append(time.perf_counter() - t0)
            a.stop()
            b.stop()
        rows["push"] = (statistics.median(ours), statistics.median(theirs), max(rss), 1.0)

        size = bundle.stat().st_size
        report(rows, size, scale)
    finally:
        for r in regs:
            r.stop()
        shutil.rmtree(work, ignore_errors=True)


def report(rows: dict[str, tuple[float, float, int, float]], size: int, scale: float) -> None:
    RESULTS.mkdir(exist_ok=True)
    doc = {
        step: {
            "airgap_s": round(o, 2),
            "baseline_s": round(t, 2),
            "ratio": round(o / t, 3),
            "target": target,
            "peak_rss_mib_incl_children": round(rss / 1024, 1),
        }
        for step, (o, t, rss, target) in rows.items()
    }
    doc["bundle_mib"] = round(size / MiB, 1)  # type: ignore[assignment]
    doc["scale"] = scale  # type: ignore[assignment]
    (RESULTS / "images.json").write_text(json.dumps(doc, indent=2) + "\n")
    print("| step | airgap s | baseline s | ratio | target | peak RSS MiB (with children) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for step, (o, t, rss, target) in rows.items():
        print(f"| {step} | {o:.2f} | {t:.2f} | {o / t:.2f} | <= {target} | {rss / 1024:.0f} |")
    print(f"bundle: {size / MiB:.0f} MiB")


if __name__ == "__main__":
    main()
