"""monitoring/airgap-rules.yml with the real promtool: it checks, its unit tests pass, and they would
catch a rule that drifted (a mutated copy fails them)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.promtool_fixtures import RULE_TESTS, RULES, needs_promtool, promtool

pytestmark = needs_promtool


def test_check_rules() -> None:
    r = promtool("check", "rules", RULES)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 8 rules found" in r.stdout


def test_rule_unit_tests_pass() -> None:
    r = promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_every_alert_has_a_case_that_fires_and_one_that_does_not() -> None:
    doc = yaml.safe_load(RULE_TESTS.read_text())
    alerts = {rule["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for rule in g["rules"]}
    cases = [c for t in doc["tests"] for c in t["alert_rule_test"]]
    fires = {c["alertname"] for c in cases if c["exp_alerts"]}
    silent = {c["alertname"] for c in cases if not c["exp_alerts"]}
    assert fires == alerts, f"no firing case for {alerts - fires}"
    assert silent == alerts, f"no quiet case for {alerts - silent}"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("< 60 * 86400 > 0", "< 62 * 86400 > 0"),  # a longer intermediate lead time: c-fine would fire
        ("< 365 * 86400 > 0", "< 300 * 86400 > 0"),  # a shorter root lead time: the 300-day root would not
        ("< 7 * 86400 > 0", "< 9 * 86400 > 0"),  # a longer CRL lead time
        ('x509_cert_not_after{role="intermediate"} - time()) < 60', "x509_cert_not_after - time()) < 60"),
        ("for: 30m", "for: 10m"),
    ],
)
def test_rule_tests_catch_a_drifted_rule(tmp_path: Path, old: str, new: str) -> None:
    text = RULES.read_text()
    assert text.count(old) == 1
    (tmp_path / "monitoring").mkdir()
    (tmp_path / "monitoring" / RULES.name).write_text(text.replace(old, new))
    tests_dir = tmp_path / "tests" / "monitoring"
    tests_dir.mkdir(parents=True)
    shutil.copy(RULE_TESTS, tests_dir / RULE_TESTS.name)
    r = promtool("test", "rules", RULE_TESTS.name, cwd=tests_dir)
    assert r.returncode != 0 and "FAILED" in r.stdout + r.stderr
