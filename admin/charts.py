"""Charts as SVG drawn on the server: no script, no CDN (the machine has no internet), and
they print like the page. Only figures the role may see are ever passed in (the report's
`figures(role)`), so a chart cannot show an operator a cost."""

from __future__ import annotations

from decimal import Decimal

from markupsafe import Markup, escape

from admin.report_query import MONEY, Report

WIDTH, BAR, GAP, LEFT = 640, 16, 4, 170


def bar_chart(title: str, points: list[tuple[str, Decimal | int]], unit: str = "") -> Markup:
    """Horizontal bars, one per (label, value); negative values drawn to the left of zero."""
    values = [Decimal(v) for _, v in points]
    top = max([abs(v) for v in values] + [Decimal(1)])
    has_negative = any(v < 0 for v in values)
    zero = LEFT + (WIDTH - LEFT - 80) // 2 if has_negative else LEFT
    span = (WIDTH - 80 - zero) if not has_negative else (WIDTH - LEFT - 80) // 2
    height = 24 + len(points) * (BAR + GAP)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{WIDTH}" '
        f'height="{height}" viewBox="0 0 {WIDTH} {height}" class="report-chart">',
        f"<title>{escape(title)}</title>",
        f'<text x="0" y="14" font-size="13" font-weight="bold">{escape(title)}</text>',
    ]
    for i, ((label, _), value) in enumerate(zip(points, values, strict=True)):
        y = 24 + i * (BAR + GAP)
        length = int(abs(value) / top * span)
        x = zero if value >= 0 else zero - length
        parts.append(
            f'<text x="{LEFT - 6}" y="{y + BAR - 4}" font-size="11" text-anchor="end">'
            f"{escape(str(label)[:28])}</text>"
            f'<rect x="{x}" y="{y}" width="{max(length, 1)}" height="{BAR}" '
            f'fill="{"#c0392b" if value < 0 else "#2e6da4"}"/>'
            f'<text x="{zero + (length if value >= 0 else 0) + 4}" y="{y + BAR - 4}" '
            f'font-size="11">{escape(str(value))}{escape(unit)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (every text above is escaped)


def report_charts(report: Report, role: str, labels: dict, money) -> list[Markup]:
    """The charts that fit the grouping: over time amount and margin, by hour calls and ASR,
    by name the top ten shares; each from the role's own figures only."""
    rows = report.rows
    if not rows or report.group_by == "none":
        return []
    figures = [row.figures(role) for row in rows]
    margin = next((m for m in ("reseller_margin", "shop_margin") if m in figures[0]), None)
    if report.group_by in ("year", "month", "day"):
        charts = [(labels["credit"], "credit")]
        if margin:
            charts.append((labels[margin], margin))
        picked = list(zip(rows, figures, strict=True))
    elif report.group_by == "hour":
        charts = [(labels["calls"], "calls"), (labels["asr"], "asr")]
        picked = list(zip(rows, figures, strict=True))
    else:  # a share by name: the ten largest by customer amount
        charts = [(labels["credit"], "credit"), (labels["calls"], "calls")]
        picked = sorted(zip(rows, figures, strict=True), key=lambda p: -p[1]["credit"])[:10]
    out = []
    for title, name in charts:
        points = [
            (
                row.label,
                money(f[name]) if name in MONEY else f[name] or 0,
            )
            for row, f in picked
        ]
        out.append(bar_chart(str(title), points))
    return out
