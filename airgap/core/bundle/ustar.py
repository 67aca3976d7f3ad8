"""The strict ustar reader and the writer of bundles (``bundles/SPEC.md`` section 2).

The reader accepts exactly what the writer makes: regular-file members with safe names, sizes within
the limits, nothing after the two zero blocks but zeros. It parses; it does not trust.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from typing import IO

from airgap.core.bundle.manifest import CA_KEY, MANIFEST_NAME, MAX_USTAR_SIZE, SIGNATURE_NAME, MemberEntry
from airgap.core.hashing import Digests, copy_hashed
from airgap.core.limits import MAX_SIGNATURE, Limits
from airgap.core.names import unsafe_member_name
from airgap.core.progress import NO_PROGRESS, Progress
from airgap.errors import InvalidInput, VerificationError

BLOCK = 512
CHUNK = 1024 * 1024
_NAME_CHARS = re.compile(r"^[A-Za-z0-9._/-]+$")
_TYPE_NAMES = {
    b"1": "hard link",
    b"2": "symbolic link",
    b"3": "character device",
    b"4": "block device",
    b"5": "directory",
    b"6": "FIFO",
    b"7": "contiguous file",
    b"x": "pax extended header",
    b"g": "pax global header",
    b"L": "GNU long name",
    b"K": "GNU long link name",
    b"S": "GNU sparse file",
}


# -- ustar writing ---------------------------------------------------------------------------------
def _octal(value: int, width: int) -> bytes:
    """``width - 1`` zero-padded octal digits and a NUL."""
    return format(value, "o").zfill(width - 1).encode("ascii") + b"\0"


def ustar_header(name: str, size: int, *, typeflag: bytes = b"0", linkname: str = "", mode: int = 0o644) -> bytes:
    """One 512-byte POSIX ustar header with the fixed fields the format requires (uid/gid/mtime 0).

    Tests use ``typeflag``/``linkname`` to build hostile archives; bundles only use regular files.
    """
    raw_name = name.encode("utf-8")
    raw_link = linkname.encode("utf-8")
    if len(raw_name) > 99 or len(raw_link) > 99:
        raise InvalidInput(f"member name {name!r} is too long for the bundle format (max 99 bytes)")
    if not 0 <= size <= MAX_USTAR_SIZE:
        raise InvalidInput(f"member {name!r} is too large for the bundle format (max {MAX_USTAR_SIZE} bytes)")
    h = bytearray(BLOCK)
    h[0 : len(raw_name)] = raw_name
    h[100:108] = _octal(mode, 8)
    h[108:116] = _octal(0, 8)
    h[116:124] = _octal(0, 8)
    h[124:136] = _octal(size, 12)
    h[136:148] = _octal(0, 12)
    h[148:156] = b" " * 8
    h[156:157] = typeflag
    h[157 : 157 + len(raw_link)] = raw_link
    h[257:263] = b"ustar\0"
    h[263:265] = b"00"
    h[329:337] = _octal(0, 8)
    h[337:345] = _octal(0, 8)
    h[148:156] = _octal(sum(h), 7) + b" "
    return bytes(h)


def member_mode(name: str) -> int:
    """The mode the writer gives a member: 0600 for a plaintext CA key (``tar xf`` keeps it private), else 0644."""
    return 0o600 if name == CA_KEY else 0o644


# The ustar header's fields (offset, end, name), for saying which one differs.
HEADER_FIELDS = (
    (0, 100, "name"),
    (100, 108, "mode"),
    (108, 116, "uid"),
    (116, 124, "gid"),
    (124, 136, "size"),
    (136, 148, "mtime"),
    (148, 156, "chksum"),
    (156, 157, "typeflag"),
    (157, 257, "linkname"),
    (257, 263, "magic"),
    (263, 265, "version"),
    (265, 297, "uname"),
    (297, 329, "gname"),
    (329, 337, "devmajor"),
    (337, 345, "devminor"),
    (345, 500, "prefix"),
    (500, 512, "the header's last 12 bytes"),
)


def check_canonical_header(block: bytes, name: str, size: int, *, pos: int, source: str) -> None:
    """The header must be, byte for byte, the one :func:`ustar_header` writes for this member
    (exit 1 otherwise, naming the field): header bytes are outside the signature, so none may vary."""
    want = ustar_header(name, size, mode=member_mode(name))
    if block != want:
        # the checksum differs whenever another field does: name that field, the checksum only if alone
        field = next((f for a, b, f in HEADER_FIELDS if f != "chksum" and block[a:b] != want[a:b]), "chksum")
        raise VerificationError(
            f"{source}: member {name!a}: tar header field {field} (at offset {pos}) differs from what the bundle "
            "writer makes; header bytes are not signed, so no byte of them may change"
        )


def padding_for(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


class BundleWriter:
    """Streams members into a bundle archive, hashing each byte once as it is written.

    The caller writes members, then :meth:`finish` with the manifest bytes and their signature.
    The writer never reads back what it wrote.
    """

    def __init__(self, out: IO[bytes], *, progress: Progress = NO_PROGRESS) -> None:
        self._out = out
        self._progress = progress
        self._names: set[str] = set()

    def _claim(self, name: str) -> None:
        if name in self._names:
            raise InvalidInput(f"member {name!r} added twice")
        self._names.add(name)

    def add_bytes(self, name: str, data: bytes, *, encrypted: bool = False) -> MemberEntry:
        self._claim(name)
        # A plaintext key (--no-encrypt) is mode 0600 in the archive, so 'tar xf' never makes it world-readable.
        self._out.write(ustar_header(name, len(data), mode=member_mode(name)))
        self._out.write(data)
        self._out.write(padding_for(len(data)))
        return MemberEntry(name, len(data), hashlib.sha256(data).hexdigest(), encrypted)

    def add_stream(self, name: str, src: IO[bytes], size: int, *, source: str) -> MemberEntry:
        """Copy exactly ``size`` bytes from ``src``; a source that grows or shrinks is refused.

        Each byte is read and hashed once; a worker writes while the next chunk is hashed
        (:func:`~airgap.core.hashing.copy_hashed`)."""
        self._claim(name)
        self._out.write(ustar_header(name, size, mode=member_mode(name)))
        digests = Digests(["sha256"])
        fd, start = src.fileno(), src.tell()
        if copy_hashed(fd, start, size, self._out, digests, progress=self._progress) != size:
            raise InvalidInput(f"{source}: file shrank while it was being read")
        if os.pread(fd, 1, start + size):
            raise InvalidInput(f"{source}: file grew while it was being read")
        self._out.write(padding_for(size))
        return MemberEntry(name, size, digests.hexdigest(), False)

    def finish(self, manifest_bytes: bytes, signature: bytes) -> None:
        self._claim(MANIFEST_NAME)
        self._out.write(ustar_header(MANIFEST_NAME, len(manifest_bytes)))
        self._out.write(manifest_bytes + padding_for(len(manifest_bytes)))
        self._claim(SIGNATURE_NAME)
        self._out.write(ustar_header(SIGNATURE_NAME, len(signature)))
        self._out.write(signature + padding_for(len(signature)))
        self._out.write(b"\0" * (2 * BLOCK))


# -- ustar reading ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class TarEntry:
    """A regular-file entry found by :func:`scan_archive`: its name, size and data offset."""

    name: str
    size: int
    offset: int


def _parse_octal(field_bytes: bytes, *, what: str, source: str) -> int:
    """A numeric header field in its one allowed form: ``width-1`` octal digits then NUL.

    The checksum field is 6 digits, NUL, space (as POSIX, GNU tar and Python write it). One
    spelling per value means no byte of a header can change without changing what it says.
    """
    if field_bytes[:1] and field_bytes[0] & 0x80:
        raise InvalidInput(f"{source}: {what} uses base-256, which the bundle format does not allow")
    digits, tail = (field_bytes[:6], field_bytes[6:]) if what == "checksum" else (field_bytes[:-1], field_bytes[-1:])
    if tail != (b"\0 " if what == "checksum" else b"\0") or any(c not in b"01234567" for c in digits):
        raise InvalidInput(f"{source}: malformed tar header ({what})")
    return int(digits, 8)


def _read_exact(fh: IO[bytes], n: int, *, source: str) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise InvalidInput(f"{source}: truncated archive")
    return data


def _check_name(raw: bytes, *, source: str) -> str:
    """Step 3 for one entry: a safe, relative, normalised name (duplicates are checked by the caller)."""
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{source}: a member name is not valid UTF-8") from exc
    shown = ascii(name)
    why = unsafe_member_name(name)  # the one path-safety rule, then the bundle format's own
    if why == "empty":
        raise InvalidInput(f"{source}: a member has an empty name")
    if why == "absolute" and name.startswith("/"):
        raise InvalidInput(f"{source}: member {shown} has an absolute path")
    if why == "dotdot":
        raise InvalidInput(f"{source}: member {shown} escapes the bundle ('..')")
    parts = name.split("/")
    if why is not None or not _NAME_CHARS.match(name) or any(p in ("", ".") for p in parts):
        raise InvalidInput(f"{source}: member {shown} has a name the bundle format does not allow")
    return name


def scan_archive(fh: IO[bytes], file_size: int, *, limits: Limits, source: str) -> list[TarEntry]:
    """Walk every header of a bundle archive without reading member data (steps 1 to 3).

    Per entry, in order: header structure (checksum, ustar magic), size caps (1),
    type (2, regular files only), name (3), then every other header byte equal to the writer's
    (:func:`check_canonical_header`, exit 1: a link name, a prefix, another version, mode, owner or
    time). Then duplicates (3) and the end of the archive: two
    zero blocks and nothing but zero bytes after them. Padding after each member must be zero.
    """
    entries: list[TarEntry] = []
    pos = 0
    fh.seek(0)
    while True:
        if pos + BLOCK > file_size:
            raise InvalidInput(f"{source}: truncated archive (no end-of-archive marker)")
        block = _read_exact(fh, BLOCK, source=source)
        if block == bytes(BLOCK):
            _check_end(fh, pos, file_size, source=source)
            break
        name, size = _check_header(block, pos, len(entries), limits, source=source)
        data_at = pos + BLOCK
        end = data_at + size
        padded = end + (-size % BLOCK)
        if padded > file_size:
            raise InvalidInput(f"{source}: truncated archive (member {name!a} runs past the end)")
        fh.seek(end)
        pad = _read_exact(fh, padded - end, source=source)
        if pad.count(0) != len(pad):
            raise InvalidInput(f"{source}: non-zero padding after member {name!a}")
        entries.append(TarEntry(name, size, data_at))
        pos = padded
    seen: set[str] = set()
    for e in entries:
        if e.name in seen:
            raise InvalidInput(f"{source}: member {e.name!a} appears twice")
        seen.add(e.name)
    return entries


def _check_end(fh: IO[bytes], pos: int, file_size: int, *, source: str) -> None:
    """The end of the archive at ``pos``: a second zero block, then nothing but zero bytes."""
    second = _read_exact(fh, BLOCK, source=source) if pos + 2 * BLOCK <= file_size else b""
    if second != bytes(BLOCK):
        raise InvalidInput(f"{source}: truncated or malformed end-of-archive marker")
    rest = file_size - pos - 2 * BLOCK
    while rest > 0:
        chunk = fh.read(min(CHUNK, rest))
        if not chunk:
            raise InvalidInput(f"{source}: archive changed while it was being read")
        if chunk.count(0) != len(chunk):
            raise InvalidInput(f"{source}: data after the end-of-archive marker")
        rest -= len(chunk)


def _check_header(block: bytes, pos: int, count: int, limits: Limits, *, source: str) -> tuple[str, int]:
    """One header at ``pos`` (``count`` entries before it): structure, then steps 1-3, then every
    byte against the writer's header. Its member's (name, size)."""
    stored = _parse_octal(block[148:156], what="checksum", source=source)
    if stored != sum(block[:148]) + 8 * 32 + sum(block[156:]):
        raise InvalidInput(f"{source}: tar header checksum mismatch at offset {pos}")
    if block[257:263] != b"ustar\x00":  # the version, like every other byte, is compared below (exit 1)
        raise InvalidInput(f"{source}: not a POSIX ustar header at offset {pos}")
    name_field = block[0:100]
    raw_name = name_field.split(b"\0", 1)[0]
    if name_field[len(raw_name) :].count(0) != 100 - len(raw_name):
        raise InvalidInput(f"{source}: malformed member name at offset {pos}")
    typeflag = block[156:157]
    size = _parse_octal(block[124:136], what="size", source=source)
    # step 1: size caps
    if count >= limits.max_members + 2:
        raise InvalidInput(f"{source}: more than {limits.max_members} members")
    cap = limits.max_member_size
    if raw_name == MANIFEST_NAME.encode():
        cap = limits.max_manifest_size
    elif raw_name == SIGNATURE_NAME.encode():
        cap = MAX_SIGNATURE
    if size > cap:
        raise InvalidInput(f"{source}: member {raw_name.decode('utf-8', 'replace')!a} is over the size limit")
    # step 2: member types
    if typeflag not in (b"0", b"\0"):
        kind = _TYPE_NAMES.get(typeflag, f"type {typeflag.decode('latin-1')!a} entry")
        raise InvalidInput(
            f"{source}: member {raw_name.decode('utf-8', 'replace')!a} is a {kind}; only regular files are allowed"
        )
    # step 3: names
    name = _check_name(raw_name, source=source)
    # every other byte: exactly the writer's header for this member (mode, mtime, uid/gid, uname/gname...)
    check_canonical_header(block, name, size, pos=pos, source=source)
    return name, size


def read_member(fh: IO[bytes], entry: TarEntry, *, source: str) -> bytes:
    fh.seek(entry.offset)
    return _read_exact(fh, entry.size, source=source)
