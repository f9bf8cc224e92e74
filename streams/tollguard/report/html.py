"""The backtest report as one self-contained HTML page: inline CSS and SVG, no URLs.

Plots are drawn here as plain SVG so the page opens anywhere (mail, an
air-gapped SOC) without a plotting library or a network.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any

from tollguard.report.analysis import Ledger

MAX_TIMELINES = 12
BINS = 96
COLORS = {
    "domestic": "#b8c4d6",
    "international": "#3b6db3",
    "alert": "#e0a100",
    "block": "#c62828",
    "unblock": "#2e7d32",
    "attack": "#7b1fa2",
    "spend": "#111",
}

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:24px auto;max-width:1100px;
color:#1d2330;padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0}td,th{padding:3px 10px;border-bottom:1px solid #eee;
text-align:right}th{background:#f4f6fa}td:first-child,th:first-child{text-align:left}
.muted{color:#667}.kpi{display:inline-block;margin:6px 18px 6px 0}
.kpi b{display:block;font-size:20px}
.line{margin:18px 0}.legend span{margin-right:14px}.sw{display:inline-block;width:10px;height:10px;
margin-right:4px}svg text{font:11px system-ui,sans-serif;fill:#444}
"""


def _fmt_ts(ts: int | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _money(x: float | None) -> str:
    return "-" if x is None else f"{x:,.2f}"


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{th}</tr>{body}</table>"


def _decision_bars(decisions: Mapping[str, Mapping[str, int]]) -> str:
    if not decisions:
        return "<p class=muted>No decisions.</p>"
    rows = sorted(decisions.items())
    peak = max(max(v["alert"], v["block"], v["unblock"], 1) for _, v in rows)
    w, label_w, bar_h = 760, 180, 12
    h = len(rows) * (3 * bar_h + 10) + 10
    parts = [f'<svg width="{w}" height="{h}" role="img" aria-label="decisions per rule">']
    y = 8
    for rule, v in rows:
        parts.append(f'<text x="0" y="{y + 2 * bar_h}">{escape(rule)}</text>')
        for k, action in enumerate(("alert", "block", "unblock")):
            n = v[action]
            bw = (w - label_w - 60) * n / peak
            yy = y + k * bar_h
            parts.append(
                f'<rect x="{label_w}" y="{yy}" width="{bw:.1f}" height="{bar_h - 2}" '
                f'fill="{COLORS[action]}"/><text x="{label_w + bw + 4:.1f}" y="{yy + 9}">'
                f"{n} {action}</text>"
            )
        y += 3 * bar_h + 10
    parts.append("</svg>")
    return "".join(parts)


def _timeline(ledger: Ledger, row: Mapping[str, Any], alerts: Sequence[int]) -> str:
    line = ledger.lines[row["line_id"]]
    t0 = min(line.ts)
    t1 = max(line.ts)
    if "attack_start_ts" in row:
        # Zoom on the attack with context either side, unless the history is short.
        a0, a1 = row["attack_start_ts"], row["attack_end_ts"]
        pad = max((a1 - a0) // 2, 6 * 3_600_000)
        t0, t1 = max(t0, a0 - pad), min(t1, a1 + pad)
    span = max(t1 - t0, 60_000)
    w, h, left, top, plot_h = 1000, 175, 50, 12, 120
    pw = w - left - 60
    bins_d = [0] * BINS
    bins_i = [0] * BINS
    spend_pts: list[tuple[float, float]] = []
    total = 0.0
    for i, ts in enumerate(line.ts):
        if ts < t0 or ts > t1:
            continue
        b = min(BINS - 1, (ts - t0) * BINS // span)
        if line.intl[i]:
            bins_i[b] += 1
        else:
            bins_d[b] += 1
        total += line.cost[i]
        spend_pts.append(((ts - t0) / span, total))
    peak = max(max(d + i for d, i in zip(bins_d, bins_i, strict=True)), 1)
    bw = pw / BINS

    def x(ts: int) -> float:
        return left + pw * (ts - t0) / span

    out = [
        f'<svg width="{w}" height="{h}" role="img" aria-label="timeline {escape(row["line_id"])}">'
    ]
    for b in range(BINS):
        xx = left + b * bw
        hd = plot_h * bins_d[b] / peak
        hi = plot_h * bins_i[b] / peak
        if hd:
            out.append(
                f'<rect x="{xx:.1f}" y="{top + plot_h - hd:.1f}" width="{bw - 0.6:.1f}" '
                f'height="{hd:.1f}" fill="{COLORS["domestic"]}"/>'
            )
        if hi:
            out.append(
                f'<rect x="{xx:.1f}" y="{top + plot_h - hd - hi:.1f}" width="{bw - 0.6:.1f}" '
                f'height="{hi:.1f}" fill="{COLORS["international"]}"/>'
            )
    if spend_pts and total > 0:
        step = max(1, len(spend_pts) // 400)
        pts = " ".join(
            f"{left + pw * fx:.1f},{top + plot_h - plot_h * v / total:.1f}"
            for fx, v in [*spend_pts[::step], spend_pts[-1]]
        )
        out.append(
            f'<polyline points="{pts}" fill="none" stroke="{COLORS["spend"]}" stroke-width="1.4"/>'
        )
        out.append(f'<text x="{w - 56}" y="{top + 8}">{_money(total)}</text>')
    # Alerts: small ticks above the plot, one per pixel column at most.
    ticks = sorted({round(x(a)) for a in alerts if t0 <= a <= t1})
    for xx in ticks:
        out.append(
            f'<line x1="{xx}" x2="{xx}" y1="{top - 8}" y2="{top - 1}" '
            f'stroke="{COLORS["alert"]}" stroke-width="1.2"/>'
        )
    # Blocked intervals: a red band under the axis, plus a line at each block start.
    for blk in row["blocks"]:
        s = max(blk["start_ts"], t0)
        e = t1 if blk["end_ts"] is None else min(blk["end_ts"], t1)
        if e > s:
            out.append(
                f'<rect x="{x(s):.1f}" y="{top + plot_h + 2}" width="{max(x(e) - x(s), 1):.1f}" '
                f'height="6" fill="{COLORS["block"]}"/>'
            )
    marks: list[tuple[int, str, str]] = []
    if "attack_start_ts" in row:
        marks.append((row["attack_start_ts"], "attack", "4,3"))
    if row["blocks"]:
        marks.append((row["blocks"][0]["start_ts"], "block", ""))
    for ts, kind, dash in marks:
        if t0 <= ts <= t1:
            dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
            out.append(
                f'<line x1="{x(ts):.1f}" x2="{x(ts):.1f}" y1="{top}" y2="{top + plot_h}" '
                f'stroke="{COLORS[kind]}" stroke-width="1.6"{dash_attr}/>'
            )
    out.append(
        f'<line x1="{left}" x2="{left + pw}" y1="{top + plot_h}" y2="{top + plot_h}" '
        'stroke="#999"/>'
        f'<text x="{left}" y="{h - 22}">{_fmt_ts(t0)}</text>'
        f'<text x="{left + pw}" y="{h - 22}" text-anchor="end">{_fmt_ts(t1)}</text>'
        f'<text x="0" y="{top + 10}">{peak}</text><text x="0" y="{top + plot_h}">0</text>'
        f'<text x="{left + pw / 2}" y="{h - 22}" text-anchor="middle">calls per '
        f"{_fmt_s(span / BINS / 1000)} (bars), cumulative est. spend (line)</text></svg>"
    )
    return "".join(out)


def _loss_bars(lines: Sequence[Mapping[str, Any]]) -> str:
    attacked = [r for r in lines if r.get("attacked")]
    if not attacked:
        return ""
    attacked = sorted(attacked, key=lambda r: -r["attack_spend"])[:30]
    peak = max(max(r["attack_spend"] for r in attacked), 0.01)
    w, label_w, bh = 900, 160, 16
    h = len(attacked) * (bh + 6) + 10
    out = [f'<svg width="{w}" height="{h}" role="img" aria-label="loss before block">']
    for k, r in enumerate(attacked):
        y = 4 + k * (bh + 6)
        scale = (w - label_w - 240) / peak
        before = r["spend_before_block"] * scale
        prevented = r["spend_prevented"] * scale
        rest = max(0.0, r["attack_spend"] * scale - before - prevented)
        out.append(f'<text x="0" y="{y + 12}">{escape(r["line_id"])}</text>')
        x = float(label_w)
        for width, color in (
            (before, COLORS["block"]),
            (prevented, COLORS["unblock"]),
            (rest, "#bbb"),
        ):
            if width > 0:
                out.append(
                    f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="{bh}" fill="{color}"/>'
                )
                x += width
        out.append(
            f'<text x="{x + 6:.1f}" y="{y + 12}">{_money(r["spend_before_block"])} lost, '
            f"{_money(r['spend_prevented'])} stopped</text>"
        )
    out.append("</svg>")
    return "".join(out)


def render(report: Mapping[str, Any], ledger: Ledger, signals: Sequence[Mapping[str, Any]]) -> str:
    inp = report["input"]
    ev = report.get("evaluation")
    title = "tollguard backtest"
    if ev:
        title += f" — {ev['scenario']}"
    kpis = [
        ("events", f"{report['events']:,}"),
        ("lines", f"{inp['lines']:,}"),
        ("calls", f"{inp['calls']:,}"),
        ("blocked lines", str(len(report["blocked_lines"]))),
        ("alerted lines", str(len(report["alerted_lines"]))),
        ("events/s", f"{report['throughput']['events_per_s']:,.0f}"),
    ]
    if ev:
        kpis += [
            ("precision", _ratio(ev["precision"])),
            ("recall", _ratio(ev["recall"])),
            ("median time to block", _fmt_s((ev["time_to_block_s"] or {}).get("median"))),
            ("spend prevented", _ratio(ev["spend_prevented_share"])),
        ]
    parts = [
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
        f"<style>{CSS}</style></head><body><h1>{escape(title)}</h1>",
        f"<p class=muted>rules {escape(str(report['rules_version']))} "
        f"({escape(str(report['rules_file']))}); input {escape(', '.join(report['files']))}; "
        f"{_fmt_ts(inp['first_ts'])} to {_fmt_ts(inp['last_ts'])} UTC</p>",
        "".join(f"<div class=kpi><b>{escape(v)}</b>{escape(k)}</div>" for k, v in kpis),
    ]
    if ev:
        parts.append("<h2>Against the ground truth</h2>")
        parts.append(
            _table(
                ["metric", "value"],
                [
                    ["attacked lines", ev["attacked_lines"]],
                    ["blocked (true positives)", ev["true_positives"]],
                    ["legitimate lines blocked", len(ev["false_positive_lines"])],
                    ["legitimate lines alerted or blocked", ev["legit_lines_alerted"]],
                    [
                        "precision / recall (blocks)",
                        f"{_ratio(ev['precision'])} / {_ratio(ev['recall'])}",
                    ],
                    [
                        "calls before block (min / median / max)",
                        _triple(ev["calls_before_block"], str),
                    ],
                    ["time to block (min / median / max)", _triple(ev["time_to_block_s"], _fmt_s)],
                    ["estimated attack spend", _money(ev["attack_spend"])],
                    ["spend before block", _money(ev["spend_before_block"])],
                    ["spend a block would have stopped", _money(ev["spend_prevented"])],
                ],
            )
        )
        if ev["false_positive_lines"]:
            parts.append(
                "<p>Legitimate lines blocked: "
                + escape(", ".join(ev["false_positive_lines"][:50]))
                + "</p>"
            )
        parts.append("<h2>Loss before block</h2>")
        parts.append(
            '<p class=legend><span><i class=sw style="background:#c62828"></i>lost before the block'
            '</span><span><i class=sw style="background:#2e7d32"></i>stopped by the block</span>'
            '<span><i class=sw style="background:#bbb"></i>not covered (no block, out of scope '
            "or after expiry)</span></p>"
        )
        parts.append(_loss_bars(report["lines"]))
    parts.append("<h2>Decisions per rule</h2>")
    parts.append(_decision_bars(report["decisions_by_rule"]))
    parts.append(
        _table(
            ["rule", "alerts", "blocks", "unblocks", "lines"],
            [
                [r, v["alert"], v["block"], v["unblock"], v["lines"]]
                for r, v in sorted(report["decisions_by_rule"].items())
            ],
        )
    )
    parts.append("<h2>Lines with a decision</h2>")
    rows = []
    for r in report["lines"]:
        rows.append(
            [
                r["line_id"],
                "yes" if r["attacked"] else "",
                r["calls"],
                r["international_calls"],
                _money(r["spend"]),
                r["blocks"][0]["rule_id"] if r["blocks"] else "",
                _fmt_ts(r.get("first_block_ts")),
                _fmt_s(r.get("time_to_block_s")),
                r.get("calls_before_block", ""),
                _money(r.get("spend_before_block")),
            ]
        )
    parts.append(
        _table(
            [
                "line",
                "attacked",
                "calls",
                "intl",
                "est. spend",
                "first block rule",
                "blocked at (UTC)",
                "time to block",
                "calls before",
                "spend before",
            ],
            rows[:500],
        )
    )
    if len(rows) > 500:
        parts.append(f"<p class=muted>{len(rows) - 500} more lines in the JSON report.</p>")
    parts.append("<h2>Timelines</h2>")
    parts.append(
        '<p class=legend><span><i class=sw style="background:#b8c4d6"></i>domestic calls</span>'
        '<span><i class=sw style="background:#3b6db3"></i>international calls</span>'
        '<span><i class=sw style="background:#7b1fa2"></i>attack start</span>'
        '<span><i class=sw style="background:#e0a100"></i>alert (ticks above)</span>'
        '<span><i class=sw style="background:#c62828"></i>first block (line); blocked '
        "(band under the axis)</span></p>"
    )
    alerts: dict[str, list[int]] = {}
    from tollguard.report.analysis import epoch_ms

    for s in signals:
        if s["action"] == "alert":
            alerts.setdefault(s["line_id"], []).append(epoch_ms(s.get("event_ts")) or 0)
    chosen = sorted(
        report["lines"],
        key=lambda r: (not r["attacked"], not r["blocks"], -r.get("attack_spend", r["spend"])),
    )[:MAX_TIMELINES]
    for r in chosen:
        if r["line_id"] not in ledger.lines:
            continue
        label = " (attacked)" if r["attacked"] else ""
        parts.append(
            f"<div class=line><b>{escape(r['line_id'])}</b>{escape(label)} "
            f"<span class=muted>{r['calls']:,} calls, est. spend {_money(r['spend'])}</span>"
            + _timeline(ledger, r, alerts.get(r["line_id"], []))
            + "</div>"
        )
    if len(report["lines"]) > MAX_TIMELINES:
        parts.append(
            f"<p class=muted>Timelines for the first {MAX_TIMELINES} of "
            f"{len(report['lines'])} lines (attacked and blocked first).</p>"
        )
    parts.append(
        f"<p class=muted>Spend is estimated: {escape(report['spend_model']['note'])}; rates from "
        f"{escape(report['spend_model']['rates'])}.</p></body></html>"
    )
    return "\n".join(parts)


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def _triple(summary: Mapping[str, float] | None, fmt: Any) -> str:
    if not summary:
        return "-"
    return " / ".join(fmt(summary[k]) for k in ("min", "median", "max"))
