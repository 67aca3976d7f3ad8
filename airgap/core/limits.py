"""Size limits in one place (after python-tuf's ``ngclient/config.py``).

Parsers of untrusted input take a :class:`Limits` and refuse anything beyond it before reading
further. Commands use :data:`DEFAULT_LIMITS`; tests pass smaller ones.
"""

from __future__ import annotations

from dataclasses import dataclass

GiB = 1024**3
MiB = 1024**2


@dataclass(frozen=True)
class Limits:
    max_bundle_size: int = 16 * GiB
    max_member_size: int = 8 * GiB
    max_members: int = 256
    max_manifest_size: int = 1 * MiB
    max_download_size: int = 4 * GiB
    max_archive_total: int = 8 * GiB  # sum of extracted sizes (release tarballs)
    max_archive_members: int = 100_000
    max_archive_ratio: int = 200  # uncompressed / compressed: a decompression bomb beyond this
    max_pem_size: int = 1 * MiB


DEFAULT_LIMITS = Limits()


# Fixed caps for small files read whole (a file larger than its cap is refused, exit 3, before
# it is parsed). Commands do not change these; they are here so every limit lives in one place.
MAX_KEY_FILE = 1 * MiB  # a PEM private key
MAX_SIGNATURE = 64 * 1024  # a detached signature file
MAX_PASSPHRASE_FILE = 64 * 1024  # a passphrase or PIN file
MAX_IDENTITY_FILE = 64 * 1024  # an age identity file
MAX_RECIPIENTS_FILE = 64 * 1024  # an age recipients file
MAX_LOG_BYTES = 64 * MiB  # a ceremony log
MAX_OVERLAY = 1 * MiB  # an IstioOperator overlay (mesh install)

# -- ranges of the numbers a user gives (options); the CLI enforces them (exit 2), the library too (exit 3)
MAX_VALIDITY_DAYS = 36_500  # 100 years: far beyond any sane CA, far below datetime's year 9999
MAX_CRL_DAYS = 3_650  # nextUpdate of a CRL
MAX_WINDOW_DAYS = 36_500  # ca list --expiring-within
MAX_WORKERS = 256
MAX_RETRIES = 100
MAX_TIMEOUT = 86_400.0  # seconds: one day
MAX_PARALLEL = 256
MAX_BUNDLE_EXPIRY_DAYS = 3_650  # bundle create --expires (airgap.core.bundle.MAX_EXPIRY_DAYS)
MAX_SPEED_LIMIT = 1024**4  # release fetch --speed-limit, bytes/s

# -- JSON read by airgap.core.canonical.load_json (every reader of JSON goes through it)
MAX_JSON_DEPTH = 64  # nesting of arrays/objects: refused before json.loads can hit RecursionError
MAX_JSON_BYTES = 16 * MiB  # a state file, record or server answer read whole
MAX_KUBE_ANSWER = 256 * MiB  # one answer of the Kubernetes API server (a list of objects)
MAX_KUBE_DEPTH = 256  # objects from the API server nest deeper than airgap's own files

# -- images across the gap (airgap.core.oci, airgap.core.images_bundle)
MAX_OCI_MANIFEST = 4 * MiB  # one image manifest or index (registries refuse more than 4 MiB)
MAX_OCI_DESCRIPTORS = 4_096  # layers of one manifest, or manifests of one index
MAX_IMAGE_MEMBERS = 65_536  # blobs in one images bundle
MAX_IMAGES_MANIFEST = 16 * MiB  # the signed manifest of an images bundle (one line per blob)
MAX_IMAGES = 1_024  # images in one images bundle
MIN_SPLIT_SIZE = 1 * MiB  # images pull --split: smaller parts are a mistake
