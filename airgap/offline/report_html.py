"""The auditor's report as one self-contained HTML page (Jinja2, autoescape on), and its SVG timeline.

The page loads nothing: no script, no stylesheet, font or image from anywhere; CSS is inline.
Every string shown comes from the report's data and goes through :func:`airgap.core.display.clean`
(control characters made visible) and then Jinja2's HTML escaping: a subject such as
``<img src=x onerror=alert(1)>`` is text on the page, never markup.

The timeline's geometry is computed here, deterministically: the axis runs from the earliest
start to the latest end among the bars and "now" (no padding), each bar is placed linearly by its
dates, coordinates are rounded to 0.1 px. Colours are solid and fixed per kind, so a test (or an
auditor) can read the picture.

Trust: the report's data is shown as text; nothing here decides anything.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from airgap.core.canonical import parse_utc_text
from airgap.core.display import clean
from airgap.offline.report import AuditReport

TEMPLATE = "report.html.j2"
# The timeline's fixed layout (CSS pixels; the SVG is drawn at this size, never scaled).
SVG_WIDTH = 1000
LABEL_X = 8
CHART_X0 = 330
CHART_X1 = 990
AXIS_H = 28
ROW_H = 24
BAR_H = 14
# One solid colour per kind of bar; the legend and docs/audit.md name them.
COLOURS = {
    "root": "#1d4ed8",
    "next root": "#7c3aed",
    "retired root": "#64748b",
    "intermediate": "#059669",
    "archived intermediate": "#a3a3a3",
    "revoked": "#dc2626",
    "expiring": "#ea580c",
    "crl": "#0891b2",
    "now": "#000000",
    "chart": "#eef2f7",
    "near chart": "#f5f3ee",
}
# The second timeline: the months around the report time, where expiries and the CRL's nextUpdate show.
NEAR_WINDOW = (dt.timedelta(days=60), dt.timedelta(days=365))


@dataclass(frozen=True)
class Bar:
    label: str
    kind: str
    colour: str
    start: str
    end: str
    x: float
    width: float
    y: float
    before: bool = False  # starts before the axis (clipped): drawn with a mark at the left edge
    after: bool = False  # ends after the axis (clipped): drawn with a mark at the right edge


@dataclass(frozen=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True)
class Timeline:
    width: int
    height: int
    x0: int
    x1: int
    axis_start: str
    axis_end: str
    now_x: float
    chart_top: int
    chart_height: int
    bars: tuple[Bar, ...]
    ticks: tuple[Tick, ...]


def _bar_colour(role: str, status: str) -> str:
    if status == "revoked":
        return COLOURS["revoked"]
    if status == "expiring" and role in ("root", "intermediate"):
        return COLOURS["expiring"]
    return COLOURS[role]


def _spans(report: AuditReport) -> list[tuple[str, str, str, str, str]]:
    """(label, kind, colour, start, end) of each bar: every certificate, then the CRL."""
    spans = []
    for c in report.certificates:
        who = f"{c.role} {c.cluster}" if c.cluster else c.role
        label = f"{who} · to {c.not_after[:10]} · {c.status}"
        spans.append((label, c.role, _bar_colour(c.role, c.status), c.not_before, c.not_after))
    crl = report.crl
    if crl is not None and crl.next_update is not None:
        label = f"CRL {crl.number} · next update {crl.next_update[:10]} · {crl.status}"
        spans.append((label, "crl", COLOURS["crl"], crl.this_update, crl.next_update))
    return spans


def _ticks(start: dt.datetime, end: dt.datetime, x: Callable[[dt.datetime], float]) -> tuple[Tick, ...]:
    """Year ticks (every 1, 5 or 10 years) on a long axis; month ticks on one under two years."""
    if (end - start).days < 730:
        firsts = []
        y, m = start.year, start.month
        while True:
            y, m = (y + 1, 1) if m == 12 else (y, m + 1)
            t = dt.datetime(y, m, 1, tzinfo=dt.UTC)
            if t >= end:
                break
            firsts.append(Tick(x(t), f"{y}-{m:02d}" if m in (1, 4, 7, 10) else ""))
        return tuple(firsts)
    years = end.year - start.year
    step = 1 if years <= 12 else 5 if years <= 60 else 10
    return tuple(
        Tick(x(dt.datetime(year, 1, 1, tzinfo=dt.UTC)), str(year))
        for year in range(start.year + 1, end.year + 1)
        if year % step == 0
    )


def timeline(report: AuditReport, window: tuple[dt.timedelta, dt.timedelta] | None = None) -> Timeline | None:
    """The bars of every certificate's validity and the CRL's nextUpdate against ``generated``.

    Without ``window`` the axis runs from the earliest start to the latest end (or now); with
    ``window`` (before, after) it runs from now - before to now + after and bars are clipped to it.
    """
    spans = _spans(report)
    if not spans:
        return None
    now = parse_utc_text(report.generated)
    if window is None:
        times = [parse_utc_text(t) for s in spans for t in (s[3], s[4])] + [now]
        start, end = min(times), max(times)
    else:
        start, end = now - window[0], now + window[1]
    total = (end - start).total_seconds() or 1.0

    def x(t: dt.datetime) -> float:
        at = min(max(t, start), end)  # clipped to the axis
        return round(CHART_X0 + (at - start).total_seconds() / total * (CHART_X1 - CHART_X0), 1)

    bars = []
    for i, (label, kind, colour, a, b) in enumerate(spans):
        ta, tb = parse_utc_text(a), parse_utc_text(b)
        xa, xb = x(ta), x(tb)
        y = AXIS_H + i * ROW_H + (ROW_H - BAR_H) / 2
        width = 0.0 if xb <= xa and window is not None else round(max(xb - xa, 1.0), 1)
        shown = width > 0
        bars.append(Bar(label, kind, colour, a, b, xa, width, y, shown and ta < start, shown and tb > end))
    return Timeline(
        width=SVG_WIDTH,
        height=AXIS_H + len(spans) * ROW_H + 8,
        x0=CHART_X0,
        x1=CHART_X1,
        axis_start=_text(start),
        axis_end=_text(end),
        now_x=x(now),
        chart_top=AXIS_H,
        chart_height=len(spans) * ROW_H,
        bars=tuple(bars),
        ticks=_ticks(start, end, x),
    )


def _text(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _finalize(value: Any) -> Any:
    """Every ``{{ value }}`` goes through this before escaping: strings lose their control characters."""
    if value is None:
        return ""
    if hasattr(value, "__html__"):  # markup the template itself made (a macro's output), never data
        return value
    return clean(value) if isinstance(value, str) else value


def render_html(report: AuditReport) -> bytes:
    """The page's bytes (UTF-8): the same report gives the same bytes."""
    import jinja2  # only the report command loads the template engine

    env = jinja2.Environment(
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    source = resources.files("airgap").joinpath("data", TEMPLATE).read_text(encoding="utf-8")
    near = timeline(report, NEAR_WINDOW)
    page = env.from_string(source).render(r=report, v=report.verdict, tl=timeline(report), near=near, colours=COLOURS)
    return page.encode("utf-8")


def write_html(report: AuditReport, out: Path) -> None:
    """Write the page to ``out`` atomically; an existing file is never replaced (:class:`Refused`, exit 4)."""
    from airgap.core.atomic import write_new

    write_new(out, render_html(report))


__all__ = ["COLOURS", "Bar", "Timeline", "render_html", "timeline", "write_html"]
