"""The paper's protocol, exact and streaming: pooled-pixel AP, AUROC and FPR@95.

Every pixel labelled 0 (normal) or 1 (anomaly) is pooled over the dataset; any other label (void,
255) is dropped. The results equal scikit-learn on the concatenated pixels:
``average_precision_score`` (AP), ``roc_curve`` + ``auc`` (AUROC) and the FPR of the first point of
``roc_curve`` (default ``drop_intermediate=True``) whose TPR is strictly above 0.95 (FPR@95).

Frames are added one at a time. Per class the accumulator keeps the sorted *distinct* score values
with their pixel counts (``CountTable``): memory grows with the number of distinct values (at most
one entry per representable float32 value in the scores' range), not with the number of pixels, and
a float32 map costs 8 bytes per new distinct value. Frames are merged into the table lazily, a batch
at a time, so the amortised cost per frame stays near one sort of the frame.
"""
from __future__ import annotations

import numpy as np

FPR_AT_TPR = 0.95


def _as_float(values: np.ndarray) -> np.ndarray:
    """float16/float32 -> float32, anything else -> float64 (both exact for the input)."""
    values = np.asarray(values)
    if values.dtype in (np.float16, np.float32):
        return values.astype(np.float32, copy=False)
    return values.astype(np.float64, copy=False)


def split_by_label(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(scores of anomaly pixels, scores of normal pixels); labels other than 0/1 are void."""
    scores, labels = np.asarray(scores), np.asarray(labels)
    if scores.shape != labels.shape:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} differ in shape")
    scores = _as_float(scores)
    if np.isnan(scores).any():
        raise ValueError("anomaly scores contain NaN")
    return scores[labels == 1], scores[labels == 0]


def _merge(values: np.ndarray, counts: np.ndarray, new_values: np.ndarray,
           new_counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge two sorted distinct-value tables (values ascending, no repeats in either)."""
    if values.size == 0:
        return new_values, new_counts
    idx = np.searchsorted(values, new_values)
    found = idx < values.size
    found[found] = values[idx[found]] == new_values[found]
    counts[idx[found]] += new_counts[found]  # both tables are distinct: no repeated index
    fresh = ~found
    return (np.insert(values, idx[fresh], new_values[fresh]),
            np.insert(counts, idx[fresh], new_counts[fresh]))


def _collapse(values: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unsorted (value, count) pairs with repeats -> sorted distinct values, summed counts."""
    order = np.argsort(values, kind="stable")  # concatenated sorted runs: a cheap merge
    values, counts = values[order], counts[order]
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    return values[starts], np.add.reduceat(counts, starts)


class CountTable:
    """Sorted distinct values with the number of times each was added (exact, streaming)."""

    MIN_BATCH = 1 << 20  # pending entries merged together once there are this many (or more)

    def __init__(self):
        self._values = np.empty(0, np.float32)
        self._counts = np.empty(0, np.uint32)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_size = 0
        self.total = 0  # values added

    def add(self, values: np.ndarray) -> None:
        values = _as_float(values).ravel()
        if values.size == 0:
            return
        uniq, counts = np.unique(values, return_counts=True)
        self.total += values.size
        self._pending.append((uniq, counts))
        self._pending_size += uniq.size
        if self._pending_size >= max(self._values.size // 4, self.MIN_BATCH):
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        dtype = np.result_type(self._values.dtype, *(v.dtype for v, _ in self._pending))
        cdtype = np.uint32 if self.total < 2 ** 32 else np.uint64  # a count never exceeds total
        values = np.concatenate([v for v, _ in self._pending]).astype(dtype, copy=False)
        counts = np.concatenate([c for _, c in self._pending]).astype(cdtype)
        if len(self._pending) > 1:
            values, counts = _collapse(values, counts)
        self._values, self._counts = _merge(self._values.astype(dtype, copy=False),
                                            self._counts.astype(cdtype, copy=False),
                                            values, counts)
        self._pending, self._pending_size = [], 0

    def table(self) -> tuple[np.ndarray, np.ndarray]:
        """(distinct values ascending, counts)."""
        self._flush()
        return self._values, self._counts

    @property
    def nbytes(self) -> int:
        return (self._values.nbytes + self._counts.nbytes
                + sum(v.nbytes + c.nbytes for v, c in self._pending))


class PaperMetrics:
    """Streaming pixel AP / AUROC / FPR@95 over labelled frames (paper protocol, exact)."""

    def __init__(self):
        self.pos = CountTable()  # scores of anomaly pixels
        self.neg = CountTable()  # scores of normal pixels

    def add(self, scores: np.ndarray, labels: np.ndarray) -> None:
        """One frame: scores [H, W] (higher = more anomalous), labels [H, W] (0, 1, else void)."""
        pos, neg = split_by_label(scores, labels)
        self.pos.add(pos)
        self.neg.add(neg)

    @property
    def num_pos(self) -> int:
        return self.pos.total

    @property
    def num_neg(self) -> int:
        return self.neg.total

    def _points(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per distinct threshold, high to low: (pos count, neg count, cum. TP, cum. FP), int64."""
        pv, pc = self.pos.table()
        nv, nc = self.neg.table()
        values = np.union1d(pv, nv)
        p = np.zeros(values.size, np.int64)
        n = np.zeros(values.size, np.int64)
        p[np.searchsorted(values, pv)] = pc
        n[np.searchsorted(values, nv)] = nc
        p, n = p[::-1], n[::-1]
        return p, n, np.cumsum(p), np.cumsum(n)

    def result(self) -> dict[str, float]:
        """{'ap', 'auroc', 'fpr95'} as fractions; NaN where undefined (no anomaly/normal px)."""
        nan = float("nan")
        num_pos, num_neg = self.num_pos, self.num_neg
        if num_pos == 0 or num_neg == 0:
            return {"ap": nan if num_pos == 0 else 1.0, "auroc": nan, "fpr95": nan,
                    "num_pos": num_pos, "num_neg": num_neg}
        p, n, tps, fps = self._points()
        # AP: sum over thresholds of (recall step) * precision; only steps with positives count.
        k = p > 0
        ap = float(np.sum(p[k] / num_pos * (tps[k] / (tps[k] + fps[k]))))
        # AUROC: trapezoids between consecutive ROC points, starting at (0, 0).
        tps_prev = tps - p
        auroc = float(np.sum(n * (2.0 * tps_prev + p)) / (2.0 * num_pos * num_neg))
        # FPR@95 on roc_curve's points: a point is dropped when its step equals the next one.
        keep = np.ones(p.size, bool)
        if p.size > 2:
            keep[1:-1] = (n[2:] != n[1:-1]) | (p[2:] != p[1:-1])
        tpr = tps / tps[-1]
        above = np.flatnonzero((tpr > FPR_AT_TPR) & keep)
        fpr95 = float(fps[above[0]] / num_neg)
        return {"ap": ap, "auroc": auroc, "fpr95": fpr95, "num_pos": num_pos, "num_neg": num_neg}

    def curves(self, max_points: int = 2000) -> dict[str, np.ndarray]:
        """ROC and PR curves (thresholds high to low), thinned to about ``max_points`` points."""
        if self.num_pos == 0 or self.num_neg == 0:
            return {k: np.empty(0) for k in ("fpr", "tpr", "precision", "recall")}
        _, _, tps, fps = self._points()
        idx = np.unique(np.linspace(0, tps.size - 1, min(max_points, tps.size)).astype(np.int64))
        tps, fps = tps[idx].astype(np.float64), fps[idx].astype(np.float64)
        return {"fpr": np.r_[0.0, fps / self.num_neg], "tpr": np.r_[0.0, tps / self.num_pos],
                "precision": np.r_[1.0, tps / (tps + fps)],
                "recall": np.r_[0.0, tps / self.num_pos]}


def frame_average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """AP of one frame (NaN when it holds no anomaly pixel): used to rank images."""
    metrics = PaperMetrics()
    metrics.add(scores, labels)
    return metrics.result()["ap"]
