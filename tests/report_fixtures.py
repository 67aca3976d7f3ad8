"""Fixtures for the auditor's report tests: a logged ceremony, jump-host history, PNG and HTML readers."""

from __future__ import annotations

import datetime as dt
import html.parser
import json
import re
import shutil
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import run_cli

EC = ("--key-type", "ecdsa-p256")
HOSTILE_CN = "<img src=x onerror=alert(1)>"
# The report's --now in these tests: 84 days after today's midnight (the certificates are made today), so
# the 30-day CRL is overdue while the 365-day intermediates and the 200-day rotated one are valid.
NOW = (dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0) + dt.timedelta(days=84)).strftime(
    "%Y-%m-%dT%H:%M:%SZ"
)


@dataclass(frozen=True)
class Ceremony:
    keys: Path
    pki: Path
    bundle_entry: dict[str, object]  # the log's `bundle` entry for c1 (params + seq + hash)
    head_at_bundle: str

    @property
    def officer_pub(self) -> Path:
        return self.keys / "officer.pub"


def _ceremony(base: Path, passfile: Path) -> Ceremony:
    """keys new; ca init (hostile CN); ca issue c1 c2; bundle create c1; ca revoke c2; ca rotate c1 — logged."""
    keys, pki = base / "keys", base / "pki"
    pf = ("--passphrase-file", passfile)
    env = {"AIRGAP_LOG_KEY": str(keys / "officer.key")}
    steps = [
        ("keys", "new", "officer", "--out", keys, *pf),
        ("ca", "init", "--dir", pki, *EC, *pf, "--cn", HOSTILE_CN, "--days", "3650"),
        ("ca", "issue", "c1", "c2", "--dir", pki, *EC, *pf, "--workers", "1", "--days", "365"),
        ("bundle", "create", "c1", "--dir", pki, "--sign-key", keys / "officer.key", "--no-encrypt",
         "--out", base / "c1.bundle", *pf),
        ("ca", "revoke", "c2", "--reason", "keyCompromise", "--dir", pki, *pf, "--next-update-days", "30"),
        ("ca", "rotate", "c1", "--dir", pki, "--days", "200", *pf),
    ]  # fmt: skip
    for args in steps:
        r = run_cli(*args, env=env if args[0] != "keys" else None)
        assert r.code == 0, (args, r.err)
    entries = [json.loads(line) for line in (pki / "ceremony.log").read_bytes().splitlines()]
    idx = next(i for i, e in enumerate(entries) if e["act"] == "bundle")
    return Ceremony(keys, pki, {**entries[idx]["params"], "seq": idx + 1}, str(entries[idx]["params"]["ceremony_head"]))


@pytest.fixture(scope="session")
def _report_ceremony(tmp_path_factory: pytest.TempPathFactory, passfile: Path) -> Ceremony:
    return _ceremony(tmp_path_factory.mktemp("report-ceremony"), passfile)


@pytest.fixture(name="ceremony")
def ceremony_fixture(_report_ceremony: Ceremony, tmp_path: Path) -> Ceremony:
    """A fresh copy of the logged ceremony (officer key in ``keys``, PKI in ``pki``)."""
    c = _report_ceremony
    shutil.copytree(c.pki, tmp_path / "pki")
    shutil.copytree(c.keys, tmp_path / "keys")
    return Ceremony(tmp_path / "keys", tmp_path / "pki", c.bundle_entry, c.head_at_bundle)


def import_fields(c: Ceremony, **override: object) -> dict[str, object]:
    """A ``bundle-import`` event as the jump host records it for the ceremony's c1 bundle."""
    b = c.bundle_entry
    fields: dict[str, object] = {
        "cluster": b["cluster"],
        "context": "emu-1",
        "bundle_id": b["bundle_id"],
        "sequence": b["sequence"],
        "signer": b["signer_key_id"],
        "ceremony_head": b["ceremony_head"],
        "ca_fingerprint": None,
        "forced_split": None,
    }
    fields.update(override)
    return fields


# -- the page -------------------------------------------------------------------------------------

_URL_RE = re.compile(r"url\s*\(", re.IGNORECASE)
_REF_ATTRS = {"src", "href", "xlink:href", "srcset", "action", "formaction", "poster", "data", "background"}


class PageScan(html.parser.HTMLParser):
    """Collects what a page would load or run: reference attributes, <script>, <link>, style url()."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.refs: list[tuple[str, str, str]] = []
        self.scripts = 0
        self.event_handlers: list[str] = []
        self.title = ""
        self.h1: list[str] = []
        self._in: list[str] = []
        self.style_text = ""
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self._in.append(tag)
        if tag in ("script", "link", "iframe", "object", "embed", "img", "image", "use", "base", "meta"):
            if tag == "meta" and not any(k == "http-equiv" for k, _ in attrs):
                pass
            elif tag == "script":
                self.scripts += 1
            else:
                self.refs.append((tag, tag, ""))
        for k, val in attrs:
            if k in _REF_ATTRS:
                self.refs.append((tag, k, val or ""))
            if k.startswith("on"):
                self.event_handlers.append(f"{tag} {k}")
            if k == "style" and val and _URL_RE.search(val):
                self.refs.append((tag, "style url()", val))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        while self._in and self._in.pop() != tag:
            pass

    def handle_data(self, data: str) -> None:
        where = self._in[-1] if self._in else ""
        if where == "title":
            self.title += data
        elif where == "h1":
            self.h1.append(data)
        elif where == "style":
            self.style_text += data
        self.text.append(data)


def scan_page(page: bytes) -> PageScan:
    scan = PageScan()
    scan.feed(page.decode("utf-8"))
    scan.close()
    assert not scan._in or scan._in == ["html"] or scan._in == [], scan._in
    return scan


# -- PNG (zlib + struct, no dependency) -----------------------------------------------------------


@dataclass(frozen=True)
class Image:
    width: int
    height: int
    channels: int
    rows: list[bytes]

    def pixel(self, x: int, y: int) -> tuple[int, int, int]:
        i = x * self.channels
        r = self.rows[y]
        return r[i], r[i + 1], r[i + 2]


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def decode_png(data: bytes) -> Image:
    """An 8-bit RGB or RGBA, non-interlaced PNG (what Chromium's --screenshot writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    width = height = channels = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if f == 1:
                line[i] = (line[i] + a) & 0xFF
            elif f == 2:
                line[i] = (line[i] + b) & 0xFF
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif f == 4:
                line[i] = (line[i] + _paeth(a, b, c)) & 0xFF
        rows.append(bytes(line))
        prev = line
    return Image(width, height, channels, rows)


def hex_rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def runs_of(img: Image, rgb: tuple[int, int, int]) -> dict[int, tuple[int, int]]:
    """Per row y: (first x, last x) of the pixels of exactly ``rgb``."""
    out: dict[int, tuple[int, int]] = {}
    for y in range(img.height):
        xs = [x for x in range(img.width) if img.pixel(x, y) == rgb]
        if xs:
            out[y] = (xs[0], xs[-1])
    return out
