"""The committed example request files: each is accepted or refused exactly as its README line says."""

from __future__ import annotations

from pathlib import Path

import pytest

from airgap.core.keys import load_public_key
from airgap.core.request_file import open_request
from airgap.errors import AirgapError
from tests.example_fixtures import EXAMPLES, GEN, KEYS
from tests.helpers import one_error_line, run_cli, tree

REQUESTS = {e.name: e for e in GEN.REQUEST_CATALOGUE}


def test_catalogue_matches_files_and_readme() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.request")) == sorted(REQUESTS)
    readme = (EXAMPLES / "README.md").read_text()
    for e in REQUESTS.values():
        assert f"| `{e.name}` | {e.wrong} | {e.signs} |" in readme


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_outcome(name: str) -> None:
    trust = [load_public_key(KEYS / "officer.pub")]
    try:
        req = open_request((EXAMPLES / name).read_bytes(), trust, source=name, now=GEN.CHECK_TIME)
    except AirgapError as exc:
        assert exc.exit_code == REQUESTS[name].signs, exc.message
        return
    assert REQUESTS[name].signs == 0
    assert req.cluster == "c3" and req.request_id == GEN.REQUEST_ID


@pytest.mark.parametrize("name", sorted(n for n, e in REQUESTS.items() if e.signs in (1, 3)))
def test_refused_by_the_cli_with_nothing_written(name: str, pki: Path, tmp_path: Path, passfile: Path) -> None:
    """Through ``ca sign`` (today's clock: expiry aside, the outcome does not depend on the time)."""
    before = tree(pki)
    r = run_cli("ca", "sign", EXAMPLES / name, "--trust", KEYS / "officer.pub", "--dir", pki, "--out",
                tmp_path / "o", "--passphrase-file", passfile)  # fmt: skip
    assert r.code == REQUESTS[name].signs, r.err
    one_error_line(r)
    assert tree(pki) == before and not (tmp_path / "o").exists()
