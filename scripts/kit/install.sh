#!/bin/sh
# Install the airgap offline kit into a new folder, with no network at all.
#
#   sh install.sh --prefix DIR [--python PYTHON] [--verify-key kit.pub]
#
# Needs only python3 (with its venv module) and sha256sum. In order:
#   0. everything in the kit must be a regular file (no link, device or fifo), and the kit is copied
#      into a private temporary folder (mode 0700): every later step reads that copy only, so what
#      is hashed is what is installed, whoever can change the kit folder meanwhile;
#   1. with --verify-key: openssl checks SHA256SUMS.sig over SHA256SUMS first;
#   2. SHA256SUMS is checked: every file of the kit listed, none missing, none extra, every hash
#      right; if one byte differs nothing is installed, DIR is not created, the exit is non-zero;
#   3. DIR must not exist; a venv is made in DIR.partial and pip installs requirements.lock with
#      --no-index --find-links wheels --require-hashes --only-binary=:all: (pip's own config and
#      environment ignored), then DIR.partial is renamed to DIR. A failure removes DIR.partial.
# DIR/bin/airgap is the tool; DIR/share/airgap-kit/ keeps SHA256SUMS, the lock and the SBOM for
# `airgap doctor`, which re-checks the installed files.
set -eu
umask 022

die() { printf 'install.sh: error: %s\n' "$1" >&2; exit "${2:-1}"; }
usage() { printf 'usage: sh install.sh --prefix DIR [--python PYTHON] [--verify-key kit.pub]\n' >&2; exit 2; }

prefix=""
python="python3"
verify_key=""
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) [ $# -ge 2 ] || usage; prefix="$2"; shift 2 ;;
    --prefix=*) prefix="${1#--prefix=}"; shift ;;
    --python) [ $# -ge 2 ] || usage; python="$2"; shift 2 ;;
    --verify-key) [ $# -ge 2 ] || usage; verify_key="$2"; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) usage ;;
  esac
done
[ -n "$prefix" ] || usage

kit=$(cd "$(dirname "$0")" && pwd -P)
case "$prefix" in /*) ;; *) prefix="$(pwd -P)/$prefix" ;; esac
prefix="${prefix%/}"
[ -n "$prefix" ] || die "--prefix must not be /" 2
nl='
'
case "$prefix" in *"$nl"*) die "--prefix must not hold a line break" 2 ;; esac
partial="$prefix.partial"

# 0. Regular files only, then a private copy that every later step reads (no swap after the check).
odd=$(cd "$kit" && find . ! -type d ! -type f | sed 's|^\./||' | head -n 1)
[ -z "$odd" ] || die "kit holds $odd, which is not a regular file (a link, device or fifo): nothing installed"
work=$(mktemp -d "${TMPDIR:-/tmp}/airgap-kit.XXXXXX") || die "cannot make a private temporary folder"
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM HUP
chmod 700 "$work"
cp -RP "$kit/." "$work/kit" 2>/dev/null || die "cannot copy the kit to $work: nothing installed"
odd=$(cd "$work/kit" && find . ! -type d ! -type f | sed 's|^\./||' | head -n 1)
[ -z "$odd" ] || die "kit holds $odd, which is not a regular file (a link, device or fifo): nothing installed"
source_kit="$kit"
kit="$work/kit"

# 1. The signature (optional here: the officer normally runs openssl by hand, see README).
if [ -n "$verify_key" ]; then
  command -v openssl >/dev/null 2>&1 || die "--verify-key needs openssl"
  openssl dgst -sha256 -verify "$verify_key" -signature "$kit/SHA256SUMS.sig" "$kit/SHA256SUMS" >/dev/null 2>&1 \
    || die "SHA256SUMS.sig does not verify with $verify_key: nothing installed"
fi

# 2. SHA256SUMS: the listed names must be exactly the kit's files, and every hash must match.
[ -f "$kit/SHA256SUMS" ] || die "SHA256SUMS is missing: nothing installed"
command -v sha256sum >/dev/null 2>&1 || die "sha256sum is needed (coreutils)"
listed=$(sed 's/^[0-9a-f]\{64\}  //' "$kit/SHA256SUMS" | LC_ALL=C sort)
present=$(cd "$kit" && find . ! -type d ! -name SHA256SUMS ! -name SHA256SUMS.sig | sed 's|^\./||' | LC_ALL=C sort)
if [ "$(grep -vc '^[0-9a-f]\{64\}  [A-Za-z0-9._+/-]*$' "$kit/SHA256SUMS" || true)" != 0 ]; then
  die "SHA256SUMS has a malformed line: nothing installed"
fi
if [ "$listed" != "$present" ]; then
  extra=$(printf '%s\n' "$present" | grep -vxF "$listed" | head -n 1 || true)
  missing=$(printf '%s\n' "$listed" | grep -vxF "$present" | head -n 1 || true)
  [ -n "$missing" ] && die "kit file missing: $missing: nothing installed"
  die "kit has a file not in SHA256SUMS: $extra: nothing installed"
fi
bad=$(cd "$kit" && LC_ALL=C sha256sum -c SHA256SUMS 2>/dev/null | grep -v ': OK$' | head -n 1 || true)
[ -z "$bad" ] || die "kit file changed: ${bad%%:*}: nothing installed"
(cd "$kit" && sha256sum -c --status SHA256SUMS) || die "SHA256SUMS check failed: nothing installed"

# 3. Install into DIR.partial, then rename.
[ ! -e "$prefix" ] || die "$prefix already exists; refusing to install over it" 4
[ ! -e "$partial" ] || die "$partial exists (an interrupted install?); remove it first" 4
command -v "$python" >/dev/null 2>&1 || die "$python not found (install python3 and python3-venv)"
parent=$(dirname "$prefix")
[ -d "$parent" ] || die "$parent does not exist"

cleanup() { rm -rf "$partial" "$work"; }
trap 'cleanup' EXIT
trap 'exit 130' INT TERM HUP

"$python" -m venv "$partial" >/dev/null || die "$python -m venv failed (on Debian: apt-get install python3-venv)"
env -i PATH="/usr/bin:/bin" HOME="$partial" PIP_CONFIG_FILE=/dev/null PYTHONNOUSERSITE=1 \
  "$partial/bin/python" -m pip install --quiet --no-index --find-links "$kit/wheels" \
  --require-hashes --only-binary=:all: --no-compile --disable-pip-version-check --no-input \
  -r "$kit/requirements.lock" || die "pip install from the kit failed: nothing installed"

# Scripts and pyvenv.cfg name the folder they were made in; point them at DIR before the rename.
for f in "$partial"/bin/* "$partial/pyvenv.cfg"; do
  [ -f "$f" ] && [ ! -L "$f" ] || continue
  if grep -qF "$partial" "$f" 2>/dev/null; then
    # The paths go through the environment: awk -v would read a backslash in them as an escape.
    AIRGAP_FROM="$partial" AIRGAP_TO="$prefix" awk 'BEGIN { from = ENVIRON["AIRGAP_FROM"]; to = ENVIRON["AIRGAP_TO"] }
      { out = ""; while ((i = index($0, from)) > 0) { out = out substr($0, 1, i - 1) to; $0 = substr($0, i + length(from)) }
        print out $0 }' "$f" > "$f.tmp"
    if [ -x "$f" ]; then chmod 755 "$f.tmp"; else chmod 644 "$f.tmp"; fi
    mv "$f.tmp" "$f"
  fi
done
"$partial/bin/python" -m compileall -q -j 0 -s "$partial" -p "$prefix" "$partial/lib" >/dev/null \
  || die "compiling the installed modules failed: nothing installed"

share="$partial/share/airgap-kit"
mkdir -p "$share"
cp "$kit/SHA256SUMS" "$kit/SHA256SUMS.sig" "$kit/requirements.lock" "$kit/sbom.cdx.json" "$share/"
printf '%s\n' "$source_kit" > "$share/source"

[ ! -e "$prefix" ] || die "$prefix appeared during the install; refusing to replace it" 4
mv "$partial" "$prefix"
rm -rf "$work"
trap - EXIT
printf 'installed airgap into %s (%s/bin/airgap); check it with: %s/bin/airgap doctor\n' "$prefix" "$prefix" "$prefix"
