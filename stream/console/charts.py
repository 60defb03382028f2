"""Inline SVG charts (no script, no library): a segment's size over time and its entries and exits
per hour. Only numbers go into them, besides the escaped titles."""
from __future__ import annotations

from stream.console.history import Moves
from stream.console.markup import Markup, el, join
from stream.model.time import SECOND, format_rfc3339


def sizes_chart(samples: list[tuple[float, int]], width: int = 240, height: int = 48) -> Markup:
    """A line of the size samples (wall clock seconds, size), scaled to the box."""
    if len(samples) < 2:
        return el("span", "collecting samples…", class_="muted")
    t0, t1 = samples[0][0], samples[-1][0]
    low, high = min(s for _, s in samples), max(s for _, s in samples)
    span, top = (t1 - t0) or 1.0, high or 1          # from 0: the height of the line is the size
    points = " ".join(f"{(t - t0) / span * (width - 2) + 1:.1f},{height - 1 - s / top * (height - 2):.1f}"
                      for t, s in samples)
    label = (f"size between {low:,} and {high:,} from {format_rfc3339(int(t0 * SECOND))} to "
             f"{format_rfc3339(int(t1 * SECOND))}")
    chart = el("svg", el("title", label), el("polyline", points=points, fill="none", stroke="#2563eb",
                                             stroke_width="1.5"),
               width=width, height=height, viewBox=f"0 0 {width} {height}", role="img", class_="chart",
               aria_label=label)
    minutes = (t1 - t0) / 60
    return join([chart, el("span", f"{samples[0][1]:,} → {samples[-1][1]:,} over "
                                   + (f"{minutes / 60:.1f} h" if minutes >= 90 else f"{minutes:.0f} min"
                                      if minutes >= 2 else f"{t1 - t0:.0f} s"), class_="muted caption")])


def moves_chart(moves: list[Moves], width: int = 240, height: int = 48) -> Markup:
    """Entries (up, green) and exits (down, red) of each hour, from a middle line."""
    peak = max((max(m.entered, m.exited) for m in moves), default=0) or 1
    step = width / max(len(moves), 1)
    middle = height / 2
    bars = []
    for i, m in enumerate(moves):
        x = i * step
        up, down = m.entered / peak * (middle - 1), m.exited / peak * (middle - 1)
        title = el("title", f"{format_rfc3339(m.hour * 3600 * SECOND)}: {m.entered:,} entered, {m.exited:,} exited")
        bars.append(el("g", title,
                       el("rect", x=f"{x:.1f}", y=f"{middle - up:.1f}", width=f"{max(step - 1, 1):.1f}",
                          height=f"{up:.1f}", fill="#16a34a"),
                       el("rect", x=f"{x:.1f}", y=f"{middle:.1f}", width=f"{max(step - 1, 1):.1f}",
                          height=f"{down:.1f}", fill="#dc2626")))
    total_in, total_out = sum(m.entered for m in moves), sum(m.exited for m in moves)
    label = f"{total_in:,} entered and {total_out:,} exited in the last {len(moves)} hours"
    return el("svg", el("title", label), bars,
              el("line", x1="0", x2=str(width), y1=f"{middle}", y2=f"{middle}", stroke="#9ca3af", stroke_width="0.5"),
              width=width, height=height, viewBox=f"0 0 {width} {height}", role="img", class_="chart",
              aria_label=label)
