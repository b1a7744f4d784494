"""The training loop: closed-set Mask2Former training and RbA fine-tuning, 1 process to torchrun.

Launch with ``rba train CONFIG`` / ``rba finetune CONFIG``, or under
``torchrun --nproc_per_node N -m rba_core.cli train CONFIG`` (DDP: NCCL on GPUs, gloo on CPU).
Checkpoints hold model, optimiser, scheduler, RNG and iteration, so ``--resume`` continues
exactly where a run stopped (bit-identically on CPU).
"""
from __future__ import annotations

import json
import logging
import os
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..checkpoint import check_state_dict, load_checkpoint, save_model
from ..errors import RbaError
from ..files import atomic_path
from ..model import Mask2Former, ModelConfig, build_model, padded_size
from ..model.config import merge
from .anomalymix import AnomalyMix, OutlierBank
from .config import TrainConfig
from .criterion import SetCriterion
from .data import ConcatSets, CounterDataset, CounterSampler, open_training_set
from .optim import build_optimizer, set_scope
from .transforms import TrainTransform
from .validate import evaluate_miou

log = logging.getLogger(__name__)


class Dist:
    """Process-group facts; a single process is world 1 / rank 0."""

    def __init__(self, device: str):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if self.world > 1 and not torch.distributed.is_initialized():
            backend = "nccl" if device.startswith("cuda") else "gloo"
            torch.distributed.init_process_group(backend)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_mean(self, value: float, device) -> float:
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(t)
        return float(t.item()) / self.world

    def sync_buffers(self, model: torch.nn.Module) -> None:
        """Broadcast rank 0's buffers (DDP only syncs them at the start of a forward)."""
        if self.world > 1:
            for buf in model.buffers():
                torch.distributed.broadcast(buf, 0)

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


def build_train_model(cfg: TrainConfig) -> Mask2Former:
    """Architecture from the preset, or from the ``init`` file; weights from ``init`` if given."""
    spec = cfg.model
    if spec.init:
        init_cfg, state, _ = load_checkpoint(spec.init)
        model_cfg = ModelConfig.from_dict(merge(init_cfg.to_dict(), spec.overrides))
        model = build_model(model_cfg)
        check_state_dict(model, state)
        model.load_state_dict(state)
        return model
    if not spec.preset:
        raise RbaError("model: give a preset or an init checkpoint")
    model = build_model(ModelConfig.preset(spec.preset, **spec.overrides))
    if spec.backbone_init:
        load_backbone_weights(model, spec.backbone_init)
    return model


def load_backbone_weights(model: Mask2Former, path: str) -> None:
    """Pretrained backbone weights (timm parameter names) into ``model.backbone.body``."""
    from safetensors.torch import load_file

    if not Path(path).is_file():
        raise RbaError(f"backbone weights not found: {path}")
    state = load_file(path)
    body = model.backbone.body
    target = body.body if hasattr(body, "body") else body  # timm features_only wrapper
    result = target.load_state_dict(state, strict=False)
    if result.missing_keys:
        raise RbaError(f"{path}: {len(result.missing_keys)} backbone weights missing "
                       f"(first: {result.missing_keys[0]})")
    if result.unexpected_keys:
        log.info("backbone weights: ignored %d unused keys (e.g. the classifier)",
                 len(result.unexpected_keys))


def pad_labels(labels: torch.Tensor, divisibility: int, ignore: int) -> torch.Tensor:
    """Labels [B, H, W] padded right/bottom with ``ignore`` to the model's padded input size."""
    h, w = labels.shape[-2:]
    ph, pw = padded_size(h, w, divisibility)
    if (ph, pw) == (h, w):
        return labels
    return F.pad(labels, (0, pw - w, 0, ph - h), value=ignore)


class Trainer:
    def __init__(self, cfg: TrainConfig, resume: bool = False):
        self.cfg = cfg
        device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        self.dist = Dist(device)
        if device == "cuda":
            device = f"cuda:{self.dist.local_rank}"
            torch.cuda.set_device(self.dist.local_rank)
        self.device = torch.device(device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.out = Path(cfg.output_dir)
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        self.model = build_train_model(cfg).to(self.device).train()
        trainable, total = set_scope(self.model, cfg.solver.scope)
        self.trainable_share = trainable / total
        # BatchNorm layers outside the scope keep their statistics (eval mode while training)
        self.frozen_norms = [m for m in self.model.modules()
                             if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                             and not any(p.requires_grad for p in m.parameters())]
        self.info(f"trainable parameters ({cfg.solver.scope}): {trainable:,} of {total:,} "
                  f"({100 * trainable / total:.2f} %)")
        self.optimizer, self.scheduler = build_optimizer(self.model, cfg.solver)
        mcfg = self.model.cfg
        self.criterion = SetCriterion(mcfg.num_classes, cfg.loss, mcfg.ignore_value,
                                      cfg.anomaly_mix.outlier_label)
        self.amp = cfg.solver.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.iteration = 0
        self.best_miou = -1.0
        if resume:
            self.load_state(self.out / "checkpoints" / "last.pt")
        self.ddp = self.model
        if self.dist.world > 1:
            self.ddp = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.val_set = open_training_set(cfg.val) if cfg.val else None

    def info(self, msg: str) -> None:
        if self.dist.main:
            log.info(msg)
            print(msg, flush=True)

    # -- data ------------------------------------------------------------------------------
    def loader(self) -> DataLoader:
        cfg = self.cfg
        mix = None
        if cfg.anomaly_mix.enabled:
            m = cfg.anomaly_mix
            bank = OutlierBank.from_source(m.source, m.images, m.num_objects, m.min_side, cfg.seed,
                                           m.synthetic_objects)
            self.info(f"AnomalyMix: {len(bank)} outlier objects, p_out={m.p_out}")
            mix = AnomalyMix(bank, m.p_out, m.outlier_label, tuple(m.scale_range))
        ignore = self.model.cfg.ignore_value
        sets = []
        for field_name, spec in [("train", cfg.train)] + [
                (f"train_extra.{i}", s) for i, s in enumerate(cfg.train_extra)]:
            data = open_training_set(spec)
            if spec.kind != "folder" and data.ignore_index != ignore:
                raise RbaError(f"{field_name}.kind: {spec.kind} labels ignore {data.ignore_index} "
                               f"but the model's ignore_value is {ignore}")
            sets.append(data)
            self.info(f"training set {field_name}: {len(data)} images ({spec.kind}: {spec.root})")
        train_set = sets[0] if len(sets) == 1 else ConcatSets(sets)
        dataset = CounterDataset(train_set, TrainTransform(cfg.augment, ignore), cfg.seed, mix)
        self.info(f"training on {len(dataset)} images")
        sampler = CounterSampler(self.iteration, cfg.solver.iterations, cfg.solver.batch_size,
                                 self.dist.rank, self.dist.world)
        return DataLoader(dataset, batch_size=cfg.solver.batch_size // self.dist.world,
                          sampler=sampler, num_workers=cfg.num_workers, drop_last=False,
                          pin_memory=self.device.type == "cuda",
                          # its own generator: creating the iterator must not draw from the
                          # global RNG, or a resumed run would drift from an uninterrupted one
                          generator=torch.Generator().manual_seed(cfg.seed))

    # -- checkpoints -----------------------------------------------------------------------
    def save_state(self) -> Path:
        path = self.out / "checkpoints" / "last.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                 "iteration": self.iteration, "best_miou": self.best_miou,
                 "rng": {"torch": torch.get_rng_state(), "python": random.getstate()},
                 "config": self.cfg.to_dict()}
        if torch.cuda.is_available():
            state["rng"]["cuda"] = torch.cuda.get_rng_state_all()
        with atomic_path(path) as tmp:  # a kill never leaves a half-written checkpoint
            torch.save(state, tmp)
        return path

    def load_state(self, path: Path) -> None:
        if not path.is_file():
            raise RbaError(f"cannot resume: no checkpoint at {path}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.iteration = int(state["iteration"])
        self.best_miou = float(state.get("best_miou", -1.0))
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.info(f"resumed from {path} at iteration {self.iteration}")

    # -- logging ---------------------------------------------------------------------------
    def log_row(self, row: dict) -> None:
        if self.dist.main:
            self.out.mkdir(parents=True, exist_ok=True)
            with open(self.out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")

    def validate(self) -> dict | None:
        row = {"iter": self.iteration}
        if self.val_set is not None and self.dist.main:
            res = evaluate_miou(self.model, self.val_set, self.cfg.val_size or None)
            row.update({"val_miou": res["miou"], "val_iou": res["iou"]})
            if res["miou"] > self.best_miou:
                self.best_miou = res["miou"]
                save_model(self.model, self.out / "model_best.safetensors",
                           info={"iteration": self.iteration, "val_miou": res["miou"]})
            self.info(f"iter {self.iteration}: val mIoU {res['miou']:.2f}")
        if self.cfg.anomaly_val and self.dist.main:
            from .anomaly_val import evaluate_anomaly

            row.update(evaluate_anomaly(self.model, self.cfg.anomaly_val))
            self.info(f"iter {self.iteration}: anomaly AP {row['anomaly_ap']:.2f}, "
                      f"FPR95 {row['anomaly_fpr95']:.2f} ({self.cfg.anomaly_val['dataset']})")
        self.log_row(row)
        self.dist.barrier()
        return row

    # -- the loop --------------------------------------------------------------------------
    def step(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        mcfg = self.model.cfg
        for m in self.frozen_norms:
            m.eval()
        images = images.to(self.device, non_blocking=True)
        labels = pad_labels(labels.to(self.device), mcfg.size_divisibility, mcfg.ignore_value)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            outputs = self.ddp(images)
        local_masks = self.criterion.count_masks(labels)
        num_masks = max(self.dist.all_mean(float(local_masks), self.device), 1.0)
        losses = self.criterion(outputs, labels, num_masks)
        loss = sum(losses.values())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.solver.clip_grad_norm > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(
                [p for p in self.model.parameters() if p.requires_grad],
                self.cfg.solver.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return {"loss": float(loss.detach()), **{k: float(v.detach()) for k, v in losses.items()}}

    def run(self) -> Path:
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        if self.dist.main:
            import yaml
            (self.out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        total = cfg.solver.iterations
        bar = tqdm(total=total, initial=self.iteration, desc="train", unit="it",
                   disable=not self.dist.main, dynamic_ncols=True)
        loader = self.loader()
        batches = iter(loader)
        t0 = time.perf_counter()
        try:
            while self.iteration < total:
                images, labels = next(batches)
                stats = self.step(images, labels)
                self.iteration += 1
                bar.update(1)
                bar.set_postfix(loss=f"{stats['loss']:.3f}")
                if self.iteration % cfg.log_period == 0 or self.iteration == total:
                    self.log_row({"iter": self.iteration, "lr": self.scheduler.get_last_lr()[0],
                                  "time": round(time.perf_counter() - t0, 2), **stats})
                if self.iteration % cfg.eval_period == 0 or self.iteration == total:
                    self.validate()
                if self.dist.main and (self.iteration % cfg.checkpoint_period == 0
                                       or self.iteration == total):
                    self.save_state()
        except KeyboardInterrupt:
            if self.dist.main:
                path = self.save_state()
                self.info(f"interrupted: saved iteration {self.iteration} to {path} "
                          f"(continue with --resume)")
            raise
        finally:
            bar.close()
        self.dist.sync_buffers(self.model)  # BN statistics of the last step differ per rank
        final = self.out / "model_final.safetensors"
        if self.dist.main:
            save_model(self.model, final, info={"iteration": self.iteration,
                                                "recipe": cfg.to_dict()})
            from .plots import plot_metrics
            plot_metrics(self.out / "metrics.jsonl", self.out / "metrics.png")
            self.info(f"done: {final} (training time {time.perf_counter() - t0:.0f} s)")
        self.dist.barrier()
        return final
