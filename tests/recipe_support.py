"""Recipes for the tests: the tiny models on CPU, through the same parser as the recipe files."""

from __future__ import annotations

from pathlib import Path

from emoreason.training import Recipe, load_recipe

ROOT = Path(__file__).resolve().parents[1]
# TRL defaults to bf16 and gradient checkpointing; the tiny models train in float32 without it
CPU = {"bf16": False, "gradient_checkpointing": False, "report_to": "none", "logging_steps": 1, "save_steps": 1000}
TINY_FRAMES = {"fps": 4.0, "max_frames": 4, "min_pixels": 3136, "max_pixels": 12544}


def tiny_recipe(kind: str, model_dir, data, output_dir, **values) -> Recipe:
    """A recipe of ``kind`` on a tiny model: CPU settings, a small frame budget, then ``values``."""
    return load_recipe(kind, None, None, **{
        "model_name_or_path": str(model_dir), "dataset_name": str(data), "output_dir": str(output_dir),
        **CPU, **TINY_FRAMES, **values})


def recipe_yaml(path: Path, values: dict) -> Path:
    """A recipe file with the CPU settings and the frame budget, for subprocess launches."""
    import yaml

    path.write_text(yaml.safe_dump({**CPU, **TINY_FRAMES, **values}, sort_keys=False))
    return path
