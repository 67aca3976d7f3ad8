# shellcheck shell=bash
# Expiry for monitoring (issue 24 item 4; docs/monitoring.md): the offline PKI's dates and each live
# cluster's cacerts as Prometheus metrics, for node_exporter's textfile collector, and the alert rules.
# Sourced by scripts/demo.sh after the emulator section (DEMO, AIRGAP, say, KUBECONFIG of emu-1/emu-2).

mkdir -p "$DEMO/metrics"

say "--- Expiry for monitoring: every NotAfter and the CRL's nextUpdate, as Prometheus metrics"

say "The offline PKI's root, next root, intermediates and CRL (certificates only: no passphrase)"
$AIRGAP ca list --dir "$DEMO/pki" --prometheus
$AIRGAP ca list --dir "$DEMO/pki" --prometheus-file "$DEMO/metrics/airgap-pki.prom" >/dev/null
$AIRGAP ca list --dir "$DEMO/pki" --prometheus | cmp - "$DEMO/metrics/airgap-pki.prom"
echo "   the same bytes on every run (absolute times only): $DEMO/metrics/airgap-pki.prom"

say "The live cacerts of emu-1 as the jump host reads it (printed even when the status exits 1)"
metrics_rc=0
$AIRGAP mesh status --context emu-1 --prometheus || metrics_rc=$?
echo "   mesh status exit code: $metrics_rc"
metrics_rc=0
$AIRGAP mesh status --context emu-1 --context emu-2 --prometheus-file "$DEMO/metrics/airgap-mesh.prom" \
  >/dev/null || metrics_rc=$?
echo "   both clusters into $DEMO/metrics/airgap-mesh.prom (exit code $metrics_rc)"

if command -v promtool >/dev/null 2>&1; then
  say "promtool: both outputs lint clean, and the alert rules check and pass their unit tests"
  promtool check metrics < "$DEMO/metrics/airgap-pki.prom"
  promtool check metrics < "$DEMO/metrics/airgap-mesh.prom"
  echo "   promtool check metrics: nothing to report"
  promtool check rules monitoring/airgap-rules.yml
  promtool test rules tests/monitoring/airgap-rules.test.yml
else
  echo "   (promtool not installed: apt-get install prometheus to lint the metrics and test the rules)"
fi

cat >> "$DEMO/MADE" <<MADE
  metrics/airgap-pki.prom                                  ca list --prometheus-file: the PKI's expiry dates
  metrics/airgap-mesh.prom                                 mesh status --prometheus-file: emu-1/emu-2's cacerts
MADE
