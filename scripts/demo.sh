#!/usr/bin/env bash
# The offline ceremony, then the air-gap workflow, in a fresh folder (./demo by default).
set -euo pipefail
cd "$(dirname "$0")/.."
AIRGAP="${AIRGAP:-.venv/bin/airgap}"
DEMO="${1:-demo}"
rm -rf "$DEMO"
mkdir -p "$DEMO"
umask 077
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "1. The security officer picks a passphrase for the PKI folder (kept in a file here; a prompt in real life)"
head -c 24 /dev/urandom | base64 > "$DEMO/passphrase.txt"
echo "   $DEMO/passphrase.txt"

say "2. Root CA on the offline host (ECDSA P-384 for the demo's speed; the default is RSA-4096)"
$AIRGAP ca init --dir "$DEMO/pki" --key-type ecdsa-p384 --passphrase-file "$DEMO/passphrase.txt"

say "3. One intermediate CA per cluster, issued in parallel"
$AIRGAP ca issue cluster1 cluster2 cluster3 --dir "$DEMO/pki" --key-type ecdsa-p256 \
  --passphrase-file "$DEMO/passphrase.txt"

say "4. The inventory: every intermediate checked as istiod would"
$AIRGAP ca list --dir "$DEMO/pki" --passphrase-file "$DEMO/passphrase.txt"

say "5. The officer's signing key for transfer bundles"
$AIRGAP keys new officer --kind signing --out "$DEMO/keys" --passphrase-file "$DEMO/passphrase.txt"

cat <<MSG

What was made, in $DEMO/:
  pki/root-cert.pem, pki/root-key.pem (encrypted, 0600)    the offline root
  pki/clusterN/{ca-cert,ca-key,cert-chain,root-cert}.pem   each cluster's cacerts files
  pki/inventory.json                                       what was issued, when, until when
  keys/officer.key (encrypted, 0600), keys/officer.pub     the bundle signing key

Next: carry each cluster's files across the gap in a signed, encrypted bundle (airgap bundle
create), verify it on the jump host (airgap bundle verify) and import it (airgap bundle import).
MSG
