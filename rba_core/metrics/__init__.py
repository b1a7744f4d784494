"""rba_core.metrics: streaming evaluation metrics (frames are added one at a time).

- ``PaperMetrics``: the RbA paper's protocol, exact: pooled-pixel AP, AUROC, FPR@95.
- ``SmiycPixelMetrics`` / ``ComponentMetrics``: the SegmentMeIfYouCan benchmark's protocol.
- ``ConfusionMatrix``: closed-set per-class IoU and mIoU.
Definitions: ``docs/metrics.md`` of the shared docs, restated in each module's docstring.
"""
from .closed_set import ConfusionMatrix
from .pixel import CountTable, PaperMetrics, frame_average_precision, split_by_label
from .smiyc import (NUM_BINS, SIOU_THRESHOLDS, TRACKS, ComponentMetrics, SmiycPixelMetrics, Track,
                    frame_components)

__all__ = ["PaperMetrics", "CountTable", "frame_average_precision", "split_by_label",
           "SmiycPixelMetrics", "ComponentMetrics", "Track", "TRACKS", "NUM_BINS",
           "SIOU_THRESHOLDS", "frame_components", "ConfusionMatrix"]
