"""File I/O: atomic writes, 3DGS-layout .ply files, checkpoints (safetensors + JSON)."""

from foresplat.io.atomic import (atomic_open, atomic_write, atomic_write_bytes, atomic_write_json,
                                 atomic_write_text)
from foresplat.io.checkpoint import (CHECKPOINT_SCHEMA_VERSION, CheckpointError, checkpoint_paths,
                                     flatten_state, load_checkpoint, save_checkpoint, unflatten_state)
from foresplat.io.outputs import check_output_dir, check_output_path, sidecar_record
from foresplat.io.ply import pad_sh_degree, ply_property_names, read_ply, write_ply

__all__ = [
    "atomic_open", "atomic_write", "atomic_write_bytes", "atomic_write_json", "atomic_write_text",
    "check_output_path", "check_output_dir", "sidecar_record",
    "pad_sh_degree", "ply_property_names", "read_ply", "write_ply",
    "CHECKPOINT_SCHEMA_VERSION", "CheckpointError", "checkpoint_paths", "save_checkpoint",
    "load_checkpoint", "flatten_state", "unflatten_state",
]
