"""`airgap audit report` as an auditor runs it: the page, --json, exit codes, and the page in a real browser."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from airgap.core.canonical import parse_utc_text
from airgap.core.history import BUNDLE_IMPORT, RELEASE_EXTRACT, read_events, record_event
from airgap.offline.report_html import COLOURS
from tests.helpers import one_error_line, run_cli, run_proc, tree
from tests.release_fixtures import make_signed_release
from tests.report_fixtures import (  # noqa: F401
    NOW,
    Ceremony,
    _report_ceremony,
    ceremony_fixture,
    decode_png,
    hex_rgb,
    import_fields,
    runs_of,
    scan_page,
)
from tests.softhsm import SoftHSM

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
TOP_KEYS = {
    "acts",
    "certificates",
    "crl",
    "custody",
    "format",
    "generated",
    "jump_host",
    "pki",
    "revocations",
    "verdict",
}
VERDICT_KEYS = {
    "entries", "error", "failed_entry", "failures", "first_time", "head", "last_time", "log_verified", "notes",
    "signers", "summary", "trusted_keys", "verified", "warnings",
}  # fmt: skip


def _report(c: Ceremony, *extra: str | Path) -> tuple[int, str, str]:
    r = run_cli("audit", "report", c.pki, "--trust", c.officer_pub, "--now", NOW, *extra)
    return r.code, r.out, r.err


def test_page_written_verified(ceremony: Ceremony, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    code, stdout, err = _report(ceremony, "--out", out)
    assert code == 0, err
    assert stdout.splitlines() == [
        "Verified: 9 ceremony log entries, signed by the trusted officer key",
        f"Report written: {out}",
    ]
    scan = scan_page(out.read_bytes())
    assert scan.title.startswith("Verified: 9 ceremony log entries")
    assert scan.scripts == 0 and scan.refs == [] and scan.event_handlers == []
    assert "url(" not in scan.style_text and "img" not in scan.tags
    assert "svg" in scan.tags and "rect" in scan.tags
    assert out.stat().st_mode & 0o777 == 0o644
    assert not any(p.name.startswith(".airgap-tmp-") for p in tmp_path.iterdir())


def test_json_has_stable_keys(ceremony: Ceremony) -> None:
    code, stdout, err = _report(ceremony, "--json")
    assert code == 0, err
    doc = json.loads(stdout)
    assert set(doc) == TOP_KEYS and set(doc["verdict"]) == VERDICT_KEYS
    assert doc["format"] == 1 and doc["generated"] == NOW and doc["verdict"]["verified"] is True
    assert {"seq", "time", "act", "signer", "shares", "produced", "hash", "params", "imported_at"} == set(
        doc["acts"][0]
    )
    assert set(doc["certificates"][0]) == {
        "role", "cluster", "subject", "issuer", "fingerprint", "serial", "not_before", "not_after", "key_type",
        "key_held", "status", "logged_in", "path",
    }  # fmt: skip
    assert [len(c["fingerprint"]) for c in doc["certificates"]] == [64] * 4
    assert _report(ceremony, "--json")[1] == stdout  # the same inputs and --now: the same document


def test_same_now_gives_byte_identical_pages(ceremony: Ceremony, tmp_path: Path) -> None:
    state = tmp_path / "state"
    record_event(BUNDLE_IMPORT, import_fields(ceremony), state=state)
    assert _report(ceremony, "--state", state, "--out", tmp_path / "a.html")[0] == 0
    # another process (another hash seed), another working folder: the same bytes
    args = ("audit", "report", ceremony.pki, "--trust", ceremony.officer_pub, "--now", NOW, "--state", state)
    r = run_proc(*args, "--out", tmp_path / "b.html", env={"PYTHONHASHSEED": "12345"})
    assert r.code == 0, r.err
    assert (tmp_path / "a.html").read_bytes() == (tmp_path / "b.html").read_bytes()


def test_tampered_log_exit_1_and_a_failing_page(ceremony: Ceremony, tmp_path: Path) -> None:
    log = ceremony.pki / "ceremony.log"
    lines = log.read_bytes().splitlines(keepends=True)
    lines[3] = lines[3].replace(b'"cluster":"c1"', b'"cluster":"cX"')
    log.write_bytes(b"".join(lines))
    out = tmp_path / "report.html"
    code, stdout, err = _report(ceremony, "--out", out)
    assert code == 1
    one_error_line(err, "entry 4 (issue): signature does not verify")
    assert stdout.splitlines()[0] == "Verification FAILED at entry 4: the ceremony log does not verify"
    scan = scan_page(out.read_bytes())
    assert scan.title.startswith("Verification FAILED at entry 4")
    assert scan.h1 and scan.h1[0].startswith("Verification FAILED at entry 4")
    code, stdout, _ = _report(ceremony, "--json")
    doc = json.loads(stdout)
    assert code == 1 and doc["verdict"]["verified"] is False and doc["verdict"]["failed_entry"] == 4
    assert doc["acts"] == [] and doc["certificates"] == []


def test_mismatched_jump_host_record_exit_1(ceremony: Ceremony, tmp_path: Path) -> None:
    state = tmp_path / "state"
    record_event(BUNDLE_IMPORT, import_fields(ceremony, bundle_id="0" * 32), state=state)
    out = tmp_path / "report.html"
    code, _, err = _report(ceremony, "--state", state, "--out", out)
    assert code == 1
    one_error_line(err, f"line 1: bundle {'0' * 32} imported into cluster c1: the log records no such bundle")
    scan = scan_page(out.read_bytes())
    assert scan.title.startswith("Verification FAILED: 1 jump-host record the ceremony log contradicts")
    assert "the log records no such bundle" in "".join(scan.text)


def test_matching_jump_host_record_passes(ceremony: Ceremony, tmp_path: Path) -> None:
    state = tmp_path / "state"
    record_event(BUNDLE_IMPORT, import_fields(ceremony), state=state)
    code, stdout, err = _report(ceremony, "--state", state, "--json")
    assert code == 0, err
    doc = json.loads(stdout)
    (event,) = doc["jump_host"]["events"]
    assert event["outcome"] == "matched" and event["kind"] == BUNDLE_IMPORT
    bundle = next(a for a in doc["acts"] if a["act"] == "bundle")
    assert bundle["imported_at"] == [1]  # the act knows where its bundle arrived
    out = tmp_path / "r.html"
    assert _report(ceremony, "--state", state, "--out", out)[0] == 0
    text = " ".join(" ".join(scan_page(out.read_bytes()).text).split())
    assert "1 jump-host event: 1 matched, 0 failures, 0 warnings" in text
    assert "4 CA certificates (1 revoked, 0 expired or expiring within 90 days); CRL 1 overdue" in text
    assert "imported on the jump host: history line 1" in text


def test_release_extract_is_recorded_and_reported(ceremony: Ceremony, tmp_path: Path) -> None:
    tarball, sig, pub = make_signed_release(tmp_path / "rel")
    state = tmp_path / "state"
    env = {"AIRGAP_STATE_DIR": str(state), "AIRGAP_RELEASE_KEYS": str(tmp_path / "no-keys")}
    r = run_cli("release", "extract", tarball, "--signature", sig, "--key", pub, "--out", tmp_path / "asm", env=env)
    assert r.code == 0, r.err
    (event,) = read_events(state).events
    assert event["kind"] == RELEASE_EXTRACT and event["version"] == "1.8.6-asm.8"
    assert event["file"] == tarball.name and event["out"] == str((tmp_path / "asm").resolve())
    import hashlib

    assert event["sha256"] == hashlib.sha256(tarball.read_bytes()).hexdigest() and event["key_id"] == "release"
    code, stdout, err = _report(ceremony, "--state", state, "--json")
    assert code == 0, err
    (shown,) = json.loads(stdout)["jump_host"]["events"]
    assert shown["outcome"] == "recorded" and tarball.name in shown["summary"]
    # a refused extract records nothing
    r = run_cli("release", "extract", tarball, "--signature", sig, "--key", pub, "--out", tmp_path / "asm", env=env)
    assert r.code == 4 and len(read_events(state).events) == 1


def test_existing_out_is_refused(ceremony: Ceremony, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    out.write_text("mine")
    code, _, err = _report(ceremony, "--out", out)
    assert code == 4
    one_error_line(err, f"{out}: already exists; refusing to overwrite")
    assert out.read_text() == "mine"


def test_usage_and_bad_input(ceremony: Ceremony, tmp_path: Path) -> None:
    assert _report(ceremony)[0] == 2  # neither --out nor --json
    assert _report(ceremony, "--json", "--out", tmp_path / "r.html")[0] == 2
    r = run_cli("audit", "report", ceremony.pki, "--json")
    assert r.code == 2  # --trust is required
    code, out, err = _report(ceremony, "--json", "--state", tmp_path / "nope")
    assert code == 3
    one_error_line(err, "no such jump host state folder")
    doc = json.loads(out)  # --json: the failure is one JSON document too
    assert doc["verified"] is False and doc["exit_code"] == 3 and "no such jump host state folder" in doc["error"]
    r = run_cli("audit", "report", ceremony.pki, "--trust", ceremony.officer_pub, "--now", "soon", "--json")
    assert r.code == 3
    one_error_line(r.err, "--now 'soon': not an ISO 8601 time")
    code, _, err = _report(ceremony, "--json", "--trust", tmp_path / "missing.pub")
    assert code == 3
    one_error_line(err, "missing.pub")
    assert not any(p.endswith(".html") for p in tree(tmp_path))


# -- a real browser ------------------------------------------------------------------------------


def _screenshot(page: Path, png: Path, profile: Path) -> None:
    assert CHROMIUM is not None
    args = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--hide-scrollbars", "--force-device-scale-factor=1", f"--user-data-dir={profile}",
        f"--screenshot={png}", "--window-size=1200,1000", page.as_uri(),
    ]  # fmt: skip
    subprocess.run(args, check=True, capture_output=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium)")
def test_page_in_chromium_bars_where_the_dates_say(ceremony: Ceremony, tmp_path: Path) -> None:
    out, png = tmp_path / "report.html", tmp_path / "shot.png"
    code, stdout, err = _report(ceremony, "--json")
    assert code == 0, err
    doc = json.loads(stdout)
    assert _report(ceremony, "--out", out)[0] == 0
    _screenshot(out, png, tmp_path / "profile")
    img = decode_png(png.read_bytes())
    assert (img.width, img.height) == (1200, 1000)
    colours = {img.pixel(x, y) for y in range(0, img.height, 7) for x in range(0, img.width, 7)}
    assert len(colours) > 20  # not blank: text, tables, bars
    # The chart's background spans the axis: its first and last columns are the axis's ends.
    chart = runs_of(img, hex_rgb(COLOURS["chart"]))
    left, right = min(a for a, _ in chart.values()), max(b for _, b in chart.values())
    width = right + 1 - left
    top, bottom = min(chart), max(chart)
    certs, crl = doc["certificates"], doc["crl"]
    times = [parse_utc_text(t) for c in certs for t in (c["not_before"], c["not_after"])]
    times += [parse_utc_text(crl["this_update"]), parse_utc_text(crl["next_update"]), parse_utc_text(NOW)]
    t0, t1 = min(times), max(times)

    def px(t: str) -> float:
        return left + (parse_utc_text(t) - t0) / (t1 - t0) * width

    def bar(colour: str) -> tuple[int, int]:
        rows = {y: run for y, run in runs_of(img, hex_rgb(colour)).items() if top <= y <= bottom}  # not the legend
        assert rows, f"no {colour} bar on the page"
        ys = sorted(rows)
        assert ys[-1] - ys[0] < 20, f"{colour}: more than one bar"  # one bar of this colour
        return min(a for a, _ in rows.values()), max(b for _, b in rows.values())

    root = next(c for c in certs if c["role"] == "root")
    revoked = next(c for c in certs if c["status"] == "revoked")
    current = next(c for c in certs if c["role"] == "intermediate" and c["status"] != "revoked")
    for colour, cert in ((COLOURS["root"], root), (COLOURS["revoked"], revoked), (COLOURS["intermediate"], current)):
        a, b = bar(colour)
        assert abs(a - px(cert["not_before"])) <= 2, (colour, a, px(cert["not_before"]))
        assert abs(b + 1 - px(cert["not_after"])) <= 2, (colour, b, px(cert["not_after"]))
    a, b = bar(COLOURS["crl"])
    assert abs(b + 1 - px(crl["next_update"])) <= 2
    # the second chart (the months around now): the CRL's nextUpdate where its date says
    near = runs_of(img, hex_rgb(COLOURS["near chart"]))
    n_left, n_right = min(a for a, _ in near.values()), max(b for _, b in near.values())
    n0, n1 = parse_utc_text(NOW) - dt.timedelta(days=60), parse_utc_text(NOW) + dt.timedelta(days=365)
    rows = {y: run for y, run in runs_of(img, hex_rgb(COLOURS["crl"])).items() if min(near) <= y <= max(near)}
    assert rows, "no CRL bar in the second chart"
    end = max(b for _, b in rows.values()) + 1
    want = n_left + (parse_utc_text(crl["next_update"]) - n0) / (n1 - n0) * (n_right + 1 - n_left)
    assert abs(end - want) <= 2, (end, want)
    # the "now" line: black, 2 px, inside the chart at the report time
    now_cols = {x for y in range(top, bottom + 1) for x in range(left, right + 1) if img.pixel(x, y) == (0, 0, 0)}
    assert now_cols and abs(min(now_cols) - (px(NOW) - 1)) <= 2


def test_custody_shares_and_a_key_held_elsewhere(tmp_path: Path, passfile: Path) -> None:
    """A 2-of-3 root: the acts name the shares that opened it; `ca sign` leaves the key elsewhere."""
    from tests.helpers import openssl

    keys, pki, people = tmp_path / "keys", tmp_path / "pki", tmp_path / "custodians"
    env = {"AIRGAP_LOG_KEY": str(keys / "officer.key")}
    assert run_cli("keys", "new", "officer", "--out", keys, "--passphrase-file", passfile).code == 0
    for who in ("alice", "bob", "carol"):
        assert run_cli("keys", "new", who, "--kind", "recipient", "--out", people, "--no-passphrase").code == 0
    custodians = [a for who in ("alice", "bob", "carol") for a in ("--custodian", people / f"{who}.pub")]
    shares = ("--share", people / "alice.key", "--share", people / "carol.key")
    pf = ("--passphrase-file", passfile)
    r = run_cli(
        "ca", "init", "--dir", pki, "--key-type", "ecdsa-p256", "--custody", "2-of-3", *custodians, *pf, env=env
    )
    assert r.code == 0, r.err
    r = run_cli("ca", "issue", "c1", "--dir", pki, "--key-type", "ecdsa-p256", *pf, *shares, env=env)
    assert r.code == 0, r.err
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=c3",
            "-keyout", tmp_path / "c3.key", "-out", tmp_path / "c3.csr")  # fmt: skip
    r = run_cli("ca", "sign", tmp_path / "c3.csr", "--cluster", "c3", "--dir", pki, "--out", tmp_path / "c3-signed",
                *pf, *shares, env=env)  # fmt: skip
    assert r.code == 0, r.err
    r = run_cli("audit", "report", pki, "--trust", keys / "officer.pub", "--now", NOW, "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["custody"]["threshold"] == 2 and doc["custody"]["count"] == 3
    assert [c["share"] for c in doc["custody"]["custodians"]] == [1, 2, 3]
    assert doc["custody"]["custodians"][0]["recipient"] == (people / "alice.pub").read_text().strip()
    assert [(a["act"], a["shares"]) for a in doc["acts"]] == [
        ("log-start", []), ("key-create", []), ("init", []), ("issue", [1, 3]), ("sign", [1, 3]),
    ]  # fmt: skip
    held = {(c["role"], c["cluster"]): c["key_held"] for c in doc["certificates"]}
    assert held == {
        ("root", None): "file, split custody 2-of-3",
        ("intermediate", "c1"): "file (encrypted)",
        ("intermediate", "c3"): "elsewhere (ca sign)",
    }
    assert run_cli("audit", "report", pki, "--trust", keys / "officer.pub", "--out", tmp_path / "r.html").code == 0
    page = (tmp_path / "r.html").read_text()
    assert "any 2 of 3 custodians" in page and "elsewhere (ca sign)" in page


def test_root_rotation_next_and_retired_roots(ceremony: Ceremony, passfile: Path) -> None:
    env = {"AIRGAP_LOG_KEY": str(ceremony.keys / "officer.key")}
    pf = ("--passphrase-file", passfile)
    r = run_cli("ca", "rotate-root", "--dir", ceremony.pki, "--key-type", "ecdsa-p256", *pf, env=env)
    assert r.code == 0, r.err
    doc = json.loads(_report(ceremony, "--json")[1])
    assert [c["role"] for c in doc["certificates"]][:2] == ["root", "next root"]
    assert doc["verdict"]["verified"] and doc["acts"][-1]["act"] == "root-rotation-begin"
    for cluster in ("c1", "c2"):
        r = run_cli("ca", "rotate", cluster, "--dir", ceremony.pki, "--days", "100", *pf, env=env)
        assert r.code == 0, r.err
    r = run_cli("ca", "rotate-root", "--dir", ceremony.pki, "--finish", *pf, env=env)
    assert r.code == 0, r.err
    code, out, err = _report(ceremony, "--json")
    assert code == 0, err
    doc = json.loads(out)
    roles = [c["role"] for c in doc["certificates"]]
    assert roles.count("root") == 1 and roles.count("retired root") == 1 and "next root" not in roles
    retired = next(c for c in doc["certificates"] if c["role"] == "retired root")
    assert retired["path"].startswith("archive/root/") and retired["logged_in"] == 3  # the init entry
    assert retired["key_held"] == "file (encrypted)"
    assert all(c["logged_in"] is not None for c in doc["certificates"]) and doc["verdict"]["warnings"] == []


def test_token_root(tmp_path: Path, passfile: Path, softhsm: SoftHSM) -> None:
    keys, pki = tmp_path / "keys", tmp_path / "pki"
    assert run_cli("keys", "new", "officer", "--out", keys, "--passphrase-file", passfile).code == 0
    r = run_cli("ca", "init", "--dir", pki, "--key-type", "ecdsa-p256", *softhsm.options(softhsm.key_label()),
                "--passphrase-file", passfile, "--log-key", keys / "officer.key")  # fmt: skip
    assert r.code == 0, r.err
    r = run_cli("audit", "report", pki, "--trust", keys / "officer.pub", "--now", NOW, "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert [c["key_held"] for c in doc["certificates"]] == ["token (PKCS#11)"]
    assert "in a PKCS#11 token" in doc["acts"][1]["produced"]


def test_an_unencrypted_key_file_is_reported_as_such(tmp_path: Path) -> None:
    """Found as a hostile user: the report said "file (encrypted)" of a --no-passphrase root."""
    keys, pki = tmp_path / "keys", tmp_path / "pki"
    assert run_cli("keys", "new", "officer", "--kind", "signing", "--out", keys, "--no-passphrase").code == 0
    log = ("--log-key", keys / "officer.key")
    plain = ("--key-type", "ecdsa-p256", "--no-passphrase")
    assert run_cli("ca", "init", "--dir", pki, *plain, *log).code == 0
    assert run_cli("ca", "issue", "c1", "--dir", pki, *plain, *log).code == 0
    r = run_cli("audit", "report", pki, "--trust", keys / "officer.pub", "--now", NOW, "--json")
    assert r.code == 0, r.err
    held = {(c["role"], c["cluster"]): c["key_held"] for c in json.loads(r.out)["certificates"]}
    assert held == {("root", None): "file (NOT encrypted)", ("intermediate", "c1"): "file (NOT encrypted)"}


def test_bundle_import_records_itself_and_the_report_matches_it(ceremony: Ceremony, tmp_path: Path) -> None:
    """End to end: bundle import's own history line (not one written by the test) matched against the log."""
    state = tmp_path / "state"
    env = {"AIRGAP_STATE_DIR": str(state)}
    r = run_cli("bundle", "import", ceremony.bundle, "--trust", ceremony.officer_pub, "--cluster", "c1",
                "--output-dir", tmp_path / "out", "--plaintext-secrets", env=env)  # fmt: skip
    assert r.code == 0, r.err
    code, out, err = _report(ceremony, "--state", state, "--json")
    assert code == 0, err
    doc = json.loads(out)
    (event,) = doc["jump_host"]["events"]
    assert (event["kind"], event["outcome"]) == (BUNDLE_IMPORT, "matched"), event
    assert event["fields"]["bundle_id"] == ceremony.bundle_entry["bundle_id"]
    assert next(a for a in doc["acts"] if a["act"] == "bundle")["imported_at"] == [1]
