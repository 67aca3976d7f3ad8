"""`release fetch` against a real HTTPS server on loopback (certificates from trustme).

The server plays a script per path: each request pops the next behaviour ("cut", "503", "slow",
"404", "redirect:URL", "ignore-range", "hold": send the body only once the test opens
the gate) and falls back to serving the file with Range support.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import re
import shutil
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme

from airgap.connected import fetch as fetch_module
from airgap.connected.fetch import FetchOptions, download, fetch_lock, fetch_release
from airgap.core import hashing
from airgap.errors import (
    AirgapError,
    InvalidInput,
    NetworkError,
    Refused,
    SignatureMismatch,
    WrongRelease,
)
from tests.hashing_fixtures import Counted
from tests.helpers import one_error_line, run_cli, tree
from tests.release_fixtures import make_signed_release, openssl_sign

VERSION = "1.8.6-asm.8"
NAME = f"istio-{VERSION}-linux-amd64.tar.gz"


@dataclass
class Script:
    root: Path
    plan: dict[str, list[str]] = field(default_factory=dict)
    seen: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    lock: threading.Lock = field(default_factory=threading.Lock)
    gate: threading.Event = field(default_factory=threading.Event)  # "hold" waits for it before the body

    def next(self, path: str) -> str:
        with self.lock:
            steps = self.plan.get(path) or []
            return steps.pop(0) if steps else "ok"


def make_handler(script: Script) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            script.seen.append((path, self.headers.get("Range")))
            step = script.next(path)
            file = script.root / path.lstrip("/")
            if step == "404" or not file.is_file():
                self._status(404)
                return
            if step == "503":
                self._status(503)
                return
            if step.startswith("redirect:"):
                self.send_response(302)
                self.send_header("Location", step.removeprefix("redirect:"))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = file.read_bytes()
            start = 0
            rng = self.headers.get("Range")
            m = re.fullmatch(r"bytes=(\d+)-", rng or "")
            if m and step not in ("ignore-range", "lie"):
                start = int(m.group(1))
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            if step.startswith("chunked"):  # no length: the body ends with its last chunk
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                pieces = [body[i : i + 1000] for i in range(0, len(body), 1000)]
                for piece in pieces[: len(pieces) // 2] if step == "chunked-cut" else pieces:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                if step == "chunked-cut":
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(b"0\r\n\r\n")
                return
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            if step == "lie":  # ignores Range, promises the whole file, sends 100 bytes and closes
                self.wfile.write(body[:100])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if step == "slow":
                time.sleep(1.5)
            if step == "hold":
                script.gate.wait(60)
            if step == "trickle":  # one byte every 1.5 s: each read is well inside the read timeout
                for i in range(min(len(body), 20)):
                    try:
                        self.wfile.write(body[i : i + 1])
                        self.wfile.flush()
                    except OSError:
                        break
                    time.sleep(1.5)
                self.close_connection = True
                return
            if step in ("reset", "forged"):
                self._break_off(step, body[: len(body) // 2])
                return
            if step == "cut":
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(body)

        def _break_off(self, step: str, half: bytes) -> None:
            """Half the body, then a TCP reset ("reset") or a TLS record no session key sealed ("forged")."""
            self.wfile.write(half)
            self.wfile.flush()
            self.close_connection = True
            if step == "forged":
                os.write(self.connection.fileno(), b"\x17\x03\x03\x00\x20" + os.urandom(32))
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            time.sleep(0.3)  # the client has read the headers and the half: a reset now drops nothing it was sent
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.wfile.close()
            self.rfile.close()
            self.connection.close()  # the last reference: with a zero linger, the kernel answers with RST

        def _status(self, code: int) -> None:
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


@dataclass
class Server:
    url: str
    script: Script
    ca_file: Path


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path, ssl.SSLContext]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    ca_file = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return ca, ca_file, ctx


@pytest.fixture
def server(tmp_path: Path, tls: tuple[trustme.CA, Path, ssl.SSLContext]) -> Iterator[Server]:
    _, ca_file, ctx = tls
    root = tmp_path / "www"
    root.mkdir()
    script = Script(root)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_handler(script))
    httpd.daemon_threads = True
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Server(f"https://127.0.0.1:{httpd.server_address[1]}", script, ca_file)
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="session")
def signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """The small signed release of tests/release_fixtures.py (its key is not a pinned one)."""
    return make_signed_release(tmp_path_factory.mktemp("signed"))


def publish(server: Server, signed: tuple[Path, Path, Path], *, tamper: bool = False) -> tuple[Path, Path]:
    tarball, sig, pub = signed
    dst = server.script.root / "asm"
    dst.mkdir(exist_ok=True)
    data = tarball.read_bytes()
    if tamper:
        data = data[:-1] + bytes([data[-1] ^ 0x01])
    (dst / tarball.name).write_bytes(data)
    shutil.copy(sig, dst / sig.name)
    return tarball, pub


def quick(server: Server, **kw: object) -> FetchOptions:
    sleeps: list[float] = []
    opts: dict[str, object] = {"ca_bundle": server.ca_file, "backoff": 0.25, "sleep": sleeps.append}
    opts.update(kw)
    return FetchOptions(**opts)  # type: ignore[arg-type]


def fetch(server: Server, out: Path, pub: Path, options: FetchOptions) -> Path:
    return fetch_release(VERSION, base_url=f"{server.url}/asm", out=out, key=pub, options=options).tarball


# --- the happy path and its variants ---------------------------------------------------------------


def test_fetch_over_https_verifies_and_keeps(server: Server, signed: tuple[Path, Path, Path], tmp_path: Path) -> None:
    tarball, pub = publish(server, signed)
    out = tmp_path / "out"
    got = fetch_release(VERSION, base_url=f"{server.url}/asm", out=out, key=pub, options=quick(server))
    assert got.tarball.read_bytes() == tarball.read_bytes()
    assert got.signature.read_bytes() == signed[1].read_bytes()
    assert got.verified.key.source == str(pub)
    assert tree(out) == [NAME, f"{NAME}.1.sig"]


def test_cut_short_body_resumes_with_range(server: Server, signed: tuple[Path, Path, Path], tmp_path: Path) -> None:
    tarball, pub = publish(server, signed)
    server.script.plan[f"/asm/{NAME}"] = ["cut"]
    out = tmp_path / "out"
    got = fetch(server, out, pub, quick(server))
    assert got.read_bytes() == tarball.read_bytes()
    ranges = [r for p, r in server.script.seen if p == f"/asm/{NAME}"]
    half = tarball.stat().st_size // 2
    assert ranges == [None, f"bytes={half}-"]
    assert tree(out) == [NAME, f"{NAME}.1.sig"]


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[Counted]:
    made: list[Counted] = []

    def factory(name: str) -> Counted:
        made.append(Counted(name))
        return made[-1]

    monkeypatch.setattr(hashing, "new_hash", factory)
    return made


def test_chunked_body_and_a_chunked_body_cut_short(
    server: Server, signed: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    tarball, pub = publish(server, signed)
    path = f"/asm/{tarball.name}"
    server.script.plan[path] = ["chunked-cut", "chunked"]  # dropped mid-body, then a whole body
    got = fetch(server, tmp_path / "out", pub, quick(server))
    assert got.read_bytes() == tarball.read_bytes()
    assert [p for p, _ in server.script.seen].count(path) == 2


@pytest.mark.parametrize("plan", [[], ["cut"]], ids=["straight", "cut-and-resumed"])
def test_each_downloaded_byte_is_hashed_once(
    server: Server, signed: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plan: list[str]
) -> None:
    """One SHA-256 over the body as it arrives (a resumed download hashes the kept prefix once
    and the rest as it arrives), none afterwards: verification needs no second read."""
    tarball, pub = publish(server, signed)
    server.script.plan[f"/asm/{NAME}"] = list(plan)
    counted = _counting(monkeypatch)
    got = fetch(server, tmp_path / "out", pub, quick(server))
    size, sig_size = tarball.stat().st_size, signed[1].stat().st_size
    assert sorted((c.name, c.fed) for c in counted) == sorted([("sha256", sig_size), ("sha256", size)])
    assert got.read_bytes() == tarball.read_bytes()


def test_part_file_from_an_earlier_run_resumes(server: Server, signed: tuple[Path, Path, Path], tmp_path: Path) -> None:
    tarball, pub = publish(server, signed)
    out = tmp_path / "out"
    out.mkdir()
    (out / f"{NAME}.part").write_bytes(tarball.read_bytes()[:300])
    got = fetch(server, out, pub, quick(server))
    assert got.read_bytes() == tarball.read_bytes()
    assert [r for p, r in server.script.seen if p == f"/asm/{NAME}"] == ["bytes=300-"]


def test_server_ignoring_range_restarts_cleanly(
    server: Server, signed: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    tarball, pub = publish(server, signed)
    out = tmp_path / "out"
    out.mkdir()
    (out / f"{NAME}.part").write_bytes(b"stale bytes from some other file")
    server.script.plan[f"/asm/{NAME}"] = ["ignore-range"]
    assert fetch(server, out, pub, quick(server)).read_bytes() == tarball.read_bytes()


def test_503_twice_then_200(server: Server, signed: tuple[Path, Path, Path], tmp_path: Path) -> None:
    tarball, pub = publish(server, signed)
    server.script.plan[f"/asm/{NAME}"] = ["503", "503"]
    sleeps: list[float] = []
    got = fetch(server, tmp_path / "out", pub, quick(server, sleep=sleeps.append))
    assert got.read_bytes() == tarball.read_bytes()
    assert sleeps == [0.25, 0.5]  # exponential backoff
    assert len([p for p, _ in server.script.seen if p == f"/asm/{NAME}"]) == 3


def test_503_forever_gives_up(server: Server, signed: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, pub = publish(server, signed)
    server.script.plan[f"/asm/{NAME}"] = ["503"] * 10
    with pytest.raises(NetworkError, match=r"HTTP 503 .*gave up after 2 retries") as err:
        fetch(server, tmp_path / "out", pub, quick(server, retries=2))
    assert err.value.exit_code == 5
    assert not (tmp_path / "out").exists()  # created when missing, removed again on failure


def test_redirect_within_https_is_followed(server: Server, signed: tuple[Path, Path, Path], tmp_path: Path) -> None:
    tarball, pub = publish(server, signed)
    server.script.plan[f"/asm/{NAME}"] = [f"redirect:{server.url}/asm/{NAME}?moved"]
    assert fetch(server, tmp_path / "out", pub, quick(server)).read_bytes() == tarball.read_bytes()


def test_requests_ca_bundle_env_is_honoured(
    server: Server, signed: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tarball, pub = publish(server, signed)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server.ca_file))
    got = fetch(server, tmp_path / "out", pub, quick(server, ca_bundle=None))
    assert got.read_bytes() == tarball.read_bytes()


def test_file_mirror(signed: tuple[Path, Path, Path], tmp_path: Path) -> None:
    tarball, _, pub = signed
    got = fetch_release(VERSION, base_url=tarball.parent.as_uri(), out=tmp_path / "out", key=pub)
    assert got.tarball.read_bytes() == tarball.read_bytes()
    with pytest.raises(InvalidInput, match="not found in the mirror folder"):
        fetch_release("9.9.9", base_url=tarball.parent.as_uri(), out=tmp_path / "out2", key=pub)


# --- failures -------------------------------------------------------------------------------------


def test_tampered_tarball_is_refused_and_removed(
    server: Server, signed: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    _, pub = publish(server, signed, tamper=True)
    out = tmp_path / "out"
    with pytest.raises(SignatureMismatch, match="the download was removed") as err:
        fetch(server, out, pub, quick(server))
    assert tree(out) == []
    # the cause, said about the URL the bytes came from (not the .part nor the final name)
    url = f"{server.url}/asm/{NAME}"
    assert err.value.subject == url
    assert re.fullmatch(r"signature does not verify with \S+; the download was removed", err.value.reason)
    assert err.value.message == f"{url}: {err.value.reason}"


@pytest.mark.parametrize("archive", ["older-release", "not-an-archive"])
def test_signed_bytes_that_are_not_the_release_asked_for(archive: str, tmp_path: Path) -> None:
    """The signature verifies, the archive is not istio-VERSION: WrongRelease about the URL, nothing kept."""
    old_tar, _, pub = make_signed_release(tmp_path / "old", "1.8.5-asm.1")
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    if archive == "older-release":
        shutil.copy(old_tar, mirror / NAME)
        why = "the archive's root folder is 'istio-1.8.5-asm.1', not 'istio-1.8.6-asm.8' of the release asked for"
    else:
        (mirror / NAME).write_bytes(b"signed, but not a tar.gz\n" * 40)
        why = "cannot read the archive's first member (ReadError)"
    openssl_sign(tmp_path / "old" / "keys" / "release.key", mirror / NAME, mirror / f"{NAME}.1.sig")
    with pytest.raises(WrongRelease) as err:
        fetch_release(VERSION, base_url=mirror.as_uri(), out=tmp_path / "out", key=pub)
    assert err.value.subject == f"{mirror.as_uri()}/{NAME}"
    assert err.value.reason.startswith(why) and err.value.reason.endswith("; the download was removed")
    assert err.value.exit_code == 1
    assert not (tmp_path / "out").exists()


def test_404_is_a_clear_error(server: Server, signed: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, pub = publish(server, signed)
    server.script.plan[f"/asm/{NAME}"] = ["404"]
    out = tmp_path / "out"
    with pytest.raises(NetworkError, match=r"404 Not Found \(check the version"):
        fetch(server, out, pub, quick(server))
    assert tree(out) == []
    assert len(server.script.seen) == 2  # the signature, then one try: a 404 is not retried


def test_slow_server_hits_the_read_timeout(server: Server, signed: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, pub = publish(server, signed)
    server.script.plan[f"/asm/{NAME}"] = ["slow", "slow"]
    with pytest.raises(NetworkError, match=r"read timed out .*gave up after 1 retries"):
        fetch(server, tmp_path / "out", pub, quick(server, read_timeout=0.3, retries=1))


def test_body_over_the_cap_without_a_length_is_cut_at_the_cap(
    server: Server, signed: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """A chunked body announces no size: the cap is checked on every read, nothing past it is kept."""
    tarball, _ = publish(server, signed)
    server.script.plan[f"/asm/{NAME}"] = ["chunked"]
    part = tmp_path / "x.part"
    with pytest.raises(InvalidInput, match=r"over the download cap of 500 bytes$"):
        download(f"{server.url}/asm/{NAME}", part, options=quick(server, max_size=500))
    assert part.stat().st_size <= 500
    assert part.read_bytes() == tarball.read_bytes()[: part.stat().st_size]


@pytest.mark.parametrize(("step", "reason"), [("reset", "connection dropped mid-body"), ("forged", "SSLError")])
def test_a_body_broken_off_mid_way_is_kept_and_resumed(
    server: Server, signed: tuple[Path, Path, Path], tmp_path: Path, step: str, reason: str
) -> None:
    """A TCP reset, or a TLS record that does not authenticate, in the middle of the body: the attempt
    fails with the reason urllib3 would give, the bytes before it stay in the .part, a re-run resumes."""
    tarball, _ = publish(server, signed)
    url = f"{server.url}/asm/{NAME}"
    server.script.plan[f"/asm/{NAME}"] = [step]
    part = tmp_path / "x.part"
    with pytest.raises(NetworkError) as err:
        download(url, part, options=quick(server, retries=0))
    assert err.value.message == f"{url}: {reason} (gave up after 0 retries)"
    kept = part.read_bytes()
    assert len(kept) < tarball.stat().st_size and tarball.read_bytes().startswith(kept)
    digests, size = download(url, part, options=quick(server))
    assert (digests["sha256"], size) == (hashlib.sha256(tarball.read_bytes()).digest(), tarball.stat().st_size)
    assert part.read_bytes() == tarball.read_bytes()
    assert server.script.seen[-1] == (f"/asm/{NAME}", f"bytes={len(kept)}-" if kept else None)


@pytest.mark.parametrize("plan", [[], ["chunked"], ["cut"]], ids=["plain", "chunked", "cut-and-resumed"])
def test_a_body_many_buffers_long(
    server: Server,
    signed: tuple[Path, Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    plan: list[str],
) -> None:
    """The body goes through a few reused buffers: shrunk to 64 bytes, each is filled, written, hashed
    and refilled many times over; the file and its digest come out exact, every byte hashed once."""
    monkeypatch.setattr(fetch_module, "CHUNK", 64)
    tarball, pub = publish(server, signed)
    server.script.plan[f"/asm/{NAME}"] = list(plan)
    counted = _counting(monkeypatch)
    got = fetch(server, tmp_path / "out", pub, quick(server))
    assert got.read_bytes() == tarball.read_bytes()
    assert tarball.stat().st_size > 64 * (fetch_module._Sink.DEPTH + 3)  # more bytes than the pool holds
    size, sig_size = tarball.stat().st_size, signed[1].stat().st_size
    assert sorted((c.name, c.fed) for c in counted) == sorted([("sha256", sig_size), ("sha256", size)])


def test_a_plain_body_is_read_straight_into_the_buffers(
    server: Server, signed: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 17's speed: a body of known length is read from the socket into the reused buffers, never
    through urllib3's read1 (a fresh allocation per TLS record); a chunked body still goes through it."""
    import urllib3.response

    calls: list[int] = []
    real = urllib3.response.HTTPResponse.read1

    def spy(self: urllib3.response.HTTPResponse, amt: int | None = None, decode_content: bool | None = None) -> bytes:
        calls.append(amt or 0)
        return real(self, amt, decode_content)

    monkeypatch.setattr(urllib3.response.HTTPResponse, "read1", spy)
    tarball, pub = publish(server, signed)
    assert fetch(server, tmp_path / "a", pub, quick(server)).read_bytes() == tarball.read_bytes()
    assert calls == []
    server.script.plan[f"/asm/{NAME}"] = ["chunked"]
    assert fetch(server, tmp_path / "b", pub, quick(server)).read_bytes() == tarball.read_bytes()
    assert calls


def test_https_to_http_redirect_is_refused(server: Server, signed: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, pub = publish(server, signed)
    server.script.plan[f"/asm/{NAME}"] = [f"redirect:http://127.0.0.1:9/asm/{NAME}"]
    out = tmp_path / "out"
    with pytest.raises(Refused, match="refusing redirect from https to http://"):
        fetch(server, out, pub, quick(server))
    assert tree(out) == []


def test_unknown_ca_fails_tls(server: Server, signed: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, pub = publish(server, signed)
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    with pytest.raises(NetworkError, match="certificate verify failed"):
        fetch(server, tmp_path / "out", pub, quick(server, ca_bundle=other))


def test_size_cap(server: Server, signed: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, pub = publish(server, signed)
    with pytest.raises(InvalidInput, match="over the download cap of 100"):
        fetch(server, tmp_path / "out", pub, quick(server, max_size=100))


def test_final_name_is_never_replaced(server: Server, signed: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, pub = publish(server, signed)
    out = tmp_path / "out"
    out.mkdir()
    (out / NAME).write_text("mine")
    with pytest.raises(Refused, match=f"{NAME}: already exists and does not match .*refusing to replace it"):
        fetch(server, out, pub, quick(server))
    assert (out / NAME).read_text() == "mine"
    assert tree(out) == [NAME]
    assert server.script.seen == [(f"/asm/{NAME}.1.sig", None)]  # only the signature: the tarball never came


def test_proxy_variables_are_honoured(
    server: Server, signed: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, pub = publish(server, signed)
    with socket.socket() as s:  # a port with nothing listening: the proxy is down
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{dead}")
    with pytest.raises(NetworkError, match=r"ProxyError|connection refused"):
        fetch(server, tmp_path / "out", pub, quick(server, retries=0))
    assert server.script.seen == []  # the request went to the (dead) proxy, not straight to the server


def test_download_reports_progress(server: Server, signed: tuple[Path, Path, Path], tmp_path: Path) -> None:
    tarball, _ = publish(server, signed)
    events: list[tuple[str, object]] = []

    class Recorder:
        def start(self, description: str, total: int | None) -> None:
            events.append(("start", total))

        def advance(self, amount: int) -> None:
            events.append(("advance", amount))

        def finish(self) -> None:
            events.append(("finish", None))

    url = f"{server.url}/asm/{NAME}"
    digests, size = download(url, tmp_path / "x.part", options=quick(server), progress=Recorder())
    assert size == tarball.stat().st_size
    assert digests["sha256"] == hashlib.sha256(tarball.read_bytes()).digest()
    assert events[0] == ("start", size) and events[-1] == ("finish", None)
    assert sum(int(a) for k, a in events if k == "advance") == size  # type: ignore[call-overload]


# --- the command line -----------------------------------------------------------------------------


def cli_fetch(server: Server, out: Path, pub: Path, *extra: str) -> tuple[int, str, str]:
    r = run_cli(
        "release",
        "fetch",
        VERSION,
        "--base-url",
        f"{server.url}/asm",
        "--ca-bundle",
        server.ca_file,
        "--key",
        pub,
        "--out",
        out,
        *extra,
    )
    return r.code, r.out, r.err


def test_cli_fetch_ok(server: Server, signed: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, pub = publish(server, signed)
    code, out, err = cli_fetch(server, tmp_path / "out", pub)
    assert (code, out.splitlines()[0]) == (0, "Verified OK"), err
    assert tree(tmp_path / "out") == [NAME, f"{NAME}.1.sig"]


def test_cli_fetch_json(server: Server, signed: tuple[Path, Path, Path], tmp_path: Path) -> None:
    import json

    tarball, pub = publish(server, signed)
    code, out, err = cli_fetch(server, tmp_path / "out", pub, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["verdict"] == "verified"
    assert doc["url"] == f"{server.url}/asm/{NAME}"
    assert doc["sha256"] == hashlib.sha256(tarball.read_bytes()).hexdigest()


def test_cli_fetch_tampered(server: Server, signed: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, pub = publish(server, signed, tamper=True)
    code, out, err = cli_fetch(server, tmp_path / "out", pub)
    assert code == 1
    assert out == "Verification Failure\n"
    assert err.startswith("airgap: error: ") and "the download was removed" in err
    assert len(err.splitlines()) == 1
    assert tree(tmp_path / "out") == []


def test_cli_fetch_404(server: Server, signed: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, pub = publish(server, signed)
    code, _, err = cli_fetch(server, tmp_path / "out", pub, "--platform", "osx")
    assert code == 5
    assert err == f"airgap: error: {server.url}/asm/istio-{VERSION}-osx.tar.gz.1.sig: 404 Not Found " + (
        "(check the version, --platform and --base-url)\n"
    )
    assert tree(tmp_path / "out") == []


def test_cli_fetch_read_timeout(server: Server, signed: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, pub = publish(server, signed)
    server.script.plan[f"/asm/{NAME}"] = ["slow"]
    code, _, err = cli_fetch(server, tmp_path / "out", pub, "--timeout", "0.3", "--retries", "0")
    assert code == 5
    assert "read timed out" in err and err.startswith("airgap: error: ")
    assert not (tmp_path / "out" / NAME).exists()


def test_cli_fetch_redirect_to_http(server: Server, signed: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, pub = publish(server, signed)
    server.script.plan[f"/asm/{NAME}.1.sig"] = ["redirect:http://127.0.0.1:9/x.sig"]
    code, _, err = cli_fetch(server, tmp_path / "out", pub)
    assert code == 4
    assert "refusing redirect from https to http://127.0.0.1:9/x.sig" in err
    assert tree(tmp_path / "out") == []


def test_cli_fetch_bad_inputs(tmp_path: Path, signed: tuple[Path, Path, Path]) -> None:
    pub = signed[2]
    r = run_cli("release", "fetch", VERSION, "--base-url", "http://mirror.invalid/asm", "--key", pub, "--out", tmp_path)
    assert r.code == 3 and "base URL must be https:// or file://" in r.err
    r = run_cli("release", "fetch", VERSION, "--platform", "plan9", "--key", pub, "--out", tmp_path)
    assert r.code == 3 and "unknown platform 'plan9'" in r.err
    r = run_cli("release", "fetch", VERSION, "--ca-bundle", tmp_path / "nope.pem", "--key", pub, "--out", tmp_path)
    assert r.code == 3 and "CA bundle not found" in r.err
    assert tree(tmp_path) == []


def test_fetch_module_keeps_requests_lazy() -> None:
    import subprocess
    import sys

    code = "import sys, airgap.cli, airgap.connected.fetch; assert 'requests' not in sys.modules, 'eager'"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ})


def test_complete_part_file_gets_416_and_is_used(
    server: Server, signed: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    tarball, pub = publish(server, signed)
    out = tmp_path / "out"
    out.mkdir()
    (out / f"{NAME}.part").write_bytes(tarball.read_bytes())  # a run killed just before the rename
    assert fetch(server, out, pub, quick(server)).read_bytes() == tarball.read_bytes()
    assert [r for p, r in server.script.seen if p == f"/asm/{NAME}"] == [f"bytes={tarball.stat().st_size}-"]
    assert tree(out) == [NAME, f"{NAME}.1.sig"]


def test_win_zip_from_a_file_mirror(tmp_path: Path) -> None:
    zipball, _, pub = make_signed_release(tmp_path / "mirror", platform="win")
    r = run_cli(
        "release",
        "fetch",
        VERSION,
        "--platform",
        "win",
        "--base-url",
        zipball.parent.as_uri(),
        "--key",
        pub,
        "--out",
        tmp_path / "out",
    )
    assert r.code == 0, r.err
    assert tree(tmp_path / "out") == [zipball.name, f"{zipball.name}.1.sig"]


# --- re-runs after a crash: whatever a stopped run left, a re-run finishes or refuses by name ------------


def test_rerun_after_a_complete_fetch_says_so(server: Server, signed: tuple[Path, Path, Path], tmp_path: Path) -> None:
    tarball, pub = publish(server, signed)
    out = tmp_path / "out"
    assert cli_fetch(server, out, pub)[0] == 0
    before = len(server.script.seen)
    code, stdout, err = cli_fetch(server, out, pub)
    assert code == 0, err
    assert stdout.splitlines()[0] == "Verified OK"
    assert f"{out / NAME}: already fetched and verified" in err
    assert len(server.script.seen) == before  # checked locally: no traffic at all
    assert (out / NAME).read_bytes() == tarball.read_bytes()
    assert tree(out) == [NAME, f"{NAME}.1.sig"]


def test_existing_pair_that_does_not_verify_is_refused(
    server: Server, signed: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    tarball, pub = publish(server, signed)
    out = tmp_path / "out"
    out.mkdir()
    data = tarball.read_bytes()
    bad = data[:-1] + bytes([data[-1] ^ 0x01])
    (out / NAME).write_bytes(bad)
    shutil.copy(signed[1], out / f"{NAME}.1.sig")
    code, _, err = cli_fetch(server, out, pub)
    assert code == 4
    line = one_error_line(err, f"{out / NAME} and {NAME}.1.sig already exist but do not verify together")
    assert "refusing to replace them" in line
    assert (out / NAME).read_bytes() == bad  # untouched
    assert tree(out) == [NAME, f"{NAME}.1.sig"]
    assert server.script.seen == []


def test_existing_pair_that_does_not_verify_says_why(
    server: Server, signed: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """Library: Refused (the final names are not replaced), caused by the SignatureMismatch of the pair,
    whose reason (without the path) is what the message says in brackets."""
    tarball, pub = publish(server, signed)
    out = tmp_path / "out"
    out.mkdir()
    data = tarball.read_bytes()
    (out / NAME).write_bytes(data[:-1] + bytes([data[-1] ^ 0x01]))
    shutil.copy(signed[1], out / f"{NAME}.1.sig")
    with pytest.raises(Refused) as err:
        fetch(server, out, pub, quick(server))
    cause = err.value.__cause__
    assert isinstance(cause, SignatureMismatch) and cause.subject == str(out / NAME)
    assert err.value.message.startswith(
        f"{out / NAME} and {NAME}.1.sig already exist but do not verify together ({cause.reason}); "
    )
    assert server.script.seen == []


def test_crash_after_the_tarball_was_published(server: Server, signed: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """Stopped between the link and the signature: NAME (and its .part, the same file) but no .1.sig."""
    tarball, pub = publish(server, signed)
    out = tmp_path / "out"
    out.mkdir()
    (out / f"{NAME}.part").write_bytes(tarball.read_bytes())
    os.link(out / f"{NAME}.part", out / NAME)
    code, stdout, err = cli_fetch(server, out, pub)
    assert code == 0, err
    assert stdout.splitlines()[0] == "Verified OK"
    assert "completed the pair" in err
    assert server.script.seen == [(f"/asm/{NAME}.1.sig", None)]  # the tarball was not downloaded again
    assert tree(out) == [NAME, f"{NAME}.1.sig"]
    assert (out / f"{NAME}.1.sig").read_bytes() == signed[1].read_bytes()
    assert run_cli("release", "verify", out / NAME, "--key", pub).code == 0


def test_lone_signature_that_matches_is_completed(
    server: Server, signed: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """A run of an older airgap (signature first) stopped before the tarball: the same .1.sig is kept."""
    tarball, pub = publish(server, signed)
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(signed[1], out / f"{NAME}.1.sig")
    code, _, err = cli_fetch(server, out, pub)
    assert code == 0, err
    assert "completed the pair with the existing" in err
    assert (out / NAME).read_bytes() == tarball.read_bytes()
    assert tree(out) == [NAME, f"{NAME}.1.sig"]
    assert run_cli("release", "verify", out / NAME, "--key", pub).code == 0


def test_lone_signature_that_differs_is_refused(
    server: Server, signed: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    _, pub = publish(server, signed)
    out = tmp_path / "out"
    out.mkdir()
    (out / f"{NAME}.1.sig").write_bytes(b"someone else's signature")
    code, _, err = cli_fetch(server, out, pub)
    assert code == 4
    one_error_line(err, f"{out / NAME}.1.sig: already exists and differs from {server.url}/asm/{NAME}.1.sig")
    assert (out / f"{NAME}.1.sig").read_bytes() == b"someone else's signature"
    assert tree(out) == [f"{NAME}.1.sig"]  # no .part: refused before the tarball download
    assert [p for p, _ in server.script.seen] == [f"/asm/{NAME}.1.sig"]


def test_cli_lone_tarball_that_differs_is_refused(
    server: Server, signed: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    tarball, pub = publish(server, signed)
    out = tmp_path / "out"
    out.mkdir()
    (out / NAME).write_bytes(tarball.read_bytes()[:-10])  # e.g. a truncated copy from elsewhere
    code, _, err = cli_fetch(server, out, pub)
    assert code == 4
    one_error_line(err, f"{out / NAME}: already exists and does not match", "move it away")
    assert (out / NAME).read_bytes() == tarball.read_bytes()[:-10]
    assert tree(out) == [NAME]


def test_final_name_that_is_a_symlink_is_refused(
    server: Server, signed: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    _, pub = publish(server, signed)
    out = tmp_path / "out"
    out.mkdir()
    (out / NAME).symlink_to(signed[0])
    code, _, err = cli_fetch(server, out, pub)
    assert code == 4
    one_error_line(err, f"{out / NAME}: exists and is not a regular file")
    assert tree(out) == [NAME] and server.script.seen == []


# --- two fetches at once ----------------------------------------------------------------------------------


def test_lock_waits_for_the_holder(tmp_path: Path) -> None:
    """Two holders in one process (flock locks per open file): the second says it waits, then gets it."""
    notes: list[str] = []
    waiting = threading.Event()
    order: list[str] = []

    def note(msg: str) -> None:
        notes.append(msg)
        waiting.set()

    def second() -> None:
        with fetch_lock(tmp_path, NAME, note):
            order.append("second")

    with fetch_lock(tmp_path, NAME, notes.append) as lock:
        assert lock.stat().st_mode & 0o777 == 0o600
        t = threading.Thread(target=second)
        t.start()
        assert waiting.wait(30), "the second holder never reported waiting"
        order.append("first")
    t.join(30)
    assert order == ["first", "second"]
    assert notes == [f"waiting for another fetch of {NAME} (lock: {tmp_path / f'.{NAME}.lock'})"]
    assert tree(tmp_path) == []  # the lock file goes with its last holder


def test_stale_lock_file_does_not_block(tmp_path: Path) -> None:
    (tmp_path / f".{NAME}.lock").write_bytes(b"")  # left by a killed run: its lock died with it
    notes: list[str] = []
    with fetch_lock(tmp_path, NAME, notes.append):
        pass
    assert notes == [] and tree(tmp_path) == []


def test_lock_path_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    (tmp_path / f".{NAME}.lock").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(InvalidInput, match="cannot open the lock file"), fetch_lock(tmp_path, NAME):
        pass
    assert not (tmp_path / "elsewhere").exists()


def test_two_processes_fetching_at_once(server: Server, signed: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """Real processes against a server that holds the first tarball body until the second is waiting."""
    import subprocess
    import sys

    from tests.helpers import REPO

    tarball, pub = publish(server, signed)
    server.script.plan[f"/asm/{NAME}"] = ["hold"]
    out = tmp_path / "out"
    args = [
        sys.executable, "-m", "airgap", "release", "fetch", VERSION, "--base-url", f"{server.url}/asm",
        "--ca-bundle", str(server.ca_file), "--key", str(pub), "--out", str(out),
    ]  # fmt: skip

    def start() -> subprocess.Popen[str]:
        return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)

    first = start()
    second: subprocess.Popen[str] | None = None
    try:
        for _ in range(600):  # wait (up to 60 s) until the first is inside the tarball download
            if any(p == f"/asm/{NAME}" for p, _ in server.script.seen) or first.poll() is not None:
                break
            time.sleep(0.1)
        assert first.poll() is None, first.communicate()
        assert (out / f".{NAME}.lock").stat().st_mode & 0o777 == 0o600
        second = start()
        assert second.stderr is not None
        line = second.stderr.readline()  # blocks until the second reports waiting (or ends: "")
        assert line.startswith(f"waiting for another fetch of {NAME}"), line + second.communicate()[1]
    finally:
        server.script.gate.set()
        out1, err1 = first.communicate(timeout=120)
        out2, err2 = second.communicate(timeout=120) if second is not None else ("", "")
    assert first.returncode == 0, err1
    assert out1.splitlines()[0] == "Verified OK"
    assert second.returncode == 0, err2
    assert out2.splitlines()[0] == "Verified OK"
    assert "already fetched and verified" in err2
    assert [p for p, _ in server.script.seen].count(f"/asm/{NAME}") == 1  # downloaded once
    assert tree(out) == [NAME, f"{NAME}.1.sig"]
    assert (out / NAME).read_bytes() == tarball.read_bytes()
    assert run_cli("release", "verify", out / NAME, "--key", pub).code == 0


def test_stopped_while_writing_the_signature_leaves_a_verified_tarball(
    server: Server, signed: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Publication order: the tarball (verified) is in place before the signature is written."""
    import airgap.connected.fetch as fetch_mod

    tarball, pub = publish(server, signed)
    out = tmp_path / "out"

    def killed(path: Path, data: bytes) -> None:
        raise KeyboardInterrupt("killed while writing the signature")

    monkeypatch.setattr(fetch_mod, "write_new", killed)
    with pytest.raises(KeyboardInterrupt):
        fetch(server, out, pub, quick(server))
    assert tree(out) == [NAME]  # the tarball only; no .part, and the lock file went with the run
    assert (out / NAME).read_bytes() == tarball.read_bytes()
    monkeypatch.undo()
    got = fetch_release(VERSION, base_url=f"{server.url}/asm", out=out, key=pub, options=quick(server))
    assert got.status == "completed"
    assert tree(out) == [NAME, f"{NAME}.1.sig"]
    assert [p for p, _ in server.script.seen].count(f"/asm/{NAME}") == 1


@pytest.mark.parametrize("kind", ["symlink", "dangling", "hardlink"])
def test_fault_2_planted_part_over_https_is_never_written_through(
    kind: str, server: Server, signed: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """Issue 23 fault 2, as reported: ``ln -s victim OUT/FILE.part`` then fetch (and a hard link)."""
    _tarball, pub = publish(server, signed)
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim"
    if kind != "dangling":
        victim.write_bytes(b"keep")
    part = out / f"{NAME}.part"
    if kind == "hardlink":
        os.link(victim, part)
    else:
        part.symlink_to(victim)
    with pytest.raises(AirgapError, match="not a regular file"):
        fetch(server, out, pub, quick(server))
    assert (victim.read_bytes() == b"keep") if kind != "dangling" else not victim.exists()
    assert not (out / NAME).exists() and not (out / NAME).is_symlink()


# --- issue 23, fault 14: --retries bounds the attempts per file; a trickle is too slow -------------------


def test_fault_14_retries_bound_every_attempt_and_a_trickle_ends_in_exit_5(
    server: Server, signed: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """A server that ignores Range, promises the whole file and sends 100 bytes is asked exactly
    retries+1 times, with the backoff after every attempt; one byte every 1.5 s (which the per-read
    timeout never catches) fails on the low-speed limit, exit 5."""
    _, pub = publish(server, signed)
    path = f"/asm/{NAME}"
    server.script.plan[path] = ["lie"] * 50
    sleeps: list[float] = []
    with pytest.raises(NetworkError, match=r"connection dropped mid-body .*gave up after 3 retries") as err:
        fetch(server, tmp_path / "out", pub, quick(server, retries=3, sleep=sleeps.append))
    assert err.value.exit_code == 5
    assert [p for p, _ in server.script.seen].count(path) == 4  # every attempt got 100 bytes: still bounded
    assert sleeps == [0.25, 0.5, 1.0]  # and each was followed by the backoff
    assert tree(tmp_path / "out") == [f"{NAME}.part"]  # kept for a later resume, never published
    assert (tmp_path / "out" / f"{NAME}.part").stat().st_size == 100
    server.script.seen.clear()
    server.script.plan[path] = ["trickle"] * 5
    r = run_cli(
        "release", "fetch", VERSION, "--base-url", f"{server.url}/asm", "--ca-bundle", server.ca_file, "--key", pub,
        "--out", tmp_path / "out", "--timeout", "5", "--retries", "0", "--speed-limit", "1024", "--speed-time", "1",
    )  # fmt: skip
    assert r.code == 5
    assert one_error_line(r.err, alone=False) == (
        f"airgap: error: {server.url}/asm/{NAME}: slower than 1024 bytes/s for 1 s (--speed-limit/--speed-time) "
        "(gave up after 0 retries)"
    )
    assert server.script.seen == [(f"{path}.1.sig", None), (path, "bytes=100-")]
    assert tree(tmp_path / "out") == [f"{NAME}.part"]


# --- issue 23, fault 15: credentials in a --base-url are never shown or kept ------------------------------


def test_fault_15_userinfo_in_the_base_url_appears_nowhere(
    server: Server, signed: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """--base-url https://alice:S3cretPW@host/asm: the error line, --json (success and failure), notes,
    the files kept and RELEASE.json show https://host/asm, never the user-info."""
    import json

    _, pub = publish(server, signed)
    host = server.url.removeprefix("https://")
    base = f"https://alice:S3cretPW@{host}/asm"
    out = tmp_path / "out"
    common = ("--ca-bundle", server.ca_file, "--key", pub, "--out", out)
    seen: list[str] = []
    r = run_cli("release", "fetch", "9.9.9", "--base-url", base, *common)  # 404
    assert r.code == 5
    assert one_error_line(r.err) == (
        f"airgap: error: {server.url}/asm/istio-9.9.9-linux-amd64.tar.gz.1.sig: 404 Not Found "
        "(check the version, --platform and --base-url)"
    )
    seen += [r.out, r.err]
    r = run_cli("release", "fetch", "9.9.9", "--base-url", base, *common, "--json")
    assert r.code == 5
    seen += [r.out, r.err]
    r = run_cli("release", "fetch", VERSION, "--base-url", base, *common, "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["url"] == f"{server.url}/asm/{NAME}"
    seen += [r.out, r.err]
    r = run_cli("release", "fetch", VERSION, "--base-url", base, *common)  # already fetched: a note
    assert r.code == 0 and "already fetched and verified" in r.err
    seen += [r.out, r.err]
    r = run_cli("release", "extract", out / NAME, "--key", pub, "--out", tmp_path / "rel", "--json")
    assert r.code == 0, r.err
    seen += [r.out, r.err]
    publish(server, signed, tamper=True)
    r = run_cli("release", "fetch", VERSION, "--base-url", base, *common[:-1], tmp_path / "again", "--json")
    assert r.code == 1 and json.loads(r.out)["error"].startswith(f"{server.url}/asm/{NAME}: ")
    seen += [r.out, r.err]
    state = Path(os.environ["AIRGAP_STATE_DIR"])
    files = [p.read_bytes() for d in (tmp_path, state) for p in d.rglob("*") if p.is_file()]
    assert (tmp_path / "rel" / "RELEASE.json").is_file() and (state / "releases.json").is_file()
    assert not any("S3cretPW" in text or "alice" in text for text in seen)
    assert not any(b"S3cretPW" in data for data in files)
