# Issue 23, the offline half: what the root host refuses or reports instead of saying "fine".
# Sourced by scripts/demo.sh: sees DEMO, AIRGAP, say. Works on a copy of the PKI (pki-drill/), so
# the walk's own PKI and its ceremony log are untouched.

say "Refused: adopting a root with pathlen:0 (it could not sign a chain that validates)"
mkdir -p "$DEMO/drill"
printf '%s\n' "[ req ]" "prompt = no" "distinguished_name = dn" "x509_extensions = ext" "[ dn ]" "CN = Root CA" \
  "[ ext ]" "basicConstraints = critical, CA:true, pathlen:0" "keyUsage = critical, keyCertSign, cRLSign" \
  > "$DEMO/drill/root.conf"
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -config "$DEMO/drill/root.conf" \
  -keyout "$DEMO/drill/root-key.pem" -out "$DEMO/drill/root-cert.pem" 2>/dev/null
if $AIRGAP ca init --dir "$DEMO/drill/pki" --adopt-cert "$DEMO/drill/root-cert.pem" \
  --adopt-key "$DEMO/drill/root-key.pem" --passphrase-file "$DEMO/passphrase.txt"; then
  echo "UNEXPECTED: a root that cannot sign a valid chain was adopted" >&2
  exit 1
fi

say "Refused: certifying cluster3's old key again (it was revoked and archived by the rotation)"
cp -a "$DEMO/pki" "$DEMO/pki-drill"
old_key=$(ls "$DEMO"/pki-drill/archive/cluster3/*/ca-key.pem | head -1)
openssl req -new -key "$old_key" -passin "file:$DEMO/passphrase.txt" -subj /CN=again -out "$DEMO/drill/again.csr"
if $AIRGAP ca sign "$DEMO/drill/again.csr" --cluster cluster7 --dir "$DEMO/pki-drill" --out "$DEMO/drill/signed" \
  --passphrase-file "$DEMO/passphrase.txt"; then
  echo "UNEXPECTED: a key airgap certified before was certified again" >&2
  exit 1
fi

say "Noticed: a lost cluster folder (ca list needs no passphrase; audit verify says so too)"
rm -rf "$DEMO/pki-drill/cluster2"
if $AIRGAP ca list --dir "$DEMO/pki-drill" >/dev/null; then
  echo "UNEXPECTED: ca list said a PKI without cluster2 was fine" >&2
  exit 1
fi
if $AIRGAP audit verify "$DEMO/pki-drill" --trust "$DEMO/keys/officer.pub" >/dev/null; then
  echo "UNEXPECTED: audit verify passed a PKI without cluster2" >&2
  exit 1
fi
echo "  pki-drill/, drill/                                       the offline refusals' scratch copies (issue 23)" >> "$DEMO/MADE"
