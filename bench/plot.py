#!/usr/bin/env python3
"""Draws the scaling curves of a bench/run.sh run as one SVG (stdlib only).

Usage: python3 bench/plot.py bench/out/results.jsonl OUT.svg

Four panels from the medians (over runs) of procshare-bench's
scaling_clients_N and scaling_value_N rows: throughput and p50/p99 latency
against client processes (16-byte values), and against value size (16
processes). Both x axes are logarithmic, latency axes too. Writes nothing
(and says so) when the results hold no scaling rows.
"""
import math
import os
import statistics
import sys
from collections import defaultdict
from html import escape

# report.py sits beside this file; import its reader of results.jsonl.
sys.dont_write_bytecode = True  # no __pycache__ in bench/
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import load  # noqa: E402

W, H = 1000, 660
PANEL_W, PANEL_H = 380, 220
MARGIN_L, MARGIN_T = 80, 90
GAP_X, GAP_Y = 70, 90
COLOURS = {"ops/s": "#1f77b4", "p50": "#2ca02c", "p99": "#d62728"}


def points(rows):
    """{curve: [(x, ops_per_s, p50, p99, runs)]}, medians over runs."""
    groups = defaultdict(list)
    for r in rows:
        wl = r.get("workload", "")
        if r.get("system") != "procshare":
            continue
        for curve, prefix in (("clients", "scaling_clients_"), ("value", "scaling_value_")):
            if wl.startswith(prefix) and wl[len(prefix):].isdigit():
                groups[(curve, int(wl[len(prefix):]))].append(r)
    out = defaultdict(list)
    for (curve, x), rs in sorted(groups.items()):
        med = lambda k: statistics.median([r[k] for r in rs if isinstance(r.get(k), (int, float))] or [0])
        out[curve].append((x, med("ops_per_s"), med("p50_us"), med("p99_us"), len(rs)))
    return out


def nice_max(v):
    if v <= 0:
        return 1
    e = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * e:
            return m * e
    return 10 * e


def human(v):
    for div, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            s = f"{v / div:.1f}".rstrip("0").rstrip(".")
            return s + suffix
    return f"{v:g}"


def size_label(b):
    if b >= 1024 and b % 1024 == 0:
        return f"{b // 1024} KiB"
    return f"{b} B"


class Panel:
    def __init__(self, x0, y0, title, xs, xlabel, ylabel, log_y, ymax, ymin=None):
        self.x0, self.y0, self.title = x0, y0, title
        self.xs, self.xlabel, self.ylabel = xs, xlabel, ylabel
        self.log_y, self.ymax = log_y, ymax
        self.ymin = ymin
        self.lx0, self.lx1 = math.log(min(xs)), math.log(max(xs))
        if self.lx1 == self.lx0:
            self.lx1 = self.lx0 + 1

    def px(self, x):
        return self.x0 + (math.log(x) - self.lx0) / (self.lx1 - self.lx0) * PANEL_W

    def py(self, y):
        if self.log_y:
            lo, hi = math.log10(self.ymin), math.log10(self.ymax)
            f = (math.log10(max(y, self.ymin)) - lo) / (hi - lo)
        else:
            f = y / self.ymax
        return self.y0 + PANEL_H - f * PANEL_H

    def frame(self, xtick_label):
        s = [f'<text x="{self.x0 + PANEL_W / 2}" y="{self.y0 - 12}" text-anchor="middle" '
             f'font-weight="bold">{escape(self.title)}</text>',
             f'<rect x="{self.x0}" y="{self.y0}" width="{PANEL_W}" height="{PANEL_H}" '
             'fill="none" stroke="#444"/>']
        for x in self.xs:
            X = self.px(x)
            s.append(f'<line x1="{X:.1f}" y1="{self.y0}" x2="{X:.1f}" y2="{self.y0 + PANEL_H}" stroke="#eee"/>')
            s.append(f'<text x="{X:.1f}" y="{self.y0 + PANEL_H + 16}" text-anchor="middle">'
                     f'{escape(xtick_label(x))}</text>')
        if self.log_y:
            ticks, t = [], 10 ** math.floor(math.log10(self.ymin))
            while t <= self.ymax * 1.0001:
                if t >= self.ymin:
                    ticks.append(t)
                t *= 10
        else:
            ticks = [self.ymax * i / 4 for i in range(5)]
        for t in ticks:
            Y = self.py(t)
            s.append(f'<line x1="{self.x0}" y1="{Y:.1f}" x2="{self.x0 + PANEL_W}" y2="{Y:.1f}" stroke="#eee"/>')
            s.append(f'<text x="{self.x0 - 6}" y="{Y + 4:.1f}" text-anchor="end">{human(t)}</text>')
        s.append(f'<text x="{self.x0 + PANEL_W / 2}" y="{self.y0 + PANEL_H + 36}" '
                 f'text-anchor="middle">{escape(self.xlabel)}</text>')
        cx, cy = self.x0 - 58, self.y0 + PANEL_H / 2
        s.append(f'<text x="{cx}" y="{cy}" text-anchor="middle" '
                 f'transform="rotate(-90 {cx} {cy})">{escape(self.ylabel)}</text>')
        return s

    def line(self, pts, colour, label):
        pts = [(x, y) for x, y in pts if y and y > 0]
        if not pts:
            return []
        path = " ".join(f"{self.px(x):.1f},{self.py(y):.1f}" for x, y in pts)
        s = [f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>']
        for x, y in pts:
            s.append(f'<circle cx="{self.px(x):.1f}" cy="{self.py(y):.1f}" r="3.5" fill="{colour}">'
                     f'<title>{escape(label)}: {y:,.1f}</title></circle>')
        return s


def svg(pts, subtitle):
    body = []
    curves = [("clients", "client processes (16 B values)", str),
              ("value", "value size (16 processes)", size_label)]
    for row, (curve, xlabel, xl) in enumerate(curves):
        data = pts.get(curve)
        if not data:
            continue
        xs = [p[0] for p in data]
        y0 = MARGIN_T + row * (PANEL_H + GAP_Y)
        tp = Panel(MARGIN_L, y0, f"throughput vs {xlabel}", xs, xlabel, "ops/s", False,
                   nice_max(max(p[1] for p in data) * 1.05))
        body += tp.frame(xl) + tp.line([(p[0], p[1]) for p in data], COLOURS["ops/s"], "ops/s")
        lat = [v for p in data for v in (p[2], p[3]) if v and v > 0] or [1]
        ymin = 10 ** math.floor(math.log10(min(lat)))
        ymax = 10 ** math.ceil(math.log10(max(lat) * 1.01))
        lp = Panel(MARGIN_L + PANEL_W + GAP_X + 40, y0, f"latency vs {xlabel}", xs, xlabel,
                   "latency per call (µs, log)", True, ymax, ymin)
        body += lp.frame(xl)
        body += lp.line([(p[0], p[2]) for p in data], COLOURS["p50"], "p50 µs")
        body += lp.line([(p[0], p[3]) for p in data], COLOURS["p99"], "p99 µs")
    legend_x = W - 160
    for i, (name, colour) in enumerate((("p50", COLOURS["p50"]), ("p99", COLOURS["p99"]))):
        y = 22 + i * 16
        body.append(f'<line x1="{legend_x}" y1="{y}" x2="{legend_x + 24}" y2="{y}" '
                    f'stroke="{colour}" stroke-width="2"/>')
        body.append(f'<text x="{legend_x + 30}" y="{y + 4}">{name} latency</text>')
    head = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
            f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">',
            f'<rect width="{W}" height="{H}" fill="white"/>',
            '<text x="20" y="26" font-size="16" font-weight="bold">procshare scaling: '
            'dict get/set mix</text>',
            f'<text x="20" y="44" fill="#555">{escape(subtitle)}</text>']
    return "\n".join(head + body + ["</svg>", ""])


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    rows = load(sys.argv[1])
    pts = points(rows)
    if not pts:
        print("plot.py: no scaling rows in the results; no plot", file=sys.stderr)
        return
    machine = [r for r in rows if r.get("system") == "machine"]
    runs = max(p[4] for ps in pts.values() for p in ps)
    sub = f"medians of {runs} run(s)"
    if machine:
        m = machine[0]
        sub += (f"; {m.get('date', '?')}, nproc {m.get('nproc', '?')}, loadavg {m.get('loadavg', '?')}"
                + (f", commit {m['commit']}" if m.get("commit") else "")
                + (", --quick" if m.get("quick") else ""))
    with open(sys.argv[2], "w") as f:
        f.write(svg(pts, sub))
    print(f"plot.py: wrote {sys.argv[2]}", file=sys.stderr)


if __name__ == "__main__":
    main()
