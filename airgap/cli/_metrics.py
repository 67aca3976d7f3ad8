"""``--prometheus`` / ``--prometheus-file PATH`` of ``ca list`` and ``mesh status``: the options and
where their bytes go. The metrics themselves are :mod:`airgap.core.expiry_metrics`'s."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from airgap.core.expiry_metrics import Metrics

PrometheusOpt = typer.Option(
    False,
    "--prometheus",
    help="Print the Prometheus text format on stdout instead of the report (x509_cert_not_after per certificate; "
    "see docs/monitoring.md). The exit code is the report's.",
)
PrometheusFileOpt = typer.Option(
    None,
    "--prometheus-file",
    help="Also write the Prometheus text format to PATH, atomically (for node_exporter's textfile collector: "
    "PATH ends in .prom, in the collector's folder).",
)


def check_outputs(as_json: bool, prometheus: bool) -> None:
    """``--json`` and ``--prometheus`` both own stdout: a usage error (exit 2) to give both."""
    if as_json and prometheus:
        raise typer.BadParameter("--json and --prometheus both print on stdout; choose one")


def emit(metrics: Metrics, *, stdout: bool, path: Path | None) -> None:
    """Render once; write ``path`` (atomically) first, then stdout, so a closed pipe cannot stop the file."""
    from airgap.core.expiry_metrics import exposition, write_textfile

    data = exposition(metrics)
    if path is not None:
        write_textfile(path, data)
    if stdout:
        sys.stdout.flush()
        sys.stdout.write(data.decode("utf-8"))
        sys.stdout.flush()
