"""At a real terminal (a pty): passphrase prompts with confirmation and no echo; progress bars."""

from __future__ import annotations

import os
import pty
import select
import sys
import time
from pathlib import Path

from airgap.core.keys import load_private_key
from tests.helpers import REPO


def _run_on_tty(argv: list[str], answers: list[bytes], timeout: float = 60) -> tuple[int, bytes]:
    """Run ``python -m airgap ARGV`` on a pty, answering each prompt in turn; return (exit code, screen)."""
    env = {k: v for k, v in os.environ.items() if k != "AIRGAP_PASSPHRASE"}
    pid, fd = pty.fork()
    if pid == 0:  # child: the pty is its controlling terminal, as for a person at a console
        os.chdir(REPO)
        os.execve(sys.executable, [sys.executable, "-m", "airgap", *argv], env)
    screen = b""
    pending = list(answers)
    answered = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                data = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            screen += data
            # answer each prompt once it is fully shown (getpass flushes input typed ahead of it)
            if pending and screen.count(b"passphrase") > answered and screen.endswith(b": "):
                os.write(fd, pending.pop(0) + b"\n")
                answered += 1
    else:
        os.kill(pid, 9)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), screen


def test_prompt_twice_and_the_key_opens_with_it(tmp_path: Path) -> None:
    d = tmp_path / "pki"
    code, screen = _run_on_tty(["ca", "init", "--dir", str(d), "--key-type", "ecdsa-p256"], [b"typed pw", b"typed pw"])
    assert code == 0, screen
    assert b"PKI passphrase:" in screen and b"PKI passphrase (again):" in screen
    assert b"typed pw" not in screen  # getpass: not echoed
    load_private_key(d / "root-key.pem", b"typed pw")


def test_mismatched_confirmation_writes_nothing(tmp_path: Path) -> None:
    d = tmp_path / "pki"
    code, screen = _run_on_tty(["ca", "init", "--dir", str(d), "--key-type", "ecdsa-p256"], [b"one", b"two"])
    assert code == 3, screen
    assert b"airgap: error: the two passphrases differ" in screen
    assert not (d / "root-key.pem").exists() and not (d / "root-cert.pem").exists()


def test_issue_shows_a_progress_bar_on_a_terminal_only(tmp_path: Path) -> None:
    from tests.helpers import run_cli

    d = tmp_path / "pki"
    ec = ["--key-type", "ecdsa-p256", "--no-passphrase"]
    assert run_cli("ca", "init", "--dir", d, *ec).code == 0
    code, screen = _run_on_tty(["ca", "issue", "a", "b", "c", "--dir", str(d), *ec], [])
    assert code == 0, screen
    assert b"generating 3 ecdsa-p256 keys" in screen and b"3/3" in screen
    r = run_cli("ca", "issue", "e", "f", "--dir", d, *ec)  # stderr is not a terminal here: no bar
    assert r.code == 0 and "generating" not in r.err + r.out
