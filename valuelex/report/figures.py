"""What a report is made of (figures, tables, notices, ...) and the matplotlib plumbing they share.

A report is a list of `Section`s; each holds `items` in reading order. Every item is plain data
that the Jinja2 template escapes: model text never reaches the page unescaped, and figures are
images (``<img src="data:...">``), so text drawn inside a figure cannot run either.

Figures are drawn with matplotlib's object API (no pyplot state, no display needed) under
`STYLE`, which also turns off mathtext: a ``$`` in a model's word must not be parsed as TeX.
Each figure is written as ``figures/<id>.svg`` and ``figures/<id>.png`` and embedded in the page.
"""

from __future__ import annotations

import base64
import io
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

STYLE: dict[str, Any] = {
    "text.parse_math": False,  # model text may contain '$'
    "text.usetex": False,
    "svg.fonttype": "path",  # self-contained SVG: no font needed where it is opened
    "svg.hashsalt": "valuelex-report",  # deterministic ids
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "figure.dpi": 100,
    "savefig.dpi": 144,
    "savefig.bbox": "tight",
}

# Okabe-Ito: distinguishable with colour-vision deficiencies.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
TRAINING_ORDER = ("pretrained", "instruction-tuned", "aligned")
TRAINING_COLORS = {"pretrained": "#999999", "instruction-tuned": "#E69F00", "aligned": "#0072B2"}
TRAINING_TAGS = {"pretrained": "P", "instruction-tuned": "IT", "aligned": "A"}
SYSTEM_ORDER = ("schwartz", "valuelex", "mft")  # Fig. 4: left, middle, right


def color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def shade(hex_color: str, amount: float) -> tuple[float, float, float]:
    """Lighten (amount > 0) or darken (amount < 0) a colour; amount in [-1, 1]."""
    rgb = np.array([int(hex_color[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    out = rgb + (1 - rgb) * amount if amount >= 0 else rgb * (1 + amount)
    return tuple(float(v) for v in np.clip(out, 0, 1))


def training_color(training: str | None) -> str:
    return TRAINING_COLORS.get(training or "", "#555555")


def model_label(model: str, training: str | None) -> str:
    """``llama2-7b (P)``: the model with the paper's training tag."""
    tag = TRAINING_TAGS.get(training or "")
    return f"{model} ({tag})" if tag else model


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or "x"


# --- report items -------------------------------------------------------------------------------


@dataclass
class FigureItem:
    id: str
    title: str
    caption: str
    src: str  # data: URI of the embedded image
    files: list[str]  # paths relative to the report folder
    width: int | None = None  # display width in CSS pixels (None: fit the column)
    kind: str = "figure"


@dataclass
class TableItem:
    id: str
    title: str
    columns: list[str]
    rows: list[list[Any]]
    caption: str = ""
    numeric: list[bool] = field(default_factory=list)  # right-align these columns
    css: str = ""  # extra class, e.g. "cases"
    collapsed: bool = False  # inside a closed <details>
    kind: str = "table"


@dataclass
class Notice:
    text: str
    level: str = "missing"  # missing | warning | info | error
    id: str | None = None
    kind: str = "notice"


@dataclass
class Text:
    text: str
    kind: str = "text"


@dataclass
class KeyValues:
    id: str
    title: str
    pairs: list[tuple[str, Any]]
    kind: str = "kv"


@dataclass
class Preformatted:
    id: str
    title: str
    text: str
    collapsed: bool = True
    kind: str = "pre"


@dataclass
class Subheading:
    id: str
    text: str
    kind: str = "subheading"


Item = FigureItem | TableItem | Notice | Text | KeyValues | Preformatted | Subheading


@dataclass
class Section:
    id: str
    title: str
    status: str = "ok"  # ok | partial | missing
    items: list[Item] = field(default_factory=list)

    def add(self, *items: Item | None) -> None:
        self.items.extend(i for i in items if i is not None)

    def notices(self) -> list[Notice]:
        return [i for i in self.items if isinstance(i, Notice)]

    def figure_ids(self) -> list[str]:
        return [i.id for i in self.items if isinstance(i, FigureItem)]


# --- drawing ------------------------------------------------------------------------------------


def new_figure(width: float, height: float) -> Any:
    """A matplotlib Figure with constrained layout (object API: no pyplot, no display)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


class FigureWriter:
    """Renders figures into ``<out>/figures/`` and returns the report items that embed them."""

    def __init__(self, out_dir: Path, embed: str = "svg"):
        if embed not in ("svg", "png"):
            raise ValueError(f"embed must be 'svg' or 'png', got {embed!r}")
        self.dir = out_dir / "figures"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.embed = embed
        self.written: dict[str, list[str]] = {}

    def save(self, fig: Any, fig_id: str, title: str, caption: str, width: int | None = None) -> FigureItem:
        files = []
        embedded = b""
        for fmt in ("svg", "png"):
            buffer = io.BytesIO()
            metadata = {"Date": None} if fmt == "svg" else {"Software": None}
            fig.savefig(buffer, format=fmt, metadata=metadata)
            data = buffer.getvalue()
            (self.dir / f"{fig_id}.{fmt}").write_bytes(data)
            files.append(f"figures/{fig_id}.{fmt}")
            if fmt == self.embed:
                embedded = data
        mime = "image/svg+xml" if self.embed == "svg" else "image/png"
        src = f"data:{mime};base64,{base64.b64encode(embedded).decode('ascii')}"
        self.written[fig_id] = files
        return FigureItem(id=fig_id, title=title, caption=caption, src=src, files=files, width=width)

    def render(self, fig_id: str, title: str, draw: Callable[[], tuple[Any, str]],
               width: int | None = None) -> Item:
        """Run `draw` (-> (figure, caption)) under the report style; a failure becomes a visible notice."""
        import matplotlib

        try:
            with matplotlib.rc_context(STYLE):
                fig, caption = draw()
                return self.save(fig, fig_id, title, caption, width)
        except Exception as exc:  # a broken figure must not take the report down
            log.exception("report: figure %s failed", fig_id)
            return Notice(f"{title}: the figure could not be drawn ({type(exc).__name__}: {exc}).", "error",
                          id=f"notice-{fig_id}-failed")


Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in display points


def _overlap(a: Box, b: Box) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    return width * height if width > 0 and height > 0 else 0.0


class Labeller:
    """Greedy label placement: each label goes in the first of 16 directions around its point (starting at the
    preferred one) where its estimated box overlaps nothing placed so far.

    Call after the axes' limits are final: `layout` lays the figure out once so data map to display points;
    labels are then offset from their point in points, which later layout passes do not disturb.
    """

    CHAR_WIDTH = 0.6  # of the font size, for DejaVu Sans
    LINE_HEIGHT = 1.3

    def __init__(self, ax: Any):
        ax.figure.draw_without_rendering()
        self.ax = ax
        self.scale = 72.0 / ax.figure.dpi  # display pixels -> points
        self.taken: list[Box] = []
        extent = ax.get_window_extent()  # labels stay inside the axes: a tight save crops the rest
        self.bounds: Box = tuple(float(v) * self.scale for v in (extent.x0, extent.y0, extent.x1, extent.y1))

    def point(self, xy: Sequence[float]) -> np.ndarray:
        return np.asarray(self.ax.transData.transform(xy), dtype=float) * self.scale

    def size(self, length: float) -> float:
        """A horizontal data length in points."""
        return float(abs(self.point((length, 0.0))[0] - self.point((0.0, 0.0))[0]))

    def block(self, xy: Sequence[float], half_width: float, half_height: float | None = None) -> None:
        """Mark the box of `half_width` x `half_height` points around a data point as occupied."""
        x, y = self.point(xy)
        h = half_width if half_height is None else half_height
        self.taken.append((x - half_width, y - h, x + half_width, y + h))

    def block_radius(self, xy: Sequence[float], radius: float) -> None:
        """Mark a data-unit circle as occupied."""
        self.block(xy, self.size(radius))

    def box(self, at: np.ndarray, text: str, fontsize: float, ha: str, va: str) -> Box:
        lines = text.split("\n")
        width = self.CHAR_WIDTH * fontsize * max(len(line) for line in lines)
        height = self.LINE_HEIGHT * fontsize * len(lines)
        x0 = at[0] - {"left": 0.0, "center": width / 2, "right": width}[ha]
        y0 = at[1] - {"bottom": 0.0, "center": height / 2, "top": height}[va]
        return (x0, y0, x0 + width, y0 + height)

    def put(self, xy: Sequence[float], text: str, *, fontsize: float = 8.0, **style: Any) -> bool:
        """Centre `text` on the data point `xy` if that overlaps nothing placed; returns whether it was drawn."""
        box = self.box(self.point(xy), text, fontsize, "center", "center")
        if any(_overlap(box, other) for other in self.taken):
            return False
        self.taken.append(box)
        self.ax.text(xy[0], xy[1], text, ha="center", va="center", fontsize=fontsize, in_layout=False, **style)
        return True

    def place(self, xy: Sequence[float], text: str, *, gap: float = 4.0, preferred: Sequence[float] = (1.0, 0.3),
              fontsize: float = 8.0, drop: bool = False, **style: Any) -> bool:
        """Label the data point `xy`; `gap` in points. With `drop`, a label that cannot avoid others is left out.
        Returns whether the label was drawn."""
        origin = self.point(xy)
        base = float(np.arctan2(preferred[1], preferred[0]))
        best: tuple[float, Box, np.ndarray, str, str] | None = None
        for step in range(16):
            turn = (step + 1) // 2 * (1 if step % 2 else -1) * np.pi / 8
            direction = np.array([np.cos(base + turn), np.sin(base + turn)])
            ha = "left" if direction[0] > 0.35 else ("right" if direction[0] < -0.35 else "center")
            va = "bottom" if direction[1] > 0.35 else ("top" if direction[1] < -0.35 else "center")
            offset = direction * gap
            box = self.box(origin + offset, text, fontsize, ha, va)
            area = (box[2] - box[0]) * (box[3] - box[1])
            outside = area - _overlap(box, self.bounds)  # a label cut off at the edge is the worst
            cost = sum(_overlap(box, other) for other in self.taken) + 10 * outside
            if best is None or cost < best[0]:
                best = (cost, box, offset, ha, va)
            if cost == 0:
                break
        assert best is not None
        cost, box, offset, ha, va = best
        if cost > 0 and drop:
            return False
        self.taken.append(box)
        self.ax.annotate(text, xy, xytext=tuple(offset), textcoords="offset points", ha=ha, va=va,
                         fontsize=fontsize, annotation_clip=False, in_layout=False, **style)
        return True


def fmt_num(value: Any, digits: int = 3) -> str:
    """A number for a table cell; '—' for missing."""
    if value is None:
        return "—"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if np.isnan(number):
        return "—"
    if number.is_integer() and abs(number) < 1e15 and digits == 0:
        return f"{int(number):,}"
    return f"{number:.{digits}f}"


def fmt_int(value: Any) -> str:
    if value is None:
        return "—"
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return str(value)


def fmt_ci(w: Any, low: Any, high: Any) -> str:
    if w is None or (isinstance(w, float) and np.isnan(w)):
        return "—"
    return f"{float(w):.3f} [{fmt_num(low)}, {fmt_num(high)}]"


def truncate(text: Any, limit: int) -> str:
    text = "" if text is None else str(text)
    if len(text) <= limit:
        return text
    return f"{text[:limit].rstrip()}… [{len(text) - limit:,} more characters]"


def order_models(models: Sequence[str], meta: dict[str, dict[str, Any]]) -> list[str]:
    """Models by training (P, IT, A), then family, then size, then name."""

    def key(model: str) -> tuple:
        info = meta.get(model, {})
        training = info.get("training")
        rank = TRAINING_ORDER.index(training) if training in TRAINING_ORDER else len(TRAINING_ORDER)
        size = info.get("size_b")
        size = float(size) if size is not None and not np.isnan(float(size)) else float("inf")
        return (rank, str(info.get("family") or ""), size, model)

    return sorted(models, key=key)
