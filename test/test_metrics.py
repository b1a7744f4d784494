"""rba_core.metrics against hand-computed cases, brute force and scikit-learn."""
import numpy as np
import pytest
from sklearn.metrics import auc, average_precision_score, confusion_matrix, roc_curve

from rba_core.metrics import (ComponentMetrics, ConfusionMatrix, CountTable, PaperMetrics,
                              SmiycPixelMetrics, Track, frame_average_precision, frame_components)
from rba_core.metrics.smiyc import SIOU_THRESHOLDS


def sklearn_paper(scores, labels):
    fpr, tpr, _ = roc_curve(labels, scores)
    return {"ap": average_precision_score(labels, scores), "auroc": auc(fpr, tpr),
            "fpr95": fpr[tpr > 0.95][0]}


def paper(frames):
    m = PaperMetrics()
    for s, l in frames:
        m.add(s, l)
    return m.result()


def random_frames(rng, n, shape=(30, 40), decimals=2, void=0.1):
    """Correlated scores with many ties (rounded), some void pixels, float32."""
    frames = []
    for _ in range(n):
        labels = (rng.random(shape) < 0.15).astype(np.uint8)
        scores = np.round(rng.normal(size=shape) + 1.2 * labels, decimals).astype(np.float32)
        labels[rng.random(shape) < void] = 255
        frames.append((scores, labels))
    return frames


def pooled(frames):
    s = np.concatenate([f[0][(f[1] == 0) | (f[1] == 1)] for f in frames])
    l = np.concatenate([f[1][(f[1] == 0) | (f[1] == 1)] for f in frames])
    return s, l


# -- paper protocol -------------------------------------------------------------------------------
def test_perfect_separation():
    r = paper([(np.array([[0.9, 0.8], [0.1, 0.2]]), np.array([[1, 1], [0, 0]]))])
    assert (r["ap"], r["auroc"], r["fpr95"]) == (1.0, 1.0, 0.0)


def test_inverted_separation():
    # 3 anomalies all below 5 normals: precision at the k-th anomaly is k / (k + 5).
    s = np.array([9, 8, 7, 6, 5, 3, 2, 1], np.float32)
    l = np.array([0, 0, 0, 0, 0, 1, 1, 1])
    r = paper([(s, l)])
    assert r["ap"] == pytest.approx((1 / 6 + 2 / 7 + 3 / 8) / 3, abs=1e-12)
    assert r["auroc"] == 0.0 and r["fpr95"] == 1.0


def test_all_ties():
    s = np.full((10, 10), 0.5, np.float32)
    l = np.zeros((10, 10), np.uint8)
    l[:3] = 1  # 30 anomalies, 70 normals, one threshold
    r = paper([(s, l)])
    assert r["ap"] == pytest.approx(0.3, abs=1e-12)
    assert r["auroc"] == pytest.approx(0.5, abs=1e-12) and r["fpr95"] == 1.0


def test_single_positive():
    s = np.arange(20, dtype=np.float32)
    l = np.zeros(20, np.uint8)
    l[14] = 1  # 5 normals score higher
    r = paper([(s, l)])
    assert r["ap"] == pytest.approx(1 / 6, abs=1e-12)
    assert r["auroc"] == pytest.approx(14 / 19, abs=1e-12)
    assert r["fpr95"] == pytest.approx(5 / 19, abs=1e-12)


def test_void_and_other_labels_are_dropped():
    rng = np.random.default_rng(1)
    s = rng.normal(size=(20, 20)).astype(np.float32)
    l = (rng.random((20, 20)) < 0.3).astype(np.uint8)
    ref = paper([(s, l)])
    l2, s2 = l.copy(), s.copy()
    l2[:, :5] = 255
    l2[0, 5:] = 7
    s2[l2 > 1] = 1e6  # whatever a void pixel scores must not matter
    keep = l2 <= 1
    assert paper([(s2, l2)]) == paper([(s[keep], l[keep])])
    assert paper([(s2, l2)])["num_pos"] + paper([(s2, l2)])["num_neg"] == keep.sum()
    assert ref["num_pos"] + ref["num_neg"] == 400


def test_frames_without_anomaly():
    rng = np.random.default_rng(2)
    frames = random_frames(rng, 4)
    empty = (rng.normal(size=(30, 40)).astype(np.float32), np.zeros((30, 40), np.uint8))
    frames.insert(2, empty)
    r = paper(frames)
    ref = sklearn_paper(*pooled(frames))
    assert all(abs(r[k] - ref[k]) < 1e-9 for k in ref)
    assert np.isnan(frame_average_precision(*empty))
    nothing = paper([empty])
    assert np.isnan(nothing["ap"]) and np.isnan(nothing["auroc"]) and np.isnan(nothing["fpr95"])


@pytest.mark.parametrize("decimals", [0, 1, 2, 6])
def test_equals_sklearn_with_ties(decimals, monkeypatch):
    monkeypatch.setattr(CountTable, "MIN_BATCH", 64)  # exercise the batched merges
    rng = np.random.default_rng(decimals)
    frames = random_frames(rng, 12, decimals=decimals)
    r = paper(frames)
    ref = sklearn_paper(*pooled(frames))
    for k in ref:
        assert abs(r[k] - ref[k]) < 1e-9, (k, r[k], ref[k])


def test_fpr95_uses_roc_curve_points():
    # 40 anomalies; 38 alone at the top (TPR 0.95, not above). Then two equal steps of
    # (1 anomaly, 1 normal): roc_curve drops the first (collinear), so FPR@95 = 2/N, not 1/N.
    s = np.r_[np.full(38, 10.0), [9, 9, 8, 8], np.arange(5, dtype=float)]
    l = np.r_[np.ones(38), [1, 0, 1, 0], np.zeros(5)].astype(np.uint8)
    r = paper([(s, l)])
    assert r["fpr95"] == pytest.approx(2 / 7) == sklearn_paper(s, l)["fpr95"]


def test_streaming_equals_one_shot(monkeypatch):
    monkeypatch.setattr(CountTable, "MIN_BATCH", 100)
    rng = np.random.default_rng(3)
    frames = random_frames(rng, 9, decimals=3)
    s, l = pooled(frames)
    assert paper(frames) == paper([(s, l)])
    assert paper(frames[::-1]) == paper([(s, l)])


def test_float64_scores_are_not_rounded():
    s = np.array([1.0, 1.0 + 1e-12, 0.5])  # distinct in float64, equal in float32
    l = np.array([0, 1, 0])
    assert paper([(s, l)])["ap"] == 1.0 == average_precision_score(l, s)


def test_nan_scores_rejected():
    with pytest.raises(ValueError, match="NaN"):
        PaperMetrics().add(np.array([np.nan, 1.0]), np.array([0, 1]))


# -- SMIYC pixel protocol -------------------------------------------------------------------------
def smiyc(frames):
    m = SmiycPixelMetrics()
    for s, l in frames:
        m.add(s, l)
    return m.result()


def test_smiyc_exact_when_every_value_has_its_own_bin():
    # With 2^k + 1 pixels per class and frame (k <= 8), the quantile edges are exactly the
    # frame's own values; with scores in (0, 1) each bin then holds one value, and the binned
    # curve is the exact curve.
    rng = np.random.default_rng(4)
    frames = []
    for _ in range(5):
        labels = rng.permutation(np.r_[np.ones(33), np.zeros(129), np.full(8, 255)])
        labels = labels.astype(np.uint8)
        scores = np.round(rng.uniform(0.05, 0.95, labels.size) + 0.2 * (labels == 1), 2)
        frames.append((np.clip(scores, 0.01, 0.99).astype(np.float32).reshape(10, 17),
                       labels.reshape(10, 17)))
    r = smiyc(frames)
    s, l = pooled(frames)
    assert r["ap"] == pytest.approx(average_precision_score(l, s), abs=1e-9)
    fpr, tpr, _ = roc_curve(l, s, drop_intermediate=False)
    assert r["fpr95"] == pytest.approx(fpr[tpr >= 0.95][0], abs=1e-12)
    assert r["auroc"] == pytest.approx(auc(fpr, tpr), abs=1e-9)
    # best F1 by brute force over thresholds "score >= t"
    f1 = [2 * ((s >= t) & (l == 1)).sum() / ((s >= t).sum() + (l == 1).sum()) for t in np.unique(s)]
    assert r["best_f1"] == pytest.approx(max(f1), abs=1e-12)
    t_best = np.unique(s)[int(np.argmax(f1))]
    assert r["best_f1_threshold"] == pytest.approx(t_best)


def test_smiyc_binned_ap_close_to_exact():
    rng = np.random.default_rng(5)
    frames = []
    for _ in range(8):
        labels = np.zeros((120, 160), np.uint8)
        y, x = rng.integers(0, 80), rng.integers(0, 100)
        labels[y:y + 40, x:x + 60] = 1
        scores = (rng.normal(size=labels.shape) + 1.5 * labels).astype(np.float32)
        labels[:5] = 255
        frames.append((scores, labels))
    s, l = pooled(frames)
    r = smiyc(frames)
    assert abs(r["ap"] - average_precision_score(l, s)) < 0.005
    assert abs(r["fpr95"] - sklearn_paper(s, l)["fpr95"]) < 0.01
    assert r["num_pos"] + r["num_neg"] == s.size


# Tiny frames computed by hand from the benchmark's binning (1c7804e): edges = {vmin - eps,
# vmax + eps} + the quantiles of each class, eps = max(0.01 (vmax - vmin), 0.01); a bin counts at
# its lower edge; AP = step sum with precision 1 before the first point.
@pytest.mark.parametrize("scores, labels, ref", [
    # scores reaching exactly 1.0: bins [.09,.1) [.1,.4) [.4,.6) [.6,1) [1,1.01]; at threshold
    # 1.0 there are 2 true and 1 false positive (fixed edges 0 and 1 put them in the .6 bin)
    ([.1, .4, .6, 1, 1, 1], [0, 0, 1, 1, 1, 0],
     dict(ap=2 / 3 * 2 / 3 + 1 / 3 * 3 / 4, auroc=1 / 3 * 1 / 3 / 2 * 2 + 2 / 3, fpr95=1 / 3,
          best_f1=6 / 7, best_f1_threshold=0.6)),
    # scores outside [0, 1] (energy-like): thresholds 3 (TP 1, FP 1), 2 (2, 1), .5 (2, 2), -1 (2, 3)
    ([-1, .5, 2, 3, 3], [0, 0, 1, 1, 0],
     dict(ap=.5 * .5 + .5 * 2 / 3, auroc=1 / 3 * .5 / 2 + 2 / 3, fpr95=1 / 3, best_f1=.8,
          best_f1_threshold=2.0)),
    # RbA-like, all <= 0: thresholds 0 (TP 0, FP 1), -.5 (1, 2), -1.5 (2, 2), -2 (3, 2), -3 (3, 3)
    ([-3, -2, -1.5, -.5, -.5, 0], [0, 1, 1, 1, 0, 0],
     dict(ap=1 / 9 + 1 / 6 + 1 / 5, auroc=1 / 3 * 1 / 3 / 2 + 1 / 3, fpr95=2 / 3, best_f1=3 / 4,
          best_f1_threshold=-2.0)),
])
def test_smiyc_bins_by_hand(scores, labels, ref):
    r = smiyc([(np.array(scores, np.float32), np.array(labels))])
    for key, value in ref.items():
        assert r[key] == pytest.approx(value, abs=1e-6), key


def test_smiyc_frame_edges_surround_the_frame_range():
    from rba_core.metrics.smiyc import frame_histogram
    pos, neg = np.array([.6, 1, 1]), np.array([.1, .4, 1])
    edges, tp, fp = frame_histogram(pos, neg)
    np.testing.assert_allclose(edges, [.09, .1, .4, .6, 1.0])  # lower edges; top edge 1.01
    assert tp.tolist() == [0, 0, 0, 1, 2] and fp.tolist() == [0, 1, 1, 0, 1]
    # a wide range: eps = 1 % of it
    edges, _, _ = frame_histogram(np.array([50.0]), np.array([-50.0]))
    np.testing.assert_allclose(edges, [-51, -50, 50])


def test_smiyc_float16_cast_as_the_leaderboard():
    # 0.50012 and 0.50024 differ in float32 but are both 0.5 in float16 (spacing 2^-11 near 0.5)
    s, l = np.array([0.50012, 0.50024], np.float32), np.array([1, 0])
    assert smiyc([(s, l)])["auroc"] == pytest.approx(0.0)
    m = SmiycPixelMetrics(float16=True)
    m.add(s, l)
    assert m.result()["auroc"] == pytest.approx(0.5)  # a tie
    # component metrics threshold the float16 map too
    scores = np.full((40, 40), 0.50012, np.float32)
    labels = np.ones((40, 40), np.uint8)
    for float16, n_pred in ((False, 1), (True, 0)):
        comp = ComponentMetrics("anomaly", float16=float16)
        comp.add(scores, labels, 0.5)
        assert comp.num_pred == n_pred


def test_smiyc_perfect_and_empty():
    s = np.array([[0.9, 0.8], [0.1, 0.2]], np.float32)
    l = np.array([[1, 1], [0, 0]])
    r = smiyc([(s, l), (s * 0.5, np.zeros_like(l))])
    assert r["ap"] == 1.0 and r["fpr95"] == 0.0 and r["best_f1"] == 1.0
    assert np.isnan(smiyc([(s, np.zeros_like(l))])["ap"])


# -- SMIYC component metrics ----------------------------------------------------------------------
ANY = Track(1, 1)


def comps(pred, labels, track=ANY):
    return frame_components(np.asarray(pred, bool), np.asarray(labels, np.uint8), track)


def canvas():
    return np.zeros((30, 60), np.uint8), np.zeros((30, 60), bool)


def test_components_perfect():
    labels, pred = canvas()
    labels[2:12, 2:12] = 1
    labels[15:25, 30:40] = 1
    siou_gt, siou_pred, ppv = comps(labels == 1, labels)
    assert siou_gt.tolist() == [1.0, 1.0] and ppv.tolist() == [1.0, 1.0]
    m = ComponentMetrics(ANY)
    m.add_prediction(labels == 1, labels)
    r = m.result()
    assert r["mean_f1"] == 1.0 and r["siou_gt"] == 1.0 and r["ppv"] == 1.0


def test_components_split_prediction():
    labels, pred = canvas()
    labels[0:10, 0:10] = 1
    pred[0:10, 0:4] = pred[0:10, 5:10] = True  # two parts, column 4 missed
    siou_gt, _, ppv = comps(pred, labels)
    assert siou_gt.tolist() == [pytest.approx(0.9)] and ppv.tolist() == [1.0, 1.0]


def test_components_merged_prediction():
    labels, pred = canvas()
    labels[0:10, 0:10] = 1
    labels[0:10, 15:25] = 1
    pred[0:10, 0:25] = True  # one component over both and the 5-px gap: |U| = 250
    siou_gt, _, ppv = comps(pred, labels)
    # |K n U| = 100, other GT inside U = 100: 100 / (250 + 100 - 100 - 100)
    assert siou_gt == pytest.approx([100 / 150, 100 / 150])
    assert ppv == pytest.approx([200 / 250])


def test_components_touching_another_ground_truth():
    labels, pred = canvas()
    labels[0:10, 0:10] = 1   # A
    labels[0:10, 15:25] = 1  # B
    pred[0:10, 0:20] = True  # A + gap + half of B: |U| = 200
    siou_gt, _, ppv = comps(pred, labels)
    assert siou_gt == pytest.approx([100 / (200 + 100 - 100 - 50), 50 / (200 + 100 - 50 - 100)])
    assert ppv == pytest.approx([150 / 200])


def test_components_eight_connectivity_and_void():
    labels, pred = canvas()
    labels[0:5, 0:5] = 1
    labels[5:10, 5:10] = 1  # touches the first only at a corner: one component
    labels[20:30, 40:60] = 255
    pred[20:30, 40:60] = True  # prediction on void is ignored
    siou_gt, _, ppv = comps(pred, labels)
    assert siou_gt.tolist() == [0.0] and ppv.size == 0


def test_components_size_filters():
    track = Track(min_pred_size=500, min_gt_size=100)
    labels = np.zeros((100, 200), np.uint8)
    pred = np.zeros((100, 200), bool)
    labels[0:9, 0:11] = 1    # 99 px: becomes void
    pred[0:9, 0:11] = True   # ...so this prediction has no pixel left
    pred[0:1, 11:12] = True  # (1 extra px touching it: component 100 px, but < 500 anyway)
    labels[20:30, 0:10] = 1  # 100 px: kept
    pred[40:50, 0:50] = True  # 500 px: kept, on background
    pred[60:70, 0:49] = True  # 490 px: dropped
    siou_gt, _, ppv = comps(pred, labels, track)
    assert siou_gt.tolist() == [0.0] and ppv.tolist() == [0.0]
    # A kept prediction partly inside the voided small ground truth: those 99 pixels leave it.
    pred2 = np.zeros_like(pred)
    pred2[0:30, 0:20] = True  # 600 px: 99 on the voided component, 100 on the kept one
    siou_gt, siou_pred, ppv = comps(pred2, labels, track)
    assert siou_gt == pytest.approx([100 / 501]) and ppv == pytest.approx([100 / 501])
    assert siou_pred == pytest.approx([100 / 501])


def test_component_threshold_is_strict():
    labels, _ = canvas()
    labels[0:10, 0:10] = 1
    scores = np.where(labels == 1, 0.5, 0.0)
    m = ComponentMetrics(ANY)
    m.add(scores, labels, 0.5)  # score > 0.5: nothing predicted
    assert m.result()["siou_gt"] == 0.0 and m.num_pred == 0


def test_component_f1_counts():
    # Three frames with known sIoU gt / PPV -> F1 per threshold by hand.
    m = ComponentMetrics(ANY)
    labels, pred = canvas()
    labels[0:10, 0:10] = 1
    pred[0:10, 0:4] = pred[0:10, 5:10] = True  # sIoU 0.9, PPVs 1, 1
    m.add_prediction(pred, labels)
    labels, pred = canvas()
    labels[0:10, 0:10] = 1
    pred[0:10, 0:10] = pred[20:30, 30:40] = True  # sIoU 1, PPVs 1 and 0
    m.add_prediction(pred, labels)
    labels, pred = canvas()
    labels[0:10, 0:10] = 1
    pred[0:10, 0:5] = True  # sIoU 0.5, PPV 1
    m.add_prediction(pred, labels)
    siou, ppv = np.array([0.9, 1.0, 0.5]), np.array([1, 1, 1, 0, 1.0])
    f1 = []
    for t in SIOU_THRESHOLDS:
        tp, fn, fp = (siou >= t).sum(), (siou < t).sum(), (ppv < t).sum()
        f1.append(2 * tp / (2 * tp + fn + fp))
    r = m.result()
    assert r["mean_f1"] == pytest.approx(np.mean(f1))
    assert r["f1_25"] == pytest.approx(6 / 7) and r["f1_75"] == pytest.approx(4 / 6)
    assert r["siou_gt"] == pytest.approx(siou.mean()) and r["ppv"] == pytest.approx(0.8)
    assert (r["num_gt"], r["num_pred"]) == (3, 5)


def brute_force_components(pred, labels, track):
    """metrics.md, literally: sets of pixel coordinates per component."""
    from scipy import ndimage

    st = np.ones((3, 3))
    void = labels == 255
    g, ng = ndimage.label(labels == 1, st)
    p, npred = ndimage.label(pred & ~void, st)
    roi = ~void.copy()
    gts = []
    for i in range(1, ng + 1):
        if (g == i).sum() < track.min_gt_size:
            roi &= g != i
        else:
            gts.append(i)
    preds = [j for j in range(1, npred + 1) if (p == j).sum() >= track.min_pred_size]
    gt_sets = {i: set(zip(*np.nonzero((g == i) & roi))) for i in gts}
    pred_sets = {j: set(zip(*np.nonzero((p == j) & roi))) for j in preds}
    all_gt = set().union(*gt_sets.values()) if gt_sets else set()
    siou = []
    for i, k in gt_sets.items():
        u = set().union(*[ps for ps in pred_sets.values() if ps & k])
        other = u & (all_gt - k)
        siou.append(len(k & u) / (len(u) + len(k) - len(k & u) - len(other)))
    ppv = [len(ps & all_gt) / len(ps) for ps in pred_sets.values() if ps]
    return siou, ppv


@pytest.mark.parametrize("seed", range(4))
def test_components_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    labels = np.zeros((40, 50), np.uint8)
    for _ in range(6):
        y, x = rng.integers(0, 35), rng.integers(0, 45)
        h, w = rng.integers(1, 9), rng.integers(1, 9)
        labels[y:y + h, x:x + w] = 1
    labels[rng.random(labels.shape) < 0.03] = 255
    pred = ndimage_blobs(rng, labels.shape)
    track = Track(int(rng.integers(1, 12)), int(rng.integers(1, 12)))
    siou, _, ppv = comps(pred, labels, track)
    ref_siou, ref_ppv = brute_force_components(pred, labels, track)
    assert siou == pytest.approx(ref_siou) and ppv == pytest.approx(ref_ppv)


def ndimage_blobs(rng, shape):
    pred = np.zeros(shape, bool)
    for _ in range(8):
        y, x = rng.integers(0, shape[0] - 3), rng.integers(0, shape[1] - 3)
        pred[y:y + rng.integers(1, 10), x:x + rng.integers(1, 10)] = True
    return pred


# -- closed set -----------------------------------------------------------------------------------
def test_confusion_matrix_iou():
    rng = np.random.default_rng(6)
    labels = rng.integers(0, 4, (50, 50))
    labels[:5] = 255
    pred = np.where(rng.random((50, 50)) < 0.7, labels, rng.integers(0, 4, (50, 50)))
    pred[:5] = rng.integers(0, 4, (5, 50))
    cm = ConfusionMatrix(5, ignore_index=255)  # class 4 never occurs: no IoU
    cm.add(pred[:25], labels[:25])
    cm.add(pred[25:], labels[25:])
    valid = labels != 255
    ref = confusion_matrix(labels[valid], pred[valid], labels=range(5))
    assert (cm.matrix == ref).all()
    iou = np.diag(ref)[:4] / (ref.sum(0) + ref.sum(1) - np.diag(ref))[:4]
    r = cm.result(["a", "b", "c", "d", "e"])
    assert r["miou"] == pytest.approx(iou.mean())
    assert np.isnan(r["per_class_iou"]["e"]) and r["per_class_iou"]["a"] == pytest.approx(iou[0])


def test_confusion_matrix_rejects_unknown_labels():
    with pytest.raises(ValueError, match="label 7"):
        ConfusionMatrix(3, ignore_index=11).add(np.zeros((2, 2)), np.array([[0, 7], [11, 1]]))
