"""``rba convert``: an official detectron2 checkpoint (RbA / Mask2Former) -> our .safetensors."""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..checkpoint import save_model
from ..files import file_sha256
from ..checkpoint.detectron2 import (ConversionError, convert_detectron2, dropped_keys,
                                     infer_config_from_keys, load_detectron2)
from ..model import PRESETS, ModelConfig, build_model

# the authors' released RbA checkpoints -> the preset with their architecture and classes
RELEASED = {
    "swin_b_1dl": "rba_swin_b_1dl",
    "swin_b_1dl_rba_ood_coco": "rba_swin_b_1dl",
    "swin_b_1dl_rba_ood_map_coco": "rba_swin_b_1dl",
    "swin_l_1dl": "rba_swin_l_1dl",
    "swin_l_1dl_rba_ood_map_coco": "rba_swin_l_1dl",
}

EPILOG = """\
examples:
  rba convert ckpts/swin_b_1dl_rba_ood_coco/model_final.pth rba_swin_b_coco.safetensors \\
      --preset swin_b_1dl_rba_ood_coco
  rba infer images/ --model rba_swin_b_coco.safetensors --out results/

The input is read without running code from it: only tensors, numpy arrays and plain containers
are unpickled; anything else is refused with an explanation. Every key is mapped, or dropped as
unused at inference (criterion.empty_weight, relative_position_index, trainer state), or reported:
a checkpoint that does not fit the architecture fails with the list of offending keys.
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "convert", help="import an official detectron2 checkpoint (.pth / .pkl) as .safetensors",
        description="Convert a detectron2 Mask2Former / RbA checkpoint with a Swin backbone (the "
                    "released RbA models, stock Mask2Former semantic models) into our "
                    "self-describing .safetensors file (weights + architecture + classes). The "
                    "architecture (depths, widths, window, numbers of encoder/decoder layers and "
                    "levels, queries) is read from the checkpoint's keys; the preset supplies "
                    "the class names and what the keys cannot tell (attention heads).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="detectron2 checkpoint: model_final.pth (or a .pkl)")
    p.add_argument("output", help="model file to write (.safetensors)")
    p.add_argument("--preset", default="auto",
                   help=f"released model ({', '.join(RELEASED)}) or preset ({', '.join(PRESETS)}); "
                        "auto (default): an RbA or Mask2Former Cityscapes preset picked from the "
                        "keys")
    p.add_argument("--name", default=None,
                   help="model name stored in the file (default: the --preset value)")
    p.add_argument("--half", action="store_true", help="store fp16 weights (half the file size)")
    p.set_defaults(func=run)


def auto_preset(state: dict) -> str:
    """rba_swin_{b,l}_1dl for one encoder level, m2f_swin_{b,l}_cityscapes for three."""
    try:
        embed = int(state["backbone.patch_embed.proj.weight"].shape[0])
        levels = int(state["sem_seg_head.pixel_decoder.transformer.level_embed"].shape[0])
    except KeyError:
        return "rba_swin_b_1dl"  # infer_config_from_keys explains what is missing
    size = {128: "b", 192: "l"}.get(embed, "b")
    return f"rba_swin_{size}_1dl" if levels == 1 else f"m2f_swin_{size}_cityscapes"


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f}M"


def run(args: argparse.Namespace) -> int:
    src, dst = Path(args.input), Path(args.output)
    if dst.suffix != ".safetensors":
        raise ConversionError(f"output must be a .safetensors file, got {dst}")
    state, extra = load_detectron2(src)
    preset = auto_preset(state) if args.preset == "auto" else RELEASED.get(args.preset, args.preset)
    cfg, adjusted = infer_config_from_keys(state, ModelConfig.preset(preset))
    cfg.name = args.name or (preset if args.preset == "auto" else args.preset)
    converted = convert_detectron2(state, cfg)
    with torch.device("meta"):  # weights come from the checkpoint: no random init
        model = build_model(cfg)
    model.load_state_dict(converted, strict=True, assign=True)
    dropped = dropped_keys(state)
    info = {"converted_from": "detectron2", "source": src.name, "source_sha256": file_sha256(src),
            "preset": preset, "dropped_keys": len(dropped), "trainer_state": extra}
    save_model(model, dst, half=args.half, info=info)

    params = {name: sum(p.numel() for p in child.parameters())
              for name, child in model.named_children()}
    print(f"converted {src} -> {dst}")
    print(f"  model:      {cfg.name} (preset {preset})")
    sw = cfg.backbone.kwargs
    print(f"  backbone:   Swin embed {sw['embed_dim']}, depths {sw['depths']}, window "
          f"{sw['window_size']}")
    print(f"  encoder:    {cfg.pixel_decoder.encoder_layers} layers on "
          f"{cfg.pixel_decoder.encoder_levels} level(s)")
    print(f"  decoder:    {cfg.decoder.layers} masked-attention layer(s) (detectron2 DEC_LAYERS "
          f"{cfg.decoder.layers + 1}), {cfg.decoder.num_queries} queries")
    print(f"  classes:    {cfg.num_classes}: {', '.join(cfg.class_names)}")
    print("  parameters: " + ", ".join(f"{k} {_millions(v)}" for k, v in params.items())
          + f"; total {_millions(sum(params.values()))}")
    if adjusted:
        print("  adjusted to the checkpoint: " + "; ".join(adjusted))
    kinds: dict[str, int] = {}
    for key in dropped:
        kind = key.rsplit(".", 1)[-1] if "relative_position" in key or "attn_mask" in key else key
        kinds[kind] = kinds.get(kind, 0) + 1
    print(f"  dropped:    {len(dropped)} unused key(s): "
          + (", ".join(f"{k} x{n}" if n > 1 else k for k, n in kinds.items()) or "none")
          + (f"; trainer state: {', '.join(extra)}" if extra else ""))
    return 0
