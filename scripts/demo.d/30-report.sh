# The auditor's report (issue 25): one self-contained HTML page from the verified ceremony log, the PKI
# folder and the jump host's history (what crossed the gap). Sourced by scripts/demo.sh: sees DEMO,
# AIRGAP, say, and AIRGAP_STATE_DIR (the jump host's state folder the demo's imports and extract use).
say "The auditor's report: the log verified, every act and certificate, the validity timeline, what the jump host recorded"
$AIRGAP audit report "$DEMO/pki" --trust "$DEMO/keys/officer.pub" --state "${AIRGAP_STATE_DIR:-$DEMO/jump/state}" \
  --out "$DEMO/report.html"
echo "   open $DEMO/report.html in any browser: one file, nothing loaded from anywhere (docs/audit.md)"
echo "  report.html                                              the auditor's report: verdict, acts, certificates, timeline, jump host" >> "$DEMO/MADE"
