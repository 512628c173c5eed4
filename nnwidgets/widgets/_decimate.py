"""Decimation of growing series for the charts: pure numpy, no UI imports.

A chart may send at most ``max_points`` points per line, whatever the run length, so the
bytes of one update stay O(1) in the number of steps (DESIGN.md: ≤ 2,000 points per line,
≤ 16 KB per chart update).

:class:`MinMaxDecimator` keeps the newest ``tail`` points raw and summarises everything older
in buckets of ``width`` consecutive points. Each bucket keeps its minimum and its maximum (with
their x), so spikes survive decimation (the "min/max" or M4-without-first/last scheme of
Jugel et al., *M4: A Visualization-Oriented Time Series Data Aggregation*, VLDB 2014), plus
the sum and count of its finite values for the smoothed line. When the buckets exceed their
share, neighbouring pairs are merged and ``width`` doubles, so one :meth:`extend` costs
O(new points + max_points) and memory is O(max_points), independent of the run length.
Non-finite values (inf, NaN) are dropped: they are never sent to the browser.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["MinMaxDecimator", "smoothing_alpha", "ema", "stride_decimate"]


def smoothing_alpha(n_steps: int) -> float:
    """EMA factor for a run of ``n_steps`` steps: ``alpha = 2 / (span + 1)`` with
    ``span = max(5, n_steps / 50)`` steps (pandas' ``ewm(span=...)`` convention), i.e. the
    smoothed line averages over ~2 % of the run and never over fewer than 5 steps.

    Example:
        >>> round(smoothing_alpha(1000), 4)   # span 20
        0.0952
    """
    span = max(5.0, float(n_steps) / 50.0)
    return 2.0 / (span + 1.0)


def ema(values: np.ndarray, counts: np.ndarray, alpha: float) -> np.ndarray:
    """Exponential moving average over points that each stand for ``counts[i]`` steps.

    ``s_0 = values[0]``; ``s_i = d_i * s_{i-1} + (1 - d_i) * values[i]`` with
    ``d_i = (1 - alpha) ** counts[i]``, which is exactly pandas'
    ``Series.ewm(alpha=alpha, adjust=False).mean()`` when every count is 1, and treats a
    bucket of ``c`` steps with mean ``m`` as ``c`` steps of value ``m`` otherwise.

    Args:
        values: float ``(k,)`` point values (bucket means or raw losses), all finite.
        counts: ``(k,)`` steps each value stands for (>= 1).
        alpha: smoothing factor in (0, 1].

    Returns:
        float64 ``(k,)`` smoothed values.
    """
    values = np.asarray(values, dtype=np.float64)
    out = np.empty_like(values)
    if not len(values):
        return out
    decay = (1.0 - alpha) ** np.asarray(counts, dtype=np.float64)
    s = values[0]
    for i, (v, d) in enumerate(zip(values.tolist(), decay.tolist())):  # ≤ a few thousand points
        s = d * s + (1.0 - d) * v if i else v
        out[i] = s
    return out


def stride_decimate(x: np.ndarray, y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep every k-th point (k = ceil(n / max_points)), always including the last one.

    Args:
        x, y: ``(n,)`` arrays.
        max_points: upper bound on the returned length (>= 1).

    Returns:
        ``(x, y)`` of length ≤ ``max_points``.
    """
    n = len(x)
    if n <= max_points:
        return x, y
    k = math.ceil(n / max_points)
    idx = np.arange(n - 1, -1, -k)[::-1]
    return x[idx], y[idx]


class MinMaxDecimator:
    """Incremental min/max decimation of a series ``y[0], y[1], ...`` at ``x = 0, 1, ...``.

    Args:
        max_points: most points :meth:`points` returns (>= tail + 4).
        tail: newest points kept raw.

    Example:
        >>> d = MinMaxDecimator(max_points=1000, tail=400)
        >>> d.extend(np.random.rand(100_000).astype(np.float32))
        >>> x, y = d.points(); len(x) <= 1000
        True
    """

    def __init__(self, max_points: int = 1000, tail: int = 400) -> None:
        if max_points < tail + 4:
            raise ValueError(f"MinMaxDecimator: max_points ({max_points}) must be >= tail + 4 ({tail + 4})")
        self.max_points, self.tail = int(max_points), int(tail)
        self.max_buckets = (self.max_points - self.tail) // 2
        self.reset()

    def reset(self) -> None:
        """Forget everything (a new run, or a history that was rolled back)."""
        self.n = 0          # points seen
        self.width = 1      # bucket width: the smallest power of 2 giving <= max_buckets buckets
        self.n_head = 0     # points folded into buckets (all but the newest `tail`)
        z = np.zeros(0)
        # Bucket i covers x in [i * width, (i + 1) * width) (the last one may be partial): first x,
        # size, x of min, min, x of max, max, sum and count of finite values. The layout depends
        # only on n, so feeding the series in any chunks gives the same buckets.
        self._b = {k: z for k in ("x0", "size", "xmin", "ymin", "xmax", "ymax", "sum", "cnt")}
        self._tail = np.zeros(0, dtype=np.float64)  # raw values of points n_head .. n-1

    def extend(self, values: np.ndarray) -> None:
        """Append the next values (any float dtype; inf/NaN are kept out of the output)."""
        values = np.asarray(values, dtype=np.float64).ravel()
        if not len(values):
            return
        self._tail = np.concatenate([self._tail, values])
        self.n += len(values)
        spill = len(self._tail) - self.tail
        if spill > 0:  # the oldest raw points go into the buckets
            self._fold(self._tail[:spill])
            self._tail = self._tail[spill:]

    @staticmethod
    def _summarise(v: np.ndarray, x0: np.ndarray) -> dict[str, np.ndarray]:
        """Bucket statistics of the rows of ``v`` ``(buckets, size)`` starting at ``x0``."""
        rows = np.arange(len(v))
        ok = np.isfinite(v)
        lo, hi = np.where(ok, v, np.inf), np.where(ok, v, -np.inf)
        imin, imax = lo.argmin(1), hi.argmax(1)
        return {"x0": x0.astype(np.float64), "size": np.full(len(v), float(v.shape[1])),
                "xmin": x0 + imin, "ymin": lo[rows, imin], "xmax": x0 + imax, "ymax": hi[rows, imax],
                "sum": np.where(ok, v, 0.0).sum(1), "cnt": ok.sum(1).astype(np.float64)}

    @staticmethod
    def _combine(a: dict[str, np.ndarray], c: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Stats of buckets ``a`` followed by adjacent buckets ``c`` (elementwise); ties keep
        the earlier point, as ``argmin``/``argmax`` do."""
        a_min, a_max = a["ymin"] <= c["ymin"], a["ymax"] >= c["ymax"]
        return {"x0": a["x0"], "size": a["size"] + c["size"],
                "xmin": np.where(a_min, a["xmin"], c["xmin"]), "ymin": np.where(a_min, a["ymin"], c["ymin"]),
                "xmax": np.where(a_max, a["xmax"], c["xmax"]), "ymax": np.where(a_max, a["ymax"], c["ymax"]),
                "sum": a["sum"] + c["sum"], "cnt": a["cnt"] + c["cnt"]}

    def _fold(self, chunk: np.ndarray) -> None:
        """Add the points ``x = n_head .. n_head + len(chunk) - 1`` to the buckets."""
        while math.ceil((self.n_head + len(chunk)) / self.width) > self.max_buckets:
            self._merge_pairs()  # widen first, so a long chunk is summarised once
        w, b = self.width, self._b
        pos = 0
        if self.n_head % w:  # top up the partial last bucket
            pos = min(len(chunk), w - self.n_head % w)
            head = self._summarise(chunk[None, :pos], np.array([self.n_head]))
            last = self._combine({k: v[-1:] for k, v in b.items()}, head)
            b = {k: np.concatenate([b[k][:-1], last[k]]) for k in b}
        x = self.n_head + pos
        rest = chunk[pos:]
        full = len(rest) // w * w
        parts = [b]
        if full:
            parts.append(self._summarise(rest[:full].reshape(-1, w), x + np.arange(full // w) * w))
        if full < len(rest):
            parts.append(self._summarise(rest[None, full:], np.array([x + full])))
        self._b = {k: np.concatenate([p[k] for p in parts]) for k in b}
        self.n_head += len(chunk)

    def _merge_pairs(self) -> None:
        """Merge buckets 2i and 2i+1 and double ``width``; an odd last bucket becomes the
        (partial) last bucket of the new width."""
        b = self._b
        m = len(b["cnt"]) // 2 * 2
        merged = self._combine({k: v[:m:2] for k, v in b.items()}, {k: v[1:m:2] for k, v in b.items()})
        self._b = {k: np.concatenate([merged[k], b[k][m:]]) for k in merged}
        self.width *= 2

    def points(self) -> tuple[np.ndarray, np.ndarray]:
        """The decimated series: finite points only, sorted by x.

        Returns:
            ``(x, y)`` float32 ``(k,)`` with ``k ≤ max_points``: for each bucket its min and
            max point in x order (one point if they coincide), then the newest ``tail`` points.
        """
        b, raw = self._b, self._tail
        tx = self.n_head + np.arange(len(raw), dtype=np.float64)
        has = b["cnt"] > 0
        xs = np.stack([b["xmin"][has], b["xmax"][has]], 1)
        ys = np.stack([b["ymin"][has], b["ymax"][has]], 1)
        order = np.argsort(xs, axis=1, kind="stable")
        xs, ys = np.take_along_axis(xs, order, 1), np.take_along_axis(ys, order, 1)
        keep = np.ones(xs.shape, dtype=bool)
        keep[xs[:, 0] == xs[:, 1], 1] = False
        ok = np.isfinite(raw)
        x = np.concatenate([xs[keep], tx[ok]]).astype(np.float32)
        y = np.concatenate([ys[keep], raw[ok]]).astype(np.float32)
        return x, y

    def means(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Bucket means then raw tail values, the input of :func:`ema`.

        Returns:
            ``(x, mean, count)`` float64 ``(k,)``: ``x`` is a bucket's centre step, ``count``
            the number of finite values it averages (1 for a raw point); empty buckets and
            non-finite raw points are left out.
        """
        b, raw = self._b, self._tail
        tx = self.n_head + np.arange(len(raw), dtype=np.float64)
        has = b["cnt"] > 0
        ok = np.isfinite(raw)
        x = np.concatenate([b["x0"][has] + (b["size"][has] - 1) / 2.0, tx[ok]])
        m = np.concatenate([b["sum"][has] / np.maximum(b["cnt"][has], 1), raw[ok]])
        c = np.concatenate([b["cnt"][has], np.ones(int(ok.sum()))])
        return x, m, c
