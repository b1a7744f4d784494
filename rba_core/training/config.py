"""TrainConfig: one YAML recipe describes a closed-set training or an RbA fine-tuning run."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ..dataconf import ConfigError, check, from_dict, load_yaml, to_dict

SCOPES = ("head", "decoder", "pixel_decoder", "full")


@dataclass
class ModelSpec:
    """Architecture (a preset + overrides) and optional initial weights (our .safetensors)."""
    preset: str = "tiny"
    overrides: dict[str, Any] = field(default_factory=dict)
    init: str = ""  # weights to start from (required for fine-tuning)
    backbone_init: str = ""  # ImageNet backbone weights (.safetensors, timm names) for training


@dataclass
class DataSpec:
    """A segmentation dataset (layouts: ``rba_core.data.datasets``): camvid | cityscapes | folder
    (ROOT/images/* + ROOT/labels_masks|labels|masks/*.png with the same stem)."""
    kind: Literal["camvid", "cityscapes", "folder"] = "camvid"
    root: str = ""
    split: str = "train"
    label_map: dict[str, int] = field(default_factory=dict)  # folder kind: raw value -> train id
    limit: int = 0              # use only the first N samples (0 = all)


# Released RbA / Mask2Former (Cityscapes, short side 1024): [int(x * 0.1 * 1024) for x in 5..20],
# i.e. 0.5x .. 2.0x in 16 steps. The same factors on CamVid's 360 px short side:
CAMVID_SHORT_SIDES = [int(x * 0.1 * 360) for x in range(5, 21)]  # 180, 216, ..., 720


@dataclass
class AugmentSpec:
    """Mask2Former-style augmentation: random short-side resize, crop, flip, photometric jitter."""
    short_sides: list[int] = field(default_factory=lambda: list(CAMVID_SHORT_SIDES))  # drawn 1 of N
    max_size: int = 0                 # cap on the long side after resizing (0 = none)
    crop_size: list[int] = field(default_factory=lambda: [320, 416])  # (H, W), multiples of 32
    flip: bool = True
    color_jitter: bool = True

    def __post_init__(self):
        check(len(self.short_sides) > 0 and min(self.short_sides) > 0, "short_sides",
              "needs at least one positive size")
        check(self.max_size >= 0, "max_size", "must be >= 0 (0 = no cap)")
        check(len(self.crop_size) == 2 and all(c > 0 and c % 32 == 0 for c in self.crop_size),
              "crop_size", "needs (H, W), each a positive multiple of 32")


@dataclass
class AnomalyMixSpec:
    """Paste outlier objects (COCO-style) into training images (paper Sec. 3.4)."""
    enabled: bool = False
    source: str = ""                  # COCO annotation JSON, or a YOLO-seg root (images/, labels/)
    images: str = ""                  # COCO: image folder (default: next to the JSON)
    num_objects: int = 300            # fixed random sample drawn once
    min_side: int = 0                 # keep source images with both sides >= this (paper: 480)
    p_out: float = 0.1                # per training image
    scale_range: list[float] = field(default_factory=lambda: [1.0, 1.0])  # resize before paste
    outlier_label: int = 254
    synthetic_objects: int = 0        # random shapes with random textures added to the pool

    def __post_init__(self):
        check(0.0 <= self.p_out <= 1.0, "p_out", "must be in [0, 1]")
        check(self.num_objects > 0, "num_objects", "must be positive")
        check(self.synthetic_objects >= 0, "synthetic_objects", "must be >= 0")
        check(not self.enabled or bool(self.source) or self.synthetic_objects > 0, "source",
              "needs a COCO JSON or YOLO-seg folder (or synthetic_objects > 0)")
        check(len(self.scale_range) == 2 and 0 < self.scale_range[0] <= self.scale_range[1],
              "scale_range", "needs (min, max) with 0 < min <= max")


@dataclass
class LossSpec:
    """Mask2Former losses (+ the RbA outlier loss when fine-tuning)."""
    class_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    no_object_weight: float = 0.1
    num_points: int = 12544           # points per mask for the mask losses and matching
    oversample_ratio: float = 3.0
    importance_sample_ratio: float = 0.75
    deep_supervision: bool = True
    rba: Literal["none", "hinge", "mse", "l1", "bce"] = "none"
    rba_alpha: float = 5.0
    rba_weight: float = 1.0           # per prediction (released: 1)
    # released: the RbA loss on the final AND every auxiliary prediction. Before issue 14 rba_core
    # used the final one only at twice the weight: rba_aux false + rba_weight 2.0 reproduces that.
    rba_aux: bool = True

    def __post_init__(self):
        check(self.num_points > 0, "num_points", "must be positive")
        check(self.oversample_ratio >= 1.0, "oversample_ratio", "must be >= 1")
        check(0.0 <= self.importance_sample_ratio <= 1.0, "importance_sample_ratio",
              "must be in [0, 1]")


@dataclass
class SolverSpec:
    """AdamW + poly schedule, as Mask2Former."""
    iterations: int = 1000
    batch_size: int = 8               # total over all processes
    lr: float = 1e-4
    weight_decay: float = 0.05
    backbone_lr_multiplier: float = 0.1
    weight_decay_norm: float = 0.0    # norms
    weight_decay_embed: float = 0.0   # nn.Embedding modules (queries, decoder level embedding)
    poly_power: float = 0.9
    warmup_iterations: int = 0
    clip_grad_norm: float = 0.01      # L2 over the full model (0 = off)
    amp: bool = True                  # only on CUDA
    scope: Literal["head", "decoder", "pixel_decoder", "full"] = "full"

    def __post_init__(self):
        check(self.iterations > 0, "iterations", "must be positive")
        check(self.batch_size > 0, "batch_size", "must be positive")
        check(self.lr > 0, "lr", "must be positive")


@dataclass
class TrainConfig:
    model: ModelSpec = field(default_factory=ModelSpec)
    train: DataSpec = field(default_factory=DataSpec)
    # more training sets, concatenated with ``train`` (detectron2: several DATASETS.TRAIN names)
    train_extra: list[DataSpec] = field(default_factory=list)
    val: DataSpec | None = None
    anomaly_val: dict[str, str] = field(default_factory=dict)  # {dataset: name, root: dir}
    augment: AugmentSpec = field(default_factory=AugmentSpec)
    anomaly_mix: AnomalyMixSpec = field(default_factory=AnomalyMixSpec)
    loss: LossSpec = field(default_factory=LossSpec)
    solver: SolverSpec = field(default_factory=SolverSpec)
    output_dir: str = "runs/train"
    seed: int = 0
    device: str = "auto"              # auto | cpu | cuda
    threads: int = 0                  # torch CPU threads (0 = torch default)
    num_workers: int = 0              # DataLoader workers per process
    log_period: int = 10
    checkpoint_period: int = 500
    eval_period: int = 500
    val_size: list[int] = field(default_factory=list)  # resize val images to (H, W); [] = native

    @classmethod
    def load(cls, path: str, overrides: list[str] | None = None) -> "TrainConfig":
        """Read a YAML recipe, apply ``key.sub=value`` overrides, validate."""
        data = load_yaml(path)
        for item in overrides or []:
            apply_override(data, item)
        return from_dict(cls, expand_env(data))

    def to_dict(self) -> dict:
        return to_dict(self)


DATA_DIR_DEFAULT = "../shared/data"


def expand_env(data: Any) -> Any:
    """Expand ``$VAR`` / ``${VAR}`` in strings; ``RBA_DATA_DIR`` defaults to ../shared/data."""
    import os

    if isinstance(data, dict):
        return {k: expand_env(v) for k, v in data.items()}
    if isinstance(data, list):
        return [expand_env(v) for v in data]
    if isinstance(data, str) and "$" in data:
        env = {**os.environ}
        env.setdefault("RBA_DATA_DIR", DATA_DIR_DEFAULT)
        for key in ("RBA_DATA_DIR",):
            data = data.replace("${" + key + "}", env[key]).replace("$" + key, env[key])
        return os.path.expandvars(data)
    return data


def apply_override(data: dict, item: str) -> None:
    """'solver.lr=0.001' -> data['solver']['lr'] = 0.001 (value parsed as YAML)."""
    import yaml

    if "=" not in item:
        raise ConfigError(item, "override must look like key.sub=value")
    key, value = item.split("=", 1)
    node = data
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(key, f"{part} is not a mapping")
    node[parts[-1]] = yaml.safe_load(value)
