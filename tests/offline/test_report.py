"""The auditor's report as a library: verify first, gather everything, match the jump host, render safely."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from airgap.core.canonical import parse_utc_text
from airgap.core.history import BUNDLE_IMPORT, IMAGES_PUSH, RELEASE_EXTRACT, record_event
from airgap.core.keys import generate_private_key, load_public_key, spki_sha256
from airgap.errors import InvalidInput, LogTampered, Malformed, NotFound, VerificationError, WouldOverwrite
from airgap.offline.report import AuditReport, build_report, parse_now
from airgap.offline.report_html import CHART_X0, CHART_X1, render_html, timeline
from tests.report_fixtures import (  # noqa: F401
    HOSTILE_CN,
    Ceremony,
    _report_ceremony,
    ceremony_fixture,
    import_fields,
    scan_page,
)
from tests.report_fixtures import NOW as NOW_TEXT

NOW = parse_utc_text(NOW_TEXT)


def _report(c: Ceremony, state: Path | None = None) -> AuditReport:
    return build_report(c.pki, [load_public_key(c.officer_pub)], now=NOW, state=state)


def _der_sha256(path: Path) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding

    return hashlib.sha256(x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(Encoding.DER)).hexdigest()


def test_verified_report_holds_every_act_certificate_and_revocation(ceremony: Ceremony) -> None:
    rep = _report(ceremony)
    v = rep.verdict
    lines = (ceremony.pki / "ceremony.log").read_bytes().splitlines()
    assert v.verified and v.log_verified and v.error is None
    assert v.entries == len(lines) == len(rep.acts)
    assert v.head == hashlib.sha256(lines[-1]).hexdigest()
    officer = spki_sha256(load_public_key(ceremony.officer_pub))
    assert v.signers == v.trusted_keys == (officer,)
    assert [a.act for a in rep.acts] == [
        "log-start", "key-create", "init", "issue", "issue", "bundle", "revoke", "crl", "rotate",
    ]  # fmt: skip
    assert rep.acts[5].produced.startswith(f"bundle {ceremony.bundle_entry['bundle_id']} for cluster c1")
    roles = [(c.role, c.cluster, c.status, c.key_held) for c in rep.certificates]
    assert roles == [
        ("root", None, "valid", "file (encrypted)"),
        ("intermediate", "c1", "valid", "file (encrypted)"),
        ("intermediate", "c2", "revoked", "file (encrypted)"),
        ("archived intermediate", "c1", "valid", "file (encrypted)"),
    ]
    by_path = {c.path: c for c in rep.certificates}
    for rel in ("root-cert.pem", "c1/ca-cert.pem", "c2/ca-cert.pem"):
        assert by_path[rel].fingerprint == _der_sha256(ceremony.pki / rel)  # SHA-256 of DER, whole
        assert by_path[rel].logged_in is not None
    (rev,) = rep.revocations
    assert (rev.cluster, rev.reason, rev.crl_number) == ("c2", "keyCompromise", 1)
    assert rev.fingerprint == _der_sha256(ceremony.pki / "c2" / "ca-cert.pem")
    assert rep.crl is not None and rep.crl.number == 1 and rep.crl.logged_in == 8
    assert rep.crl.revoked_serials == (rev.serial,)
    assert rep.custody is None and rep.jump_host is None and v.warnings == ()


def test_tampered_log_gives_a_failing_verdict_naming_the_entry(ceremony: Ceremony) -> None:
    log = ceremony.pki / "ceremony.log"
    lines = log.read_bytes().splitlines(keepends=True)
    lines[6] = lines[6].replace(b"keyCompromise", b"superseded")
    log.write_bytes(b"".join(lines))
    rep = _report(ceremony)
    assert not rep.verdict.verified and rep.verdict.failed_entry == 7
    assert "entry 7 (revoke): signature does not verify" in (rep.verdict.error or "")
    assert rep.acts == () and rep.certificates == ()  # nothing an unverified log would vouch for
    with pytest.raises(LogTampered, match="entry 7"):
        rep.require_verified()
    scan = scan_page(render_html(rep))
    assert scan.title.startswith("Verification FAILED at entry 7")
    assert scan.h1[0].startswith("Verification FAILED at entry 7")


def test_another_officer_key_fails_at_entry_1(ceremony: Ceremony) -> None:
    other = generate_private_key("ecdsa-p256").public_key()
    rep = build_report(ceremony.pki, [other], now=NOW)
    assert not rep.verdict.verified and rep.verdict.failed_entry == 1
    assert "not a --trust key" in (rep.verdict.error or "")


def test_no_trust_key_is_bad_input(ceremony: Ceremony) -> None:
    with pytest.raises(InvalidInput, match="--trust"):
        build_report(ceremony.pki, [], now=NOW)


def test_matching_import_release_and_push_are_shown(ceremony: Ceremony, tmp_path: Path) -> None:
    state = tmp_path / "state"
    officer = spki_sha256(load_public_key(ceremony.officer_pub))
    record_event(BUNDLE_IMPORT, import_fields(ceremony), state=state, now=NOW - dt.timedelta(days=3))
    extract = {"version": "1.8.6-asm.8", "file": "istio.tar.gz", "sha256": "ab" * 32, "key_id": "asm", "out": "/x"}
    record_event(RELEASE_EXTRACT, extract, state=state, now=NOW - dt.timedelta(days=2))
    push = {"bundle_id": "i1", "bundle_sha256": "cd" * 32, "signer": officer, "registry": "reg:5000", "images": []}
    record_event(IMAGES_PUSH, push, state=state, now=NOW - dt.timedelta(days=1))
    rep = _report(ceremony, state)
    assert rep.verdict.verified and rep.jump_host is not None
    got = [(e.line, e.kind, e.outcome) for e in rep.jump_host.events]
    assert got == [(1, BUNDLE_IMPORT, "matched"), (2, RELEASE_EXTRACT, "recorded"), (3, IMAGES_PUSH, "matched")]
    assert f"matches log entry {ceremony.bundle_entry['seq']}" in rep.jump_host.events[0].detail
    assert "imported into context emu-1" in rep.jump_host.events[0].summary


@pytest.mark.parametrize(
    ("override", "why"),
    [
        ({"bundle_id": "0" * 32}, "the log records no such bundle"),
        ({"ceremony_head": "e" * 64}, "ceremony_head"),
        ({"sequence": 7}, "sequence"),
        ({"signer": "f" * 64}, "signer"),
        ({"cluster": "c2"}, "cluster"),
        ({"ca_fingerprint": "a" * 64}, "is not one the log records"),
    ],
)
def test_an_import_the_log_contradicts_is_a_failure(
    ceremony: Ceremony, tmp_path: Path, override: dict[str, object], why: str
) -> None:
    state = tmp_path / "state"
    record_event(BUNDLE_IMPORT, import_fields(ceremony), state=state, now=NOW)
    record_event(BUNDLE_IMPORT, import_fields(ceremony, **override), state=state, now=NOW)
    rep = _report(ceremony, state)
    assert rep.verdict.log_verified and not rep.verdict.verified
    (failure,) = rep.verdict.failures
    assert failure.startswith("line 2: ") and why in failure
    assert rep.verdict.summary.startswith("Verification FAILED")
    with pytest.raises(VerificationError, match="line 2"):
        rep.require_verified()
    scan = scan_page(render_html(rep))
    assert scan.title.startswith("Verification FAILED") and scan.h1[0].startswith("Verification FAILED")


def test_damaged_history_is_a_failure(ceremony: Ceremony, tmp_path: Path) -> None:
    state = tmp_path / "state"
    record_event(BUNDLE_IMPORT, import_fields(ceremony), state=state, now=NOW)
    with (state / "history.jsonl").open("ab") as f:
        f.write(b'{"kind": "bundle-import", "time": "2027-\n')
    rep = _report(ceremony, state)
    assert rep.verdict.failures == ("the jump host's history has damaged lines (2): it cannot be read whole",)
    assert rep.jump_host is not None and rep.jump_host.damaged_lines == (2,)


def test_image_push_by_another_signer_is_a_warning(ceremony: Ceremony, tmp_path: Path) -> None:
    state = tmp_path / "state"
    push = {"bundle_id": "i1", "bundle_sha256": "cd" * 32, "signer": "9" * 64, "registry": "r", "images": []}
    record_event(IMAGES_PUSH, push, state=state, now=NOW)
    rep = _report(ceremony, state)
    assert rep.verdict.verified
    assert rep.verdict.warnings == (
        f"line 1: image bundle signed by key {'9' * 64}, which is not a --trust (officer) key",
    )


def test_missing_state_folder_is_bad_input(ceremony: Ceremony, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no such jump host state folder"):
        _report(ceremony, tmp_path / "nope")


def test_a_certificate_the_log_does_not_record_is_a_warning(ceremony: Ceremony) -> None:
    import shutil

    extra = ceremony.pki / "archive" / "c2" / "ff"
    extra.mkdir(parents=True)
    shutil.copy(ceremony.pki / "root-cert.pem", extra / "ca-cert.pem")  # a copy: recorded under its fingerprint
    assert _report(ceremony).verdict.warnings == ()
    other = ceremony.pki / "archive" / "c2" / "fe"
    other.mkdir()
    from tests.helpers import openssl

    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=x",
            "-keyout", other / "k.pem", "-out", other / "ca-cert.pem", "-days", "1")  # fmt: skip
    (w,) = _report(ceremony).verdict.warnings
    assert w.startswith("archive/c2/fe/ca-cert.pem (sha256 ") and "no log entry records it" in w


def test_page_is_self_contained_and_escapes_hostile_text(ceremony: Ceremony, tmp_path: Path) -> None:
    state = tmp_path / "state"
    hostile = '<script>alert("x")</script>\x1b[2J\u202e<a href="https://evil.example/">'
    record_event(BUNDLE_IMPORT, import_fields(ceremony, context=hostile), state=state, now=NOW)
    record_event(IMAGES_PUSH, {"bundle_id": hostile, "signer": hostile, "registry": hostile}, state=state, now=NOW)
    page = render_html(_report(ceremony, state))
    scan = scan_page(page)
    assert scan.scripts == 0 and scan.refs == [] and scan.event_handlers == []
    assert "url(" not in scan.style_text.lower() and "@import" not in scan.style_text
    assert "img" not in scan.tags and "a" not in scan.tags
    text = page.decode()
    assert "<img" not in text and "<script" not in text and "\x1b" not in text and "\u202e" not in text
    assert "&lt;img src=x onerror=alert(1)\\&gt;" in text  # the root's subject, as text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;\\x1b[2J\\u202e&lt;a href=" in text
    assert HOSTILE_CN.replace("<", "&lt;").replace(">", "&gt;")[:20] in text


def test_same_inputs_and_now_give_the_same_bytes(ceremony: Ceremony, tmp_path: Path) -> None:
    state = tmp_path / "state"
    record_event(BUNDLE_IMPORT, import_fields(ceremony), state=state, now=NOW)
    one, two = _report(ceremony, state), _report(ceremony, state)
    assert render_html(one) == render_html(two)
    assert one.to_json() == two.to_json()
    later = build_report(ceremony.pki, [load_public_key(ceremony.officer_pub)], now=NOW + dt.timedelta(days=1))
    assert render_html(later) != render_html(one)


def test_timeline_bars_are_placed_by_date(ceremony: Ceremony) -> None:
    rep = _report(ceremony)
    tl = timeline(rep)
    assert tl is not None and len(tl.bars) == len(rep.certificates) + 1  # and the CRL
    starts = [parse_utc_text(c.not_before) for c in rep.certificates]
    ends = [parse_utc_text(c.not_after) for c in rep.certificates]
    assert rep.crl is not None and rep.crl.next_update is not None
    t0 = min([*starts, parse_utc_text(rep.crl.this_update)])
    t1 = max([*ends, parse_utc_text(rep.crl.next_update), NOW])

    def px(t: dt.datetime) -> float:
        return CHART_X0 + (t - t0) / (t1 - t0) * (CHART_X1 - CHART_X0)

    for bar, cert in zip(tl.bars, rep.certificates, strict=False):
        assert abs(bar.x - px(parse_utc_text(cert.not_before))) <= 0.1
        assert abs(bar.x + bar.width - px(parse_utc_text(cert.not_after))) <= 0.2
    assert abs(tl.now_x - px(NOW)) <= 0.1
    crl_bar = tl.bars[-1]
    assert crl_bar.kind == "crl" and abs(crl_bar.x + crl_bar.width - px(parse_utc_text(rep.crl.next_update))) <= 0.2


def test_parse_now() -> None:
    march = parse_utc_text("2027-03-01T00:00:00Z")
    assert parse_now("2027-03-01T00:00:00Z") == march
    assert parse_now("2027-03-01T01:00:00+01:00") == march
    assert parse_now("2027-03-01") == march
    with pytest.raises(Malformed, match="--now 'tomorrow'"):
        parse_now("tomorrow")


def test_near_timeline_clips_to_the_months_around_now(ceremony: Ceremony) -> None:
    rep = _report(ceremony)
    tl = timeline(rep, (dt.timedelta(days=60), dt.timedelta(days=365)))
    assert tl is not None and rep.crl is not None and rep.crl.next_update is not None
    t0, t1 = NOW - dt.timedelta(days=60), NOW + dt.timedelta(days=365)
    assert (parse_utc_text(tl.axis_start), parse_utc_text(tl.axis_end)) == (t0, t1)

    def px(t: dt.datetime) -> float:
        t = min(max(t, t0), t1)
        return CHART_X0 + (t - t0) / (t1 - t0) * (CHART_X1 - CHART_X0)

    root, crl = tl.bars[0], tl.bars[-1]
    assert (root.x, root.x + root.width) == (CHART_X0, CHART_X1)  # valid across the whole window
    assert (root.before, root.after, crl.before, crl.after) == (True, True, True, False)  # the edge marks
    assert abs(crl.x + crl.width - px(parse_utc_text(rep.crl.next_update))) <= 0.2
    assert abs(tl.now_x - px(NOW)) <= 0.1
    labelled = [t for t in tl.ticks if t.label]
    assert len(tl.ticks) in (13, 14) and len(labelled) in (4, 5)  # a tick each month, a label each quarter
    for t in labelled:
        first = parse_utc_text(t.label + "-01T00:00:00Z")
        assert first.month in (1, 4, 7, 10) and abs(t.x - px(first)) <= 0.1
    page = render_html(rep).decode()
    assert page.count("<svg ") == 2 and 'aria-label="The months around the report time"' in page
    assert page.count("<polygon ") == sum(b.before + b.after for b in tl.bars)  # only the second chart clips


def test_jinja2_is_loaded_only_to_render() -> None:
    import subprocess
    import sys

    code = "import sys, airgap.cli, airgap.offline.report, airgap.offline.report_html; print('jinja2' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert r.stdout.strip() == "False"


def _cut_last_line(pki: Path) -> None:
    log = pki / "ceremony.log"
    log.write_bytes(log.read_bytes()[:-40])


def _drop_entry_3(pki: Path) -> None:
    log = pki / "ceremony.log"
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:2] + lines[3:]))


def _garble_entry_5(pki: Path) -> None:
    log = pki / "ceremony.log"
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join([*lines[:4], b"{garbled\n", *lines[5:]]))


def _remove_head(pki: Path) -> None:
    (pki / "ceremony-head.json").unlink()


@pytest.mark.parametrize(
    ("damage", "entry", "why"),
    [
        (_cut_last_line, 9, "entry 9 is incomplete"),
        (_drop_entry_3, 3, "entry 3 was removed"),
        (_garble_entry_5, 5, "entry at line 5 is not valid JSON"),
        (_remove_head, None, "the signed head is missing"),
    ],
)
def test_a_damaged_log_is_a_failing_report(ceremony: Ceremony, damage: Any, entry: int | None, why: str) -> None:
    damage(ceremony.pki)
    rep = _report(ceremony)
    assert not rep.verdict.verified and rep.verdict.failed_entry == entry
    assert why in (rep.verdict.error or "")
    title = scan_page(render_html(rep)).title
    assert title.startswith("Verification FAILED" + (f" at entry {entry}" if entry else ":"))


def test_oversized_history_is_bad_input(ceremony: Ceremony, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    record_event(BUNDLE_IMPORT, import_fields(ceremony), state=state, now=NOW)
    monkeypatch.setattr("airgap.core.history.HISTORY_CAP", 100)
    with pytest.raises(InvalidInput, match="history"):
        _report(ceremony, state)


def test_write_html_never_replaces(ceremony: Ceremony, tmp_path: Path) -> None:
    from airgap.offline.report_html import write_html

    out = tmp_path / "r.html"
    out.symlink_to(tmp_path / "elsewhere.html")
    with pytest.raises(WouldOverwrite, match="already exists"):
        write_html(_report(ceremony), out)
    assert not (tmp_path / "elsewhere.html").exists()
