"""The ceremony log: a hash-chained, signed record of every act on a PKI folder.

Files (both in the PKI folder, both public, neither holds a secret)::

    PKI/ceremony.log        JSON Lines, one entry per act, oldest first
    PKI/ceremony-head.json  the last entry's sequence number and hash, signed by the officer

An entry is one line of canonical JSON (keys sorted, no spaces, ASCII)::

    {"act": "issue", "params": {...}, "prev": "<sha256 of the previous line>", "seq": 2,
     "signature": "<base64 DER ECDSA / RSA PKCS#1 v1.5>", "signer": "<key id>", "time": "...Z"}

* ``seq`` counts from 1; ``prev`` of entry 1 is 64 zeros; an entry's hash is the SHA-256 of its
  line (without the newline), so ``prev`` of entry N is the hash of line N-1.
* ``signature`` covers ``DOMAIN`` followed by the canonical JSON of the entry without
  ``signature``; ``signer`` is the key id (SHA-256 of the DER SubjectPublicKeyInfo) of the key that
  signed it.
* Entry 1 is always ``log-start``: it registers the officer's public key (``params.officer_key``,
  PEM) and lists the certificates that already existed (``params.existing_certificates``).

Trust: the log is *evidence*, not a trust anchor. :func:`verify_log` with ``trust`` keys (the
officer's ``.pub`` files, obtained out of band) is the real check; without them it checks the log
against the key the log registers itself, which proves internal consistency only (anyone who can
rewrite the whole folder can rewrite it with their own key). Truncation of the tail cannot be
seen from a hash chain alone: the signed head file, the certificates on disk (each must have an
entry) and a head hash from elsewhere (a bundle, the jump host's import record: ``expect_head``)
each catch it; all three are checked.

Removal: once a log exists, :func:`record` also writes ``"ceremony_log": {"officer_key_id", "started"}``
into ``PKI/inventory.json``. From then on (and whenever only one of the two files is left) a missing
``ceremony.log`` or ``ceremony-head.json`` is a *removed* log: :func:`prepare` refuses every act and
:func:`verify_log` fails (exit 1), instead of the folder silently becoming "unlogged". This is
evidence in the same folder: whoever can also edit ``inventory.json`` can still hide the log; only
a head hash kept outside the folder (``expect_head``) proves it existed.

Never logged: passphrases, PINs, private keys. :func:`record` refuses parameters that look like one.
"""

from __future__ import annotations

from airgap.offline.ceremony.log import (
    DOMAIN,
    GENESIS_PREV,
    HEAD_DOMAIN,
    Entry,
    Officer,
    VerifiedLog,
    _sha256,
    canonical,
)
from airgap.offline.ceremony.store import (
    ENV_LOG_KEY,
    HEAD_NAME,
    LOG_NAME,
    Prepared,
    _append,
    check_not_removed,
    check_pki_folder,
    check_recorded,
    existing_certificates,
    has_log,
    head_hash,
    head_path,
    load_officer,
    log_path,
    log_record,
    prepare,
    read_entries,
    record,
    record_all,
    verify_log,
)

__all__ = [
    "DOMAIN",
    "ENV_LOG_KEY",
    "GENESIS_PREV",
    "HEAD_DOMAIN",
    "HEAD_NAME",
    "LOG_NAME",
    "Entry",
    "Officer",
    "Prepared",
    "VerifiedLog",
    "_append",
    "_sha256",
    "canonical",
    "check_not_removed",
    "check_pki_folder",
    "check_recorded",
    "existing_certificates",
    "has_log",
    "head_hash",
    "head_path",
    "load_officer",
    "log_path",
    "log_record",
    "prepare",
    "read_entries",
    "record",
    "record_all",
    "verify_log",
]
