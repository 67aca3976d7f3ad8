"""Release verification and download, side by side with the tools the guide uses.

1. Verify a 1 GiB file: ``airgap release verify`` vs ``openssl dgst -sha256 -verify``, same file,
   same signature, same run, page cache warm. Wall time ratio and each child's peak RSS (from
   ``os.wait4``). Targets: ratio <= 1.25, airgap peak RSS < 128 MiB.
2. Fetch 1 GiB over loopback HTTPS (one Python TLS server process, trustme certificate):
   ``airgap release fetch`` (download + signature fetch + verification) vs ``curl`` getting the same
   two files. Also shown: curl followed by openssl verify (the guide's whole procedure).
   Target: ratio <= 1.3.

Set ``AIRGAP_BENCH_MIB`` to use a smaller file (default 1024).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
VERSION = "1.8.6-asm.8"
NAME = f"istio-{VERSION}-linux-amd64.tar.gz"
ROUNDS = 5

SERVER = r"""
import http.server, ssl, sys, functools
root, cert, key = sys.argv[1], sys.argv[2], sys.argv[3]
class H(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): pass
    def copyfile(self, src, dst):
        while chunk := src.read(1024 * 1024):
            dst.write(chunk)
httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(H, directory=root))
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
print(httpd.server_address[1], flush=True)
httpd.serve_forever()
"""


def timed(cmd: list[str], **kw: object) -> tuple[float, int]:
    """Run ``cmd``; return (wall seconds, peak RSS in KiB of that child alone).

    Dirty pages are flushed first, so no run pays for the previous run's disk writeback.
    """
    os.sync()
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)  # type: ignore[call-overload]
    _, status, usage = os.wait4(p.pid, 0)
    elapsed = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    out, err = p.stdout.read(), p.stderr.read()
    p.stdout.close()
    p.stderr.close()
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[:4]} failed ({p.returncode}): {out[-300:]!r} {err[-300:]!r}")
    return elapsed, usage.ru_maxrss


def release_header(size: int) -> bytes:
    """The first tar header of a release: ``istio-VERSION/blob`` of ``size`` bytes. ``release fetch``
    checks that the archive's root is ``istio-VERSION`` of the version asked for (issue 23)."""
    import tarfile

    info = tarfile.TarInfo(f"istio-{VERSION}/blob")
    info.size = size
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def make_input(work: Path, mib: int) -> tuple[Path, Path, Path]:
    data = work / "www" / "asm" / NAME
    data.parent.mkdir(parents=True)
    block = os.urandom(1024 * 1024)
    with open(data, "wb") as fh:
        fh.write(release_header(mib * 1024 * 1024))
        for i in range(mib):
            fh.write(block[i % 251 :] + block[: i % 251])  # distinct blocks, cheap to make
        fh.write(b"\0" * 1024)  # the end of the archive
    key, pub, sig = work / "k.key", work / "k.pem", Path(f"{data}.1.sig")
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(key)], check=True
    )
    subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(pub)], check=True)
    subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(key), "-out", str(sig), str(data)], check=True)
    return data, sig, pub


def bench_verify(data: Path, sig: Path, pub: Path) -> dict[str, object]:
    ours_cmd = [sys.executable, "-m", "airgap", "release", "verify", str(data), "--signature", str(sig)]
    ours_cmd += ["--key", str(pub)]
    theirs_cmd = ["openssl", "dgst", "-sha256", "-verify", str(pub), "-signature", str(sig), str(data)]
    timed(theirs_cmd)  # warm the page cache
    ours, theirs, rss_ours, rss_theirs = [], [], [], []
    for _ in range(ROUNDS):
        t, r = timed(theirs_cmd)
        theirs.append(t)
        rss_theirs.append(r)
        t, r = timed(ours_cmd, cwd=REPO)
        ours.append(t)
        rss_ours.append(r)
    o, t = statistics.median(ours), statistics.median(theirs)
    # The fixed cost of a Python CLI (interpreter, typer, cryptography, loading the key), for context.
    startup = statistics.median(
        timed([sys.executable, "-m", "airgap", "release", "keys"], cwd=REPO)[0] for _ in range(5)
    )
    return {
        "case": f"verify {data.stat().st_size // 2**20} MiB",
        "airgap_startup_s": round(startup, 3),
        "ratio_without_startup": round((o - startup) / t, 3),
        "airgap_s": round(o, 3),
        "openssl_s": round(t, 3),
        "ratio": round(o / t, 3),
        "target_ratio": 1.25,
        "airgap_peak_rss_mib": round(max(rss_ours) / 1024, 1),
        "openssl_peak_rss_mib": round(max(rss_theirs) / 1024, 1),
        "target_rss_mib": 128,
        "rounds": ROUNDS,
    }


def start_server(work: Path) -> tuple[subprocess.Popen[str], int, Path]:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file, ca_file = work / "srv.pem", work / "srv.key", work / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(work / "www"), str(cert_file), str(key_file)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
    return proc, port, ca_file


def bench_fetch(work: Path, data: Path, pub: Path) -> dict[str, object]:
    proc, port, ca_file = start_server(work)
    base = f"https://127.0.0.1:{port}/asm"
    curl_cmd = ["curl", "-sS", "--fail", "--cacert", str(ca_file)]
    curl_cmd += ["-o", str(work / "c" / NAME), f"{base}/{NAME}", "-o", str(work / "c" / f"{NAME}.1.sig")]
    curl_cmd += [f"{base}/{NAME}.1.sig"]
    ours_cmd = [sys.executable, "-m", "airgap", "release", "fetch", VERSION, "--base-url", base]
    ours_cmd += ["--ca-bundle", str(ca_file), "--key", str(pub), "--out", str(work / "a")]
    verify_cmd = ["openssl", "dgst", "-sha256", "-verify", str(pub), "-signature", str(work / "c" / f"{NAME}.1.sig")]
    verify_cmd += [str(work / "c" / NAME)]
    ours, theirs, guide, rss, durable = [], [], [], [], []

    def fresh() -> None:
        for d in ("a", "c"):
            shutil.rmtree(work / d, ignore_errors=True)
            (work / d).mkdir()

    try:
        for i in range(ROUNDS):
            for side in ("curl", "airgap") if i % 2 == 0 else ("airgap", "curl"):  # alternate the order
                fresh()
                if side == "curl":
                    t_curl, _ = timed(curl_cmd)
                    # airgap fsyncs before it renames (a crash never leaves a torn file under the final
                    # name); curl does not. The cost of making curl's file durable too, for context:
                    t0 = time.perf_counter()
                    subprocess.run(["sync", "--data", str(work / "c" / NAME)], check=True)
                    durable.append(t_curl + time.perf_counter() - t0)
                    t_verify, _ = timed(verify_cmd)
                    theirs.append(t_curl)
                    guide.append(durable[-1] + t_verify)
                else:
                    t, r = timed(ours_cmd, cwd=REPO)
                    ours.append(t)
                    rss.append(r)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    o, t, g, d = (statistics.median(x) for x in (ours, theirs, guide, durable))
    return {
        "case": f"fetch {data.stat().st_size // 2**20} MiB over loopback HTTPS",
        "airgap_s": round(o, 3),
        "curl_s": round(t, 3),
        "ratio": round(o / t, 3),
        "target_ratio": 1.3,
        "curl_then_fsync_s": round(d, 3),
        "ratio_vs_curl_then_fsync": round(o / d, 3),
        "curl_then_fsync_then_openssl_verify_s": round(g, 3),
        "ratio_vs_curl_then_verify": round(o / g, 3),
        "airgap_peak_rss_mib": round(max(rss) / 1024, 1),
        "rounds": ROUNDS,
    }


def main() -> list[dict[str, object]]:
    mib = int(os.environ.get("AIRGAP_BENCH_MIB", "1024"))
    with tempfile.TemporaryDirectory(prefix="airgap-bench-release-") as tmp:
        work = Path(tmp)
        os.environ["AIRGAP_STATE_DIR"] = str(work / "state")  # the accepted-releases mark stays here
        data, sig, pub = make_input(work, mib)
        rows = [bench_verify(data, sig, pub), bench_fetch(work, data, pub)]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "release.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"{'case':<40} {'airgap s':>9} {'other s':>9} {'ratio':>7} {'target':>7} {'airgap RSS MiB':>15}")
    for r in rows:
        other = r.get("openssl_s", r.get("curl_s"))
        print(
            f"{r['case']:<40} {r['airgap_s']:>9} {other:>9} {r['ratio']:>7} {r['target_ratio']:>7} "
            f"{r['airgap_peak_rss_mib']:>15}"
        )
    verify, fetch = rows
    print(
        f"  (verify: airgap start-up {verify['airgap_startup_s']} s; "
        f"ratio without it {verify['ratio_without_startup']})"
    )
    print(
        f"  (fetch: curl + fsync {fetch['curl_then_fsync_s']} s, ratio {fetch['ratio_vs_curl_then_fsync']}; "
        f"curl + fsync + openssl verify {fetch['curl_then_fsync_then_openssl_verify_s']} s, "
        f"ratio {fetch['ratio_vs_curl_then_verify']})"
    )
    return rows


if __name__ == "__main__":
    main()
