# Issue 23, the connected half: what the jump host refuses instead of doing harm (each is exit 4,
# one line, nothing written). Sourced by scripts/demo.sh: sees DEMO, AIRGAP, say, KUBECONFIG.

say "Refused: cluster1's CA into emu-2, whose cacerts belongs to cluster2 (--rotate or not)"
if $AIRGAP bundle import "$DEMO/jump/cluster1.bundle" --trust "$DEMO/jump/officer.pub" \
  --identity "$DEMO/jump/keys/operator.key" --cluster cluster1 --context emu-2 --rotate; then
  echo "UNEXPECTED: another cluster's CA was accepted" >&2
  exit 1
fi

say "Refused: sidecar injection into kube-system without --force"
if $AIRGAP mesh inject kube-system --context emu-1 --restart; then
  echo "UNEXPECTED: kube-system was labelled" >&2
  exit 1
fi

say "Refused: an older release of a line this jump host already accepted (1.8.6-asm.8 was)"
if $AIRGAP release fetch 1.8.5-asm.1 --base-url "file://$(cd "$DEMO" && pwd)/mirror" \
  --key "$DEMO/mirror/release-key.pem" --out "$DEMO/jump/releases"; then
  echo "UNEXPECTED: a downgrade was fetched" >&2
  exit 1
fi
cat "$AIRGAP_STATE_DIR/releases.json"
echo "  jump/state/releases.json                              the newest release of each line this jump host accepted" >> "$DEMO/MADE"
