"""Big-cloud rasters and server-side lasso membership (asl_core/report/cloud.py)."""

from __future__ import annotations

import numpy as np
import pytest

from asl_core.report.cloud import Extent, cloud_figure, in_box, inside, rasterize


def ray_cast(points: np.ndarray, xs, ys) -> np.ndarray:
    """The textbook even-odd test, point by point: the reference for :func:`inside`."""
    out = np.zeros(len(points), dtype=bool)
    n = len(xs)
    for i, (px, py) in enumerate(points):
        hit = False
        for a in range(n):
            b = (a - 1) % n
            if (ys[a] > py) != (ys[b] > py):
                if px < (xs[b] - xs[a]) * (py - ys[a]) / (ys[b] - ys[a]) + xs[a]:
                    hit = not hit
        out[i] = hit
    return out


def test_inside_matches_ray_casting_on_a_concave_lasso():
    rng = np.random.default_rng(0)
    pts = rng.uniform(-10, 10, size=(3000, 2)).astype(np.float32)
    t = np.linspace(0, 2 * np.pi, 60, endpoint=False)
    r = 6 + 3 * np.sin(5 * t)  # a star: concave
    xs, ys = (r * np.cos(t)).tolist(), (r * np.sin(t)).tolist()
    got, want = inside(pts, xs, ys), ray_cast(pts, xs, ys)
    assert 0.2 < want.mean() < 0.8
    # the mask is exact up to 1/4096 of the view: only points within a hair of an edge may differ
    assert (got != want).sum() <= 3
    assert not inside(pts, [0, 1], [0, 1]).any()  # fewer than 3 vertices: nothing
    box = in_box(pts, [5, -5], [-2, 2])
    np.testing.assert_array_equal(box, (np.abs(pts[:, 0]) <= 5) & (np.abs(pts[:, 1]) <= 2))


def test_raster_colour_density_and_highlight():
    # 100 points of class 0 in the left half, 1 point of class 1 in the right half
    coords = np.array([[0.1, 0.5]] * 100 + [[0.9, 0.5]], dtype=np.float32)
    codes = np.array([0] * 100 + [1])
    ext = Extent(0, 1, 0, 1)
    r = rasterize(coords, codes, ["#ff0000", "#0000ff"], 20, 10, ext, spread=1)
    assert r.rgba.shape == (10, 20, 4) and r.counts.sum() == 101
    red, blue = r.rgba[5, 2], r.rgba[5, 18]
    assert tuple(red[:3]) == (255, 0, 0) and tuple(blue[:3]) == (0, 0, 255)
    assert red[3] == 255 and 0 < blue[3] < red[3]  # denser reads darker
    assert r.rgba[0, 0, 3] == 0  # empty pixels are transparent
    mixed = rasterize(np.array([[0.5, 0.5]] * 2, np.float32), np.array([0, 1]), ["#ff0000", "#0000ff"], 4, 4, ext,
                      spread=1)
    assert tuple(mixed.rgba[2, 2, :3]) == (128, 0, 128)  # a pixel mixes the colours of its points
    hl = rasterize(coords, codes, ["#ff0000", "#0000ff"], 20, 10, ext, spread=1, highlight=codes == 1)
    assert tuple(hl.rgba[5, 18, :3]) == (0, 0, 255) and hl.rgba[5, 2, 0] == hl.rgba[5, 2, 2]  # the rest turn grey
    assert hl.rgba[5, 2, 3] < r.rgba[5, 2, 3]
    conf = rasterize(coords, None, (), 20, 10, ext, values=np.r_[np.zeros(100), 1.0], colorscale=("#000000", "#ffffff"),
                     spread=1)
    assert tuple(conf.rgba[5, 2, :3]) == (0, 0, 0) and tuple(conf.rgba[5, 18, :3]) == (255, 255, 255)
    with pytest.raises(ValueError):
        rasterize(coords, np.full(101, 5), ["#ff0000"], 20, 10)
    with pytest.raises(ValueError):
        rasterize(np.zeros((3, 3)), None, (), 20, 10, values=np.zeros(3))


def test_cloud_figure_says_what_it_sampled():
    rng = np.random.default_rng(1)
    n = 20000
    coords = rng.normal(size=(n, 2)).astype(np.float32)
    labels = rng.integers(0, 3, n)
    fig, note = cloud_figure(coords, labels, labels, rng.random(n), ["a", "b", "c"], highlight=[1, 2, 3],
                             hover_index=np.arange(n) + 100, hover_points=500)
    assert "20,000 points" in note and "sample of 500" in note
    hover = fig.data[0]
    assert len(hover.x) == 500 and set(hover.customdata) <= set(range(100, n + 100))
    assert [t.name for t in fig.data[1:]] == ["a", "b", "c"]  # legend entries
    assert fig.layout.images[0].source.startswith("data:image/png;base64,")
    assert len(fig.to_json()) < 400_000  # a PNG and a sample: small, whatever n is
    for color_by in ("pred", "correct", "confidence"):
        cloud_figure(coords, labels, labels, rng.random(n), ["a", "b", "c"], color_by=color_by)
    with pytest.raises(ValueError):
        cloud_figure(coords, labels, labels, rng.random(n), ["a", "b", "c"], color_by="x")
