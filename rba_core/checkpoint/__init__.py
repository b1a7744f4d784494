"""Checkpoints: our self-describing safetensors format, and importers for other formats."""
from .io import (FORMAT, CheckpointError, check_state_dict, load_checkpoint, load_model,
                 read_config, save_model)
from .detectron2 import (ConversionError, convert_detectron2, infer_config_from_keys,
                         load_detectron2)
from .safe_pickle import UnsafeCheckpointError, load_pickle

__all__ = ["FORMAT", "CheckpointError", "check_state_dict", "load_checkpoint", "load_model",
           "read_config", "save_model", "ConversionError", "convert_detectron2",
           "infer_config_from_keys", "load_detectron2", "UnsafeCheckpointError", "load_pickle"]
