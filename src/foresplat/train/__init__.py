"""Training: `TrainConfig` (presets tiny, demo, base) and `train(config) -> Path`, single process or torchrun.

    from foresplat.train import train, train_preset
    ckpt = train(train_preset("tiny", out_dir="runs/t"))      # -> runs/t/model
"""

from foresplat.train.config import PRESETS, TrainConfig, train_preset
from foresplat.train.data import ContextBatch, collate, mix_seed, sample_split, validation_splits
from foresplat.train.loop import build_model, build_optimizer, rule_config, train, train_step
from foresplat.train.schedule import lr_at
from foresplat.train.state import list_checkpoints, load_training_checkpoint, save_training_checkpoint
from foresplat.train.validation import heldout_metrics

__all__ = ["ContextBatch", "PRESETS", "TrainConfig", "build_model", "build_optimizer", "collate",
           "heldout_metrics", "list_checkpoints", "load_training_checkpoint", "lr_at", "mix_seed",
           "rule_config", "sample_split", "save_training_checkpoint", "train", "train_preset", "train_step",
           "validation_splits"]
