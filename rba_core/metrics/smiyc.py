"""The SegmentMeIfYouCan (SMIYC) benchmark protocol: binned pixel metrics and component metrics.

A re-statement of the benchmark's ``metrics/pixel_classification*.py`` and
``metrics/instance_segmentation.py`` (SegmentMeIfYouCan/road-anomaly-benchmark at 1c7804e; see
``docs/metrics.md``). Only pixels with label 0 or 1 count.

Pixel level: per frame the scores are histogrammed on bin edges {vmin - eps, vmax + eps} (the
frame's smallest and largest score, eps = max(0.01 (vmax - vmin), 0.01)) + 384 quantiles of the
anomaly pixels' scores + 384 quantiles of the normal pixels' scores; each bin counts at its lower
edge (NumPy closes the last bin, so the outer margin keeps the top score in a bin of its own). The
counts of all frames are pooled and sorted by threshold, high to low, repeated thresholds
collapsed; AP is the step sum of precision over recall steps (precision 1 before anything is
predicted), FPR@95 the FPR at the first point with TPR >= 0.95 (1.0 if never), best F1 the
maximum of 2TP / (2TP + FP + FN), at the threshold of that point. Memory: about 770 bins per
frame, not per pixel. ``float16=True`` casts each score map to float16 first, as the benchmark
stores the maps it scores (leaderboard-equal numbers need it).

One deliberate difference from the benchmark's code: every run of repeated thresholds is
collapsed (the benchmark keeps each repeated entry as its own curve point).

Component level (``ComponentMetrics``), at a score threshold (the best-F1 one): prediction =
score > threshold outside void; 8-connected components; predicted components under
``min_pred_size`` px are dropped, ground-truth components under ``min_gt_size`` px become void.
sIoU of a ground-truth component K, with U the union of predicted components touching K:
|K n U| / (|U| + |K| - |K n U| - |U on other ground-truth components|); PPV of a predicted
component: the share of its pixels on any ground-truth component. F1_t = 2TP / (2TP + FN + FP)
with TP = GT components with sIoU >= t, FN the rest, FP = predicted components with PPV < t,
counts summed over the dataset; mean F1 averages t = 0.25, 0.30, ..., 0.75.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .pixel import split_by_label

NUM_BINS = 768
FPR_TPR = 0.95  # FPR@95 here: first point with TPR >= 0.95
SIOU_THRESHOLDS = np.linspace(0.25, 0.75, 11, endpoint=True)
EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class Track:
    """Component size filters of a SMIYC track (pixels)."""
    min_pred_size: int  # predicted components below this are dropped
    min_gt_size: int    # ground-truth components below this become void


TRACKS = {"anomaly": Track(500, 100), "obstacle": Track(50, 10)}


def frame_histogram(pos: np.ndarray, neg: np.ndarray, num_bins: int = NUM_BINS):
    """One frame's quantile-binned counts: (lower bin edges, anomaly counts, normal counts).

    Computed in the scores' own dtype, as the benchmark does (float16 maps stay float16)."""
    both = np.concatenate([pos, neg])
    vmin, vmax = np.min(both), np.max(both)
    eps = np.maximum((vmax - vmin) * 1e-2, 1e-2)  # a margin around the frame's range
    edges = [np.array([vmin - eps, vmax + eps])]
    for values in (pos, neg):
        if values.size:
            edges.append(np.quantile(values, np.linspace(0, 1, min(num_bins // 2, values.size))))
    edges = np.unique(np.concatenate(edges))
    tp_rel, _ = np.histogram(pos, bins=edges)
    fp_rel, _ = np.histogram(neg, bins=edges)
    return edges[:-1], tp_rel, fp_rel


class SmiycPixelMetrics:
    """Streaming SMIYC pixel metrics: binned AP, FPR@95 (TPR >= 0.95), AUROC, best F1.
    ``float16``: score maps cast to float16 first, as the benchmark's stored maps."""

    def __init__(self, num_bins: int = NUM_BINS, float16: bool = False):
        self.num_bins, self.float16 = num_bins, float16
        self._frames: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.num_pos = 0
        self.num_neg = 0

    def add(self, scores: np.ndarray, labels: np.ndarray) -> None:
        if self.float16:
            scores = np.asarray(scores).astype(np.float16)
        pos, neg = split_by_label(scores, labels)
        if self.float16:  # split_by_label widens to float32; binning stays in float16 (exact)
            pos, neg = pos.astype(np.float16), neg.astype(np.float16)
        if pos.size + neg.size == 0:
            return
        self._frames.append(frame_histogram(pos, neg, self.num_bins))
        self.num_pos += pos.size
        self.num_neg += neg.size

    def _curve(self):
        """Points from high to low threshold: (thresholds, TP, FP), with (0, 0) prepended."""
        thr = np.concatenate([f[0] for f in self._frames]).astype(np.float64)
        order = np.argsort(thr, kind="stable")[::-1]
        thr = thr[order]
        tp = np.cumsum(np.concatenate([f[1] for f in self._frames])[order].astype(np.float64))
        fp = np.cumsum(np.concatenate([f[2] for f in self._frames])[order].astype(np.float64))
        last = np.r_[thr[1:] != thr[:-1], True]  # a threshold's last entry holds all its pixels
        thr, tp, fp = thr[last], tp[last], fp[last]
        if tp[0] != 0 or fp[0] != 0:
            thr, tp, fp = np.r_[np.inf, thr], np.r_[0.0, tp], np.r_[0.0, fp]
        return thr, tp, fp

    def result(self) -> dict[str, float]:
        """{'ap', 'fpr95', 'auroc', 'best_f1', 'best_f1_threshold'}; NaN where undefined."""
        nan = float("nan")
        if self.num_pos == 0 or self.num_neg == 0:
            return {"ap": nan, "fpr95": nan, "auroc": nan, "best_f1": nan,
                    "best_f1_threshold": nan, "num_pos": self.num_pos, "num_neg": self.num_neg}
        thr, tp, fp = self._curve()
        fn = self.num_pos - tp
        recall = tp / self.num_pos
        fpr = fp / self.num_neg
        predicted = tp + fp
        precision = np.ones_like(tp)
        precision[predicted > 0] = tp[predicted > 0] / predicted[predicted > 0]
        ap = float(np.sum(np.diff(recall) * precision[1:]))
        i95 = int(np.searchsorted(recall, FPR_TPR))
        fpr95 = float(fpr[i95]) if i95 < recall.size else 1.0
        f1 = 2 * tp / (2 * tp + fp + fn)
        best = int(np.nanargmax(f1))
        return {"ap": ap, "fpr95": fpr95, "auroc": float(np.trapezoid(recall, fpr)),
                "best_f1": float(f1[best]), "best_f1_threshold": float(thr[best]),
                "num_pos": self.num_pos, "num_neg": self.num_neg}

    def curves(self) -> dict[str, np.ndarray]:
        if self.num_pos == 0 or self.num_neg == 0:
            return {k: np.empty(0) for k in ("fpr", "tpr", "precision", "recall")}
        _, tp, fp = self._curve()
        predicted = tp + fp
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 1.0)
        return {"fpr": fp / self.num_neg, "tpr": tp / self.num_pos,
                "precision": precision, "recall": tp / self.num_pos}



def frame_components(prediction: np.ndarray, labels: np.ndarray, track: Track):
    """One frame -> (sIoU per ground-truth component, sIoU and PPV per predicted component).

    prediction: bool [H, W]; labels: [H, W] with 0 normal, 1 anomaly, anything else void.
    """
    void = (labels != 0) & (labels != 1)
    gt, _ = ndimage.label(labels == 1, EIGHT_CONNECTED)
    pred, _ = ndimage.label(prediction & ~void, EIGHT_CONNECTED)
    # Size filters (on whole components), then renumber the survivors 1..n (0 = none).
    pred_keep = np.bincount(pred.ravel()) >= track.min_pred_size
    gt_small = np.bincount(gt.ravel()) < track.min_gt_size
    pred_keep[0], gt_small[0] = False, False
    pred_ids = np.where(pred_keep, np.cumsum(pred_keep), 0)
    gt_ids = np.where(gt_small, 0, np.cumsum(~gt_small) - 1)
    roi = ~void & ~gt_small[gt]  # small ground-truth components are void from here on
    g, p = gt_ids[gt[roi]], pred_ids[pred[roi]]
    n_gt, n_pred = int(gt_ids.max(initial=0)), int(pred_ids.max(initial=0))
    gt_size = np.bincount(g, minlength=n_gt + 1)
    pred_size = np.bincount(p, minlength=n_pred + 1)
    pred_on_bg = np.bincount(p[g == 0], minlength=n_pred + 1)  # C[0, j]
    gt_unpred = np.bincount(g[p == 0], minlength=n_gt + 1)     # C[i, 0]
    # Overlapping (ground truth i, prediction j) pairs.
    both = (g > 0) & (p > 0)
    pairs = np.unique(g[both].astype(np.int64) * (n_pred + 1) + p[both])
    gi, pj = pairs // (n_pred + 1), pairs % (n_pred + 1)
    # sIoU_gt(i) = |K n U| / (|K| + |U on background|); |U| - |U on other GT| - |K n U| = U on bg.
    gt_inter = gt_size - gt_unpred
    gt_bg = np.bincount(gi, weights=pred_on_bg[pj], minlength=n_gt + 1)
    siou_gt = gt_inter[1:] / (gt_size[1:] + gt_bg[1:])
    pred_inter = pred_size - pred_on_bg
    pred_fg = np.bincount(pj, weights=gt_unpred[gi], minlength=n_pred + 1)
    seen = pred_size[1:] > 0  # a component entirely inside a voided small GT drops out
    siou_pred = (pred_inter[1:] / np.maximum(pred_size[1:] + pred_fg[1:], 1))[seen]
    ppv = (pred_inter[1:] / np.maximum(pred_size[1:], 1))[seen]
    return siou_gt, siou_pred, ppv


class ComponentMetrics:
    """Streaming SMIYC component metrics: mean sIoU gt, mean PPV, F1 at t = 0.25..0.75.
    ``float16``: score maps cast to float16 before thresholding (the benchmark's stored maps)."""

    def __init__(self, track: str | Track = "anomaly", float16: bool = False):
        self.track = TRACKS[track] if isinstance(track, str) else track
        self.float16 = float16
        self.tp = np.zeros(SIOU_THRESHOLDS.size, np.int64)
        self.fn = np.zeros(SIOU_THRESHOLDS.size, np.int64)
        self.fp = np.zeros(SIOU_THRESHOLDS.size, np.int64)
        self._sums = np.zeros(3)  # sum of sIoU gt, sIoU pred, PPV
        self.num_gt = 0
        self.num_pred = 0

    def add(self, scores: np.ndarray, labels: np.ndarray, threshold: float) -> None:
        """One frame at a score threshold (prediction = score > threshold)."""
        scores = np.asarray(scores).astype(np.float16) if self.float16 else np.asarray(scores)
        self.add_prediction(scores > threshold, labels)

    def add_prediction(self, prediction: np.ndarray, labels: np.ndarray) -> None:
        """One frame from a binary anomaly prediction [H, W]."""
        if prediction.shape != labels.shape:
            raise ValueError(f"prediction {prediction.shape} and labels {labels.shape} differ")
        siou_gt, siou_pred, ppv = frame_components(np.asarray(prediction, bool),
                                                   np.asarray(labels), self.track)
        t = SIOU_THRESHOLDS[:, None]
        self.tp += np.count_nonzero(siou_gt[None] >= t, axis=1)
        self.fn += np.count_nonzero(siou_gt[None] < t, axis=1)
        self.fp += np.count_nonzero(ppv[None] < t, axis=1)
        self._sums += (siou_gt.sum(), siou_pred.sum(), ppv.sum())
        self.num_gt += siou_gt.size
        self.num_pred += ppv.size

    def result(self) -> dict[str, float]:
        """Means over all components of the dataset and F1 at each threshold (NaN if undefined)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = 2 * self.tp / (2 * self.tp + self.fn + self.fp)
            siou_gt, siou_pred, ppv = self._sums / np.array(
                [self.num_gt, self.num_pred, self.num_pred], float)
        out = {"siou_gt": float(siou_gt), "siou_pred": float(siou_pred), "ppv": float(ppv),
               "mean_f1": float(np.mean(f1))}
        for t, value in zip(SIOU_THRESHOLDS, f1):
            if round(t * 100) in (25, 50, 75):
                out[f"f1_{round(t * 100)}"] = float(value)
        out.update(num_gt=self.num_gt, num_pred=self.num_pred)
        return out
