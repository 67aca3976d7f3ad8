"""The real promtool (Debian's prometheus package) for the monitoring tests; skipped, with the reason,
where it is not installed (scripts/system-deps.sh installs it; CI has it)."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import REPO

PROMTOOL = shutil.which("promtool")
RULES = REPO / "monitoring" / "airgap-rules.yml"
RULE_TESTS = REPO / "tests" / "monitoring" / "airgap-rules.test.yml"
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian: apt-get install prometheus; scripts/system-deps.sh)"
)


def promtool(
    *args: str | Path, input: bytes | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run promtool; its output as text (stdout and stderr)."""
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *map(str, args)],
        input=input.decode() if input is not None else None,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
    )


def check_metrics_clean(data: bytes) -> None:
    """``promtool check metrics`` (the exposition on stdin) exits 0 and finds nothing to report."""
    r = promtool("check", "metrics", input=data)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", ""), (r.stdout, r.stderr)


def samples(data: bytes) -> list[tuple[str, tuple[tuple[str, str], ...], float]]:
    """Every sample of an exposition (parsed by prometheus-client's own parser), asserting none repeats."""
    from prometheus_client.parser import text_string_to_metric_families

    out = [
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for fam in text_string_to_metric_families(data.decode())
        for s in fam.samples
    ]
    repeated = [k for k, n in Counter((name, labels) for name, labels, _ in out).items() if n > 1]
    assert not repeated, f"duplicate samples: {repeated}"
    return out
