"""Big point clouds as a density raster, drawn on the server, and lasso membership on the server.

A browser that gets a million points per view spends its time testing every point against
the lasso on each mouse move and holds tens of megabytes per view (bench/bench_cloud.py). Here
the points stay on the server: each view becomes one image whose pixels aggregate the points
under them (colour: the count-weighted mix of the category colours, or the mean confidence;
opacity: log density, so overlapping points read as a density), a few thousand sample points
carry the hover, and a lasso comes back as a polygon that :func:`inside` applies to every point.

    r = rasterize(coords, codes, colours, width=640, height=460)     # r.rgba [460, 640, 4] uint8
    mask = inside(coords, lasso_x, lasso_y)                           # [N] bool, every point
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

GRID = 4096  # resolution of the lasso mask over the view's extent: finer than any hand on a screen
DIM_RGB = (140, 140, 140)  # points outside a highlight


@dataclass(frozen=True)
class Extent:
    """The data rectangle a raster covers (``x0 < x1``, ``y0 < y1``)."""

    x0: float
    x1: float
    y0: float
    y1: float

    @classmethod
    def of(cls, coords: np.ndarray, pad: float = 0.03) -> Extent:
        """The bounding box of ``coords`` ``[N, 2]`` with ``pad`` of its size on each side."""
        coords = np.asarray(coords)
        lo, hi = coords.min(axis=0).astype(float), coords.max(axis=0).astype(float)
        span = np.maximum(hi - lo, 1e-9)
        lo, hi = lo - pad * span, hi + pad * span
        return cls(float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1]))


@dataclass(frozen=True)
class Raster:
    """``rgba`` ``[height, width, 4]`` uint8, row 0 at the top (``extent.y1``); ``counts``
    ``[height, width]`` points per pixel."""

    rgba: np.ndarray
    counts: np.ndarray
    extent: Extent

    def png(self) -> bytes:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(self.rgba, "RGBA").save(buf, format="PNG", optimize=False, compress_level=3)
        return buf.getvalue()

    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png()).decode()


def _check(coords) -> np.ndarray:
    coords = np.asarray(coords, dtype=np.float32)
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise ValueError(f"coords must be [N, 2], got shape {coords.shape}")
    if coords.shape[0] and not np.isfinite(coords).all():
        raise ValueError("coords contain NaN or Inf")
    return coords


def pixel_of(coords: np.ndarray, extent: Extent, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """(column, row) of each point in a ``width x height`` grid over ``extent``, row 0 at the top;
    points outside the extent are clipped to its border."""
    cx = (coords[:, 0] - extent.x0) * (width / (extent.x1 - extent.x0))
    cy = (extent.y1 - coords[:, 1]) * (height / (extent.y1 - extent.y0))
    return (np.clip(cx.astype(np.int64), 0, width - 1), np.clip(cy.astype(np.int64), 0, height - 1))


def hex_rgb(colour: str) -> tuple[int, int, int]:
    colour = colour.lstrip("#")
    if len(colour) != 6:
        raise ValueError(f"expected a #rrggbb colour, got {colour!r}")
    return int(colour[0:2], 16), int(colour[2:4], 16), int(colour[4:6], 16)


def rasterize(coords, codes, colours: Sequence[str], width: int, height: int, extent: Extent | None = None,
              values=None, colorscale: Sequence[str] | None = None, highlight=None, spread: int = 2) -> Raster:
    """Aggregate ``coords`` ``[N, 2]`` into a ``width x height`` RGBA image.

    Categorical (``values`` None): ``codes`` ``[N]`` ints index ``colours`` (``#rrggbb``); a pixel
    takes the count-weighted mean colour of its points. Continuous: ``values`` ``[N]`` in [0, 1]
    pick from ``colorscale`` (evenly spaced ``#rrggbb`` stops) by the pixel's mean value.
    Opacity grows with log(1 + count). ``highlight`` ``[N]`` bool: those points keep their colour
    and are drawn over the rest, which turn grey and faint. ``spread``: each point covers a
    ``spread x spread`` block, so sparse clouds stay visible."""
    coords = _check(coords)
    if width < 2 or height < 2:
        raise ValueError(f"a raster needs at least 2 x 2 pixels, got {width} x {height}")
    extent = extent or Extent.of(coords if len(coords) else np.zeros((1, 2)))
    n = coords.shape[0]
    col, row = pixel_of(coords, extent, width, height)
    pix = row * width + col
    if highlight is not None:
        highlight = np.asarray(highlight, dtype=bool)
        if highlight.shape != (n,):
            raise ValueError(f"highlight must be [{n}] bool, got shape {highlight.shape}")
    if values is not None:
        values = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
        stops = np.array([hex_rgb(c) for c in (colorscale or ("#440154", "#21918c", "#fde725"))], dtype=np.float64)
    else:
        codes = np.asarray(codes).astype(np.int64)
        if codes.shape != (n,) or (n and (codes.min() < 0 or codes.max() >= len(colours))):
            raise ValueError(f"codes must be [{n}] ints in [0, {len(colours)})")
        palette = np.array([hex_rgb(c) for c in colours], dtype=np.float64)

    def layer(mask: np.ndarray | None, dim: bool) -> tuple[np.ndarray, np.ndarray]:
        """(rgb [H*W, 3] float, counts [H*W]) of the points in ``mask`` (all when None)."""
        p = pix if mask is None else pix[mask]
        if dim or values is not None:
            counts = _spread(np.bincount(p, minlength=width * height).astype(np.float64), width, height, spread)
        if dim:
            return np.broadcast_to(np.array(DIM_RGB, dtype=np.float64), (width * height, 3)), counts
        if values is not None:
            v = values if mask is None else values[mask]
            sums = _spread(np.bincount(p, weights=v, minlength=width * height), width, height, spread)
            mean = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
            return _interp(stops, mean), counts
        c = codes if mask is None else codes[mask]
        k = int(c.max(initial=0)) + 1
        # one pass over the points: counts per (category, pixel), then the count-weighted mean colour
        per = np.bincount(c * (width * height) + p, minlength=k * width * height).astype(np.float32)
        per = _spread(per, width, height, spread, planes=k).reshape(k, width * height)
        counts = per.sum(axis=0, dtype=np.float64)
        rgb = per.T.astype(np.float64) @ palette[:k]
        return np.divide(rgb, counts[:, None], out=np.zeros_like(rgb), where=counts[:, None] > 0), counts

    def alpha(counts: np.ndarray, floor: float, top: float) -> np.ndarray:
        peak = max(float(counts.max()), 1.0)
        a = np.log1p(counts) / np.log1p(peak)
        return np.where(counts > 0, floor + (top - floor) * a, 0.0)

    if highlight is None:
        rgb, counts = layer(None, dim=False)
        a = alpha(counts, 0.35, 1.0)
    else:
        back_rgb, back_counts = layer(~highlight, dim=True)
        front_rgb, front_counts = layer(highlight, dim=False)
        a_back, a_front = alpha(back_counts, 0.2, 0.5), alpha(front_counts, 0.6, 1.0)
        # "over" compositing of the highlighted layer on the dimmed one
        a = a_front + a_back * (1 - a_front)
        rgb = np.divide(front_rgb * a_front[:, None] + back_rgb * (a_back * (1 - a_front))[:, None], a[:, None],
                        out=np.zeros((width * height, 3)), where=a[:, None] > 0)
        counts = back_counts + front_counts
    rgba = np.concatenate([rgb, 255 * a[:, None]], axis=1).round().clip(0, 255).astype(np.uint8)
    raw = np.bincount(pix, minlength=width * height).reshape(height, width)
    return Raster(rgba.reshape(height, width, 4), raw, extent)


def _spread(flat: np.ndarray, width: int, height: int, size: int, planes: int = 1) -> np.ndarray:
    """Each point's count spread over a ``size x size`` block (the count is kept, not averaged)."""
    if size <= 1:
        return flat
    from scipy.ndimage import uniform_filter

    grid = flat.reshape(planes, height, width)
    return (uniform_filter(grid, size=(1, size, size), mode="constant") * (size * size)).reshape(-1)


def _interp(stops: np.ndarray, t: np.ndarray) -> np.ndarray:
    pos = t * (len(stops) - 1)
    lo = np.clip(np.floor(pos).astype(int), 0, len(stops) - 2)
    frac = (pos - lo)[:, None]
    return stops[lo] * (1 - frac) + stops[lo + 1] * frac


def inside(coords, xs: Sequence[float], ys: Sequence[float], extent: Extent | None = None) -> np.ndarray:
    """``[N]`` bool: the points of ``coords`` ``[N, 2]`` inside the polygon with vertices
    ``(xs[i], ys[i])`` (a lasso, in data coordinates). The polygon is filled on a
    :data:`GRID` x :data:`GRID` mask over ``extent`` (default: the points' bounding box) and each
    point looks up its cell: O(N), exact up to 1/GRID of the view, well below a hand's precision."""
    from PIL import Image, ImageDraw

    coords = _check(coords)
    xs, ys = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
    if xs.shape != ys.shape or xs.ndim != 1:
        raise ValueError("a lasso needs as many x as y coordinates")
    if xs.size < 3 or not (np.isfinite(xs).all() and np.isfinite(ys).all()):
        return np.zeros(coords.shape[0], dtype=bool)
    extent = extent or Extent.of(coords, pad=0.0)
    sx, sy = GRID / max(extent.x1 - extent.x0, 1e-12), GRID / max(extent.y1 - extent.y0, 1e-12)
    poly = list(zip(((xs - extent.x0) * sx).tolist(), ((extent.y1 - ys) * sy).tolist()))
    img = Image.new("1", (GRID + 1, GRID + 1), 0)
    ImageDraw.Draw(img).polygon(poly, fill=1, outline=1)
    mask = np.asarray(img, dtype=bool)
    cx = np.floor((coords[:, 0] - extent.x0) * sx).astype(np.int64)
    cy = np.floor((extent.y1 - coords[:, 1]) * sy).astype(np.int64)
    ok = (cx >= 0) & (cx <= GRID) & (cy >= 0) & (cy <= GRID)
    out = np.zeros(coords.shape[0], dtype=bool)
    out[ok] = mask[cy[ok], cx[ok]]
    return out


def in_box(coords, x_range: Sequence[float], y_range: Sequence[float]) -> np.ndarray:
    """``[N]`` bool: the points inside the axis-aligned box (a box selection)."""
    coords = _check(coords)
    (xa, xb), (ya, yb) = sorted(map(float, x_range)), sorted(map(float, y_range))
    return (coords[:, 0] >= xa) & (coords[:, 0] <= xb) & (coords[:, 1] >= ya) & (coords[:, 1] <= yb)


COLOR_BY = ("true", "pred", "correct", "confidence")
VIRIDIS = ("#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58", "#b5de2b", "#fde725")
CORRECT_COLOURS = ("#d62728", "#2ca02c")  # wrong, correct: as the scatter draws them


def raster_size(extent: Extent, width: int) -> tuple[int, int]:
    """(width, height) in pixels keeping the extent's aspect ratio (height between 0.4 and 1.6 x width)."""
    aspect = (extent.y1 - extent.y0) / (extent.x1 - extent.x0)
    return width, int(round(width * min(max(aspect, 0.4), 1.6)))


def hover_sample(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Sorted rows of a seeded uniform sample of ``min(n, size)`` of ``n`` points."""
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


def cloud_figure(coords, labels, preds, confidence, class_names: Sequence[str], color_by: str = "true",
                 highlight=None, title: str = "", hover_index=None, width: int = 640, hover_points: int = 2000,
                 seed: int = 0):
    """(plotly figure, note) for a big view: the density raster of every point as a layout image
    in data coordinates, a seeded sample of ``hover_points`` invisible markers that carry the hover
    (``customdata`` = sample index) and make the lasso available, and empty legend traces.
    ``highlight``: sample indices to keep bright (the others grey and faint). ``note`` states
    what was drawn and what was sampled."""
    import plotly.graph_objects as go

    from asl_core.report.figures import _class_color

    if color_by not in COLOR_BY:
        raise ValueError(f"color_by must be one of {', '.join(COLOR_BY)}, got {color_by!r}")
    coords = _check(coords)
    n = coords.shape[0]
    labels, preds = np.asarray(labels).astype(int), np.asarray(preds).astype(int)
    confidence = np.asarray(confidence, dtype=float)
    index = np.arange(n) if hover_index is None else np.asarray(hover_index).astype(int)
    names = [str(c) for c in class_names]
    hl = None if highlight is None else np.isin(index, np.fromiter(highlight, dtype=np.int64))
    extent = Extent.of(coords)
    w, h = raster_size(extent, width)
    legend: list[tuple[str, str]] = []
    if color_by == "confidence":
        raster = rasterize(coords, None, (), w, h, extent, values=confidence, colorscale=VIRIDIS, highlight=hl)
    elif color_by == "correct":
        raster = rasterize(coords, (labels == preds).astype(int), CORRECT_COLOURS, w, h, extent, highlight=hl)
        legend = [("correct", CORRECT_COLOURS[1]), ("wrong", CORRECT_COLOURS[0])]
    else:
        by = labels if color_by == "true" else preds
        colours = [_class_color(c) for c in range(max(len(names), int(by.max(initial=0)) + 1))]
        raster = rasterize(coords, by, colours, w, h, extent, highlight=hl)
        legend = [(names[c] if c < len(names) else str(c), colours[c]) for c in np.unique(by)]
    rows = hover_sample(n, hover_points, seed)
    text = [f"sample {index[i]}<br>label {names[labels[i]]}<br>pred {names[preds[i]]}<br>confidence {confidence[i]:.3f}"
            for i in rows]
    fig = go.Figure(go.Scattergl(x=coords[rows, 0], y=coords[rows, 1], mode="markers", customdata=index[rows],
                                 text=text, hovertemplate="%{text}<extra></extra>", showlegend=False, name="hover sample",
                                 marker={"size": 7, "opacity": 0}))
    for name, colour in legend:
        fig.add_trace(go.Scattergl(x=[None], y=[None], mode="markers", name=name, marker={"size": 9, "color": colour}))
    if color_by == "confidence":
        fig.add_trace(go.Scattergl(x=[None], y=[None], mode="markers", showlegend=False, hoverinfo="skip", marker={
            "color": [0, 1], "colorscale": [[i / (len(VIRIDIS) - 1), c] for i, c in enumerate(VIRIDIS)], "cmin": 0,
            "cmax": 1, "colorbar": {"title": "confidence"}}))
    fig.add_layout_image(source=raster.data_uri(), xref="x", yref="y", x=extent.x0, y=extent.y1,
                         sizex=extent.x1 - extent.x0, sizey=extent.y1 - extent.y0, sizing="stretch", layer="below")
    fig.update_layout(title=title, dragmode="lasso", margin={"l": 10, "r": 10, "t": 64, "b": 10}, template="plotly_white",
                      legend_title={"true": "true class", "pred": "predicted", "correct": "", "confidence": ""}[color_by])
    fig.update_xaxes(showticklabels=False, range=[extent.x0, extent.x1], showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, range=[extent.y0, extent.y1], showgrid=False, zeroline=False,
                     scaleanchor="x", scaleratio=1)
    note = (f"all {n:,} points drawn as a density image ({w} x {h} px: colour mixes the points under a pixel, "
            f"opacity grows with their number); hover shows a random sample of {rows.size:,} (seed {seed}); "
            f"a lasso or box selects among all {n:,}")
    return fig, note
