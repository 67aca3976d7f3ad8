"""The alert rules' expressions select what airgap really prints: real `ca list --prometheus` output
becomes promtool's input series, and each rule's `expr` is evaluated at an instant chosen from the
certificates (a renamed label or role would make these fail, where hand-written series would not)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.helpers import run_cli
from tests.promtool_fixtures import RULES, needs_promtool, promtool, samples

pytestmark = needs_promtool
DAY = 86400


def _exprs() -> dict[str, str]:
    return {r["alert"]: r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}


def _series(name: str, labels: tuple[tuple[str, str], ...]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in labels)
    return f"{name}{{{inner}}}"


def _expect(out: list[tuple[str, tuple[tuple[str, str], ...], float]], name: str, at: int, role: str) -> list[Any]:
    """The samples ``(metric - time()) `` gives at ``at`` for one role: no name, empty labels dropped."""
    got = []
    for n, labels, value in out:
        if n == name and dict(labels).get("role", role) == role:
            kept = tuple((k, v) for k, v in labels if v)
            got.append({"labels": "{" + ",".join(f'{k}="{v}"' for k, v in kept) + "}", "value": int(value) - at})
    return got


def test_rules_fire_on_airgap_output(pki: Path, passfile: Path, tmp_path: Path) -> None:
    assert (
        run_cli("ca", "revoke", "c2", "--reason", "superseded", "--dir", pki, "--passphrase-file", passfile).code == 0
    )
    r = run_cli("ca", "list", "--dir", pki, "--prometheus")
    assert r.code == 0, r.err
    out = samples(r.out.encode())
    ends = [v for n, labels, v in out if n == "x509_cert_not_after" and dict(labels)["role"] == "intermediate"]
    at = (int(min(ends)) // DAY - 30) * DAY  # a whole day, 30 to 31 days before the intermediates end
    exprs = _exprs()
    cases = [
        {
            "expr": exprs["AirgapIntermediateExpiringSoon"],
            "eval_time": f"{at}s",
            "exp_samples": _expect(out, "x509_cert_not_after", at, "intermediate"),
        },
        {"expr": exprs["AirgapIntermediateExpired"], "eval_time": f"{at}s", "exp_samples": []},
        {"expr": exprs["AirgapRootExpiringWithinAYear"], "eval_time": f"{at}s", "exp_samples": []},
        {
            "expr": exprs["AirgapCrlExpired"],
            "eval_time": f"{at}s",  # the CRL ended long before
            "exp_samples": _expect(out, "airgap_crl_next_update", at, ""),
        },
    ]
    assert len(cases[0]["exp_samples"]) == 2 and len(cases[3]["exp_samples"]) == 1
    doc = {
        "evaluation_interval": "1d",
        "tests": [
            {
                "interval": "1d",
                "input_series": [
                    {"series": _series(n, labels), "values": f"{int(v)}x{at // DAY + 1}"} for n, labels, v in out
                ],
                "promql_expr_test": cases,
            }
        ],
    }
    test_file = tmp_path / "real-output.test.yml"
    test_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    done = promtool("test", "rules", test_file.name, cwd=tmp_path)
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr
