"""The committed locks: every pin hashed, and they still satisfy pyproject.toml (make lock refreshes)."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts" / "kit"))
from build_kit import KitError, Pin, parse_lock  # noqa: E402

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _pins(name: str) -> dict[str, Pin]:
    return {p.name: p for p in parse_lock((REPO / "requirements" / name).read_text())}


def _check(reqs: list[str], pins: dict[str, Pin]) -> None:
    for line in reqs:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name in pins, f"{line}: not in the lock (run make lock)"
        assert req.specifier.contains(pins[name].version, prereleases=True), (
            f"{line}: the lock pins {pins[name].version} (run make lock)"
        )


@pytest.mark.parametrize("lock", ["runtime.lock", "dev.lock"])
def test_every_pin_is_exact_and_hashed(lock: str) -> None:
    pins = _pins(lock)
    assert len(pins) > 20
    for p in pins.values():
        assert p.hashes and all(h.startswith("sha256:") and len(h) == 71 for h in p.hashes), p.name


def test_runtime_lock_satisfies_the_dependencies() -> None:
    _check(PYPROJECT["dependencies"], _pins("runtime.lock"))


def test_dev_lock_satisfies_every_extra_and_the_build() -> None:
    extras = PYPROJECT["optional-dependencies"]
    build = [ln for ln in (REPO / "requirements" / "build.in").read_text().splitlines() if ln and ln[0] != "#"]
    assert {"test", "lint", "kit"} <= set(extras)
    every_extra = [line for reqs in extras.values() for line in reqs]
    _check([*PYPROJECT["dependencies"], *every_extra, *build], _pins("dev.lock"))


def test_the_tests_run_the_versions_the_kit_ships() -> None:
    runtime, dev = _pins("runtime.lock"), _pins("dev.lock")
    for name, pin in runtime.items():
        assert dev[name].version == pin.version, f"{name}: runtime {pin.version}, dev {dev[name].version}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("six>=1.0 \\\n    --hash=sha256:" + "0" * 64 + "\n", "not pinned with =="),
        ("six==1.17.0\n", "has no --hash"),
    ],
)
def test_parse_lock_refuses_unpinned_or_unhashed_entries(text: str, message: str) -> None:
    with pytest.raises(KitError, match=message):
        parse_lock(text)


def test_parse_lock_reads_markers_and_hashes() -> None:
    text = (
        "# comment\n"
        "cffi==2.1.1 ; platform_python_implementation != 'PyPy' \\\n"
        "    --hash=sha256:" + "a" * 64 + " \\\n"
        "    --hash=sha256:" + "b" * 64 + "\n"
        "    # via cryptography\n"
        "Typing_Extensions==4.16.0 \\\n    --hash=sha256:" + "c" * 64 + "\n"
    )
    pins = parse_lock(text)
    assert [(p.name, p.version, p.marker, len(p.hashes)) for p in pins] == [
        ("cffi", "2.1.1", "platform_python_implementation != 'PyPy'", 2),
        ("typing-extensions", "4.16.0", None, 1),
    ]
