"""Issue 9: SIGKILL at every write of ``release extract`` leaves no half-extracted release, and a re-run works."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from airgap.core.crashpoint import ENV_KILL_AT_WRITE
from tests.helpers import run_proc
from tests.release_fixtures import make_signed_release


def test_sigkill_at_every_write_of_release_extract_leaves_no_release_and_a_rerun_works(tmp_path: Path) -> None:
    tarball, sig, pub = make_signed_release(tmp_path)
    out = tmp_path / "rel"
    args = ("release", "extract", tarball, "--signature", sig, "--key", pub, "--out", out)
    state = {"AIRGAP_STATE_DIR": str(tmp_path / "state")}  # the history extract writes: not the user's
    killed = 0
    for n in range(1, 50):
        r = run_proc(*args, env={ENV_KILL_AT_WRITE: str(n), **state})
        if r.code == 0:
            break
        assert r.code == -signal.SIGKILL, (n, r.code, r.err)
        killed += 1
        # killed before the release folder was published: nothing under the final name
        assert not out.exists(), f"write {n}: a killed extract left {out}"
    else:
        raise AssertionError("extract never finished")
    assert killed >= 2  # the record inside the staged folder, and the folder itself
    record = json.loads((out / "RELEASE.json").read_text())
    assert record["archive"]["name"] == tarball.name
    # the completed extract is exactly what a clean extract gives
    clean = tmp_path / "clean"
    assert run_proc(*args[:-1], clean, env=state).code == 0
    assert json.loads((clean / "RELEASE.json").read_text()) == record
    assert sorted(p.relative_to(clean).as_posix() for p in clean.rglob("*")) == sorted(
        p.relative_to(out).as_posix() for p in out.rglob("*")
    )
    # a re-run over the finished release is refused (exit 4), never a silent replace
    assert run_proc(*args, env=state).code == 4
