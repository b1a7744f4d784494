"""Checkpoints: our self-describing safetensors format, and importers for other formats."""
from .io import (FORMAT, CheckpointError, check_state_dict, load_checkpoint, load_model,
                 read_config, save_model)

__all__ = ["FORMAT", "CheckpointError", "check_state_dict", "load_checkpoint", "load_model",
           "read_config", "save_model"]
