#!/usr/bin/env bash
# Install the system tools the tests use for interop: openssl, age, softhsm2, kubectl (kustomize builds);
# and for the offline kit's tests: debootstrap (the clean-room Debian root), unshare (util-linux),
# sha256sum (coreutils); for images, fleet trust and the audit report: a real OCI registry
# (docker-registry), skopeo and umoci, htpasswd (apache2-utils), promtool (prometheus), headless
# chromium, faketime.
# Idempotent; uses apt-get when run as root on Debian/Ubuntu, otherwise says what is missing.
set -euo pipefail
need=()
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v age >/dev/null 2>&1 || need+=(age)
[ -e /usr/lib/softhsm/libsofthsm2.so ] || need+=(softhsm2)
command -v kubectl >/dev/null 2>&1 || need+=(KUBECTL)
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || need+=(debootstrap)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
command -v sha256sum >/dev/null 2>&1 || need+=(coreutils)
command -v docker-registry >/dev/null 2>&1 || [ -x /usr/bin/docker-registry ] || need+=(docker-registry)
command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
command -v umoci >/dev/null 2>&1 || need+=(umoci)
command -v htpasswd >/dev/null 2>&1 || need+=(apache2-utils)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v faketime >/dev/null 2>&1 || need+=(faketime)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  # kubectl: the package of that name where a source has it, else Debian's kubernetes-client
  kube=kubernetes-client
  apt-cache show kubectl >/dev/null 2>&1 && kube=kubectl
  need=("${need[@]/#KUBECTL/$kube}")
  apt-get install -y -qq "${need[@]}" >/dev/null
else
  need=("${need[@]/#KUBECTL/kubectl}")
  echo "missing system packages: ${need[*]} (install them, e.g. sudo apt-get install ${need[*]})" >&2
  exit 1
fi
