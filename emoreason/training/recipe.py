"""Training recipes are TRL's own configs: ``(script args, SFTConfig | GRPOConfig, ModelConfig)``.

A recipe file (``recipes/<model>/<stage>/*.yaml``) is parsed the way open-r1 parses its recipes — one flat YAML
mapping through TRL's ``TrlParser`` — so every option of ``SFTConfig`` / ``GRPOConfig`` (and the
``TrainingArguments`` under them) and of ``ModelConfig`` (``use_peft``, ``lora_*``, ``load_in_4bit``, ``dtype``,
``attn_implementation`` …) works as TRL documents it. emoreason's own keys — the data, the frame policy,
freezing, rewards — live in the small dataclasses below. An unknown key is an error naming the closest valid one.

The training mode follows from ``ModelConfig``: full fine-tuning by default, LoRA with ``use_peft: true``,
QLoRA with ``use_peft: true`` and ``load_in_4bit: true``.
"""

import logging
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from trl import ModelConfig, ScriptArguments

from emoreason.config import ConfigError, parse_dataclasses
from emoreason.reasoning.prompts import TASKS

log = logging.getLogger(__name__)

# Linear layers of the language model (Qwen2/Qwen3 decoder blocks): the LoRA default when lora_target_modules is
# unset (peft's own default would also wrap the vision tower's attention).
LM_LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


@dataclass
class EmoreasonArguments(ScriptArguments):
    """What SFT and GRPO recipes add to TRL's ``ScriptArguments`` (``dataset_name`` is a ``save_to_disk``
    directory or a JSONL file from ``emoreason synth-cot``; ``dataset_train_split`` / ``dataset_test_split``
    name its splits)."""

    tiny_model_family: str | None = field(default=None, metadata={
        "help": "Build the embedded tiny model (qwen2_5_vl | qwen3_vl) at model_name_or_path if it is missing."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Train on the first N rows only."})
    freeze_vision: bool = field(default=True, metadata={"help": "Freeze the vision tower (not its mergers)."})
    freeze_projector: bool = field(default=False, metadata={
        "help": "Freeze the vision merger/projector (Qwen3-VL: its deepstack mergers too)."})
    freeze_audio: bool = field(default=False, metadata={
        "help": "Freeze the audio encoder (Qwen2.5-Omni's audio_tower, its output projection included); "
                "freeze_language leaves it as this says."})
    freeze_language: bool = field(default=False, metadata={
        "help": "Train the vision path alone (LLaVA's stage-1 alignment, with the vision tower trainable unless "
                "freeze_vision; an Omni model's audio encoder too unless freeze_audio): a warm-up stage for a randomly initialised model, whose language model otherwise "
                "learns the answers' text before the video carries any signal. Full fine-tuning only."})
    vision_learning_rate: float | None = field(default=None, metadata={
        "help": "Learning rate of the vision tower (patch embedding + blocks); default: learning_rate."})
    projector_learning_rate: float | None = field(default=None, metadata={
        "help": "Learning rate of the vision merger/projector (Qwen3-VL: its deepstack mergers too); default: "
                "learning_rate (Qwen2-VL-Finetune's "
                "merger_lr, LLaVA's mm_projector_lr)."})
    audio_learning_rate: float | None = field(default=None, metadata={
        "help": "Learning rate of the audio encoder (Qwen2.5-Omni's audio_tower); default: learning_rate."})
    vision_attention: str = field(default="auto", metadata={
        "help": "varlen: one attention call for all vision windows (torch varlen_attn on CUDA, one masked SDPA "
                "elsewhere) | default: the model's own per-window attention | auto: default until the CUDA "
                "correctness test (tests/test_kernels.py) has passed on a GPU", "choices": ["auto", "varlen",
                                                                                               "default"]})
    modalities: str | None = field(default=None, metadata={
        "help": "What an audio model (Qwen2.5-Omni) is shown: audio+video (default) | audio — the face hidden "
                "behind blank frames, as `emoreason eval --modalities audio` | video — no audio. audio is refused "
                "for a model that hears none.", "choices": ["audio+video", "video", "audio"]})
    fps: float = field(default=2.0, metadata={"help": "Frames per second sampled from each video."})
    max_frames: int = field(default=16, metadata={"help": "Most frames per video."})
    min_pixels: int | None = field(default=None, metadata={"help": "Least pixels per frame after resizing."})
    max_pixels: int | None = field(default=None, metadata={"help": "Most pixels per frame after resizing."})
    total_pixels: int | None = field(default=None, metadata={"help": "Most pixels per video (all frames)."})

    def module_learning_rates(self) -> dict[str, float | None]:
        """Per-module rates for ``emoreason.training.optim`` (None: the trainer's learning_rate)."""
        return {"vision": self.vision_learning_rate, "projector": self.projector_learning_rate,
                "audio": self.audio_learning_rate}


@dataclass
class SFTScriptArguments(EmoreasonArguments):
    overlong: str = field(default="drop", metadata={
        "help": "Rows longer than max_length (vision tokens included) are dropped before training and counted "
                "(drop), or refuse the run naming them (error); never truncated.", "choices": ["drop", "error"]})
    tasks: list[str] | None = field(default=None, metadata={
        "help": "synth-cot row tasks to train on (cot, au_perception, emotion); default: all.", "choices": TASKS})
    prototype_rows: bool = field(default=False, metadata={
        "help": "Keep label-only rows that reason from the label's expected cues (nothing observed)."})


@dataclass
class GRPOScriptArguments(EmoreasonArguments):
    """GRPO adds the rewards (by name from ``emoreason.rewards``; weights are TRL's ``reward_weights``)."""

    reward_funcs: list[str] = field(default_factory=lambda: ["format", "emotion", "au_f1", "au_consistency", "length"],
                                    metadata={"help": "Reward functions by name (see emoreason.rewards)."})
    reward_options: dict | str | None = field(default=None, metadata={
        "help": "Options per reward, e.g. {emotion: {va_credit: 0.3}, au_f1: {intensity_aware: true}}."})
    vllm_sync_dir: str | None = field(default=None, metadata={
        "help": "Where the policy weights are written for the vLLM server each step (default "
                "OUTPUT_DIR/vllm-sync); the server must read it at the same path."})

    def __post_init__(self) -> None:
        if isinstance(self.reward_options, str):  # from a command line, like TRL's dict options
            self.reward_options = yaml.safe_load(self.reward_options)
        self.reward_options = dict(self.reward_options or {})
        unknown = set(self.reward_options) - set(self.reward_funcs)
        if unknown:
            raise ValueError(f"reward_options for rewards not in reward_funcs: {', '.join(sorted(unknown))}")


@dataclass
class Recipe:
    """A parsed recipe: emoreason's script args, TRL's trainer config and TRL's model config."""

    script: EmoreasonArguments
    training: Any  # trl.SFTConfig | trl.GRPOConfig
    model: ModelConfig
    path: str | None = None

    @property
    def mode(self) -> str:
        """full | lora | qlora (a quantized base always trains an adapter)."""
        if self.model.load_in_4bit or self.model.load_in_8bit:
            return "qlora"
        return "lora" if self.model.use_peft else "full"

    def resume_from(self) -> str | bool | None:
        """What to pass to ``trainer.train(resume_from_checkpoint=…)``: the recipe's checkpoint path; else (unset,
        or ``true``/``last``) the last *complete* checkpoint in output_dir, as open-r1 resumes a killed run. A
        checkpoint without ``trainer_state.json`` (written last) was cut short by the kill and is skipped:
        resuming from it would restart the step count and train the same steps again."""
        value = self.training.resume_from_checkpoint
        if value is not None and str(value).lower() in ("false", "no", "none", ""):
            return None
        if value is not None and str(value).lower() not in ("true", "last"):
            return value
        last = last_complete_checkpoint(self.training.output_dir)
        return last if last is not None or value is None else True  # True: Trainer names the missing checkpoint

    def to_dict(self) -> dict:
        return {"path": self.path, "mode": self.mode, "script": asdict(self.script), "model": asdict(self.model),
                "training": self.training.to_dict()}


def last_complete_checkpoint(output_dir: str | Path) -> str | None:
    """The highest ``checkpoint-N`` in ``output_dir`` that holds its ``trainer_state.json``; warns about the
    incomplete ones passed over."""
    from transformers.trainer import TRAINER_STATE_NAME
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    out = Path(output_dir)
    if not out.is_dir():
        return None
    steps = sorted((int(p.name.rsplit("-", 1)[1]), p) for p in out.glob(f"{PREFIX_CHECKPOINT_DIR}-*")
                   if p.is_dir() and re.fullmatch(rf"{PREFIX_CHECKPOINT_DIR}-\d+", p.name))
    for _, path in reversed(steps):
        if (path / TRAINER_STATE_NAME).is_file():
            return str(path)
        log.warning("skipping %s: it has no %s (the run was stopped while saving it)", path, TRAINER_STATE_NAME)
    return None


def _kinds() -> dict[str, tuple[type, type]]:
    from trl import GRPOConfig, SFTConfig

    return {"sft": (SFTScriptArguments, SFTConfig), "grpo": (GRPOScriptArguments, GRPOConfig)}


def recipe_keys(kind: str) -> set[str]:
    """Every key a recipe of this kind accepts."""
    from dataclasses import fields

    return {f.name for cls in (*_kinds()[kind], ModelConfig) for f in fields(cls) if f.init}


def load_recipe(kind: str, path: str | Path | None = None, overrides: list[str] | None = None,
                **values: Any) -> Recipe:
    """Parse a recipe of ``kind`` ("sft" | "grpo"): ``values`` (programmatic defaults), then the YAML file, then
    ``key=value`` overrides. Raises ConfigError for unknown keys (naming the closest), bad values, or settings
    the video trainers cannot honour."""
    import torch

    if kind not in _kinds():
        raise ConfigError(f"recipe kind must be sft or grpo, got {kind!r}")
    script_cls, config_cls = _kinds()[kind]
    # Settings the video trainers need, under everything the recipe says: the raw columns reach the collator /
    # rollouts, SFT rows are encoded on the fly (frames), and a machine without CUDA trains on CPU (gloo).
    defaults: dict[str, Any] = {"remove_unused_columns": False}
    if kind == "sft":
        defaults["dataset_kwargs"] = {"skip_prepare_dataset": True}
    if not torch.cuda.is_available():
        defaults["use_cpu"] = True
    script, training, model = parse_dataclasses((script_cls, config_cls, ModelConfig), path, overrides,
                                                {**defaults, **values}, check=check_deepspeed_optimizer)
    recipe = Recipe(script, training, model, str(path) if path is not None else None)
    _check(recipe, kind)
    return recipe


def deepspeed_config(value: str | dict | None) -> tuple[dict, str] | None:
    """The DeepSpeed config a run will use and where it comes from: the recipe's ``deepspeed`` (a file, JSON or a
    mapping), else the file ``accelerate launch`` passes on (its config's ``deepspeed_config_file``), read as
    accelerate reads it (without deepspeed installed). None: no DeepSpeed config file (accelerate's ZeRO settings
    alone define no optimizer)."""
    from accelerate.utils import str_to_bool
    from accelerate.utils.deepspeed import HfDeepSpeedConfig

    if value:
        return HfDeepSpeedConfig(value).config, f"deepspeed={value if isinstance(value, str) else '<mapping>'}"
    if str_to_bool(os.environ.get("ACCELERATE_USE_DEEPSPEED", "false")):
        file = os.environ.get("ACCELERATE_DEEPSPEED_CONFIG_FILE", "none")
        if file != "none":
            return HfDeepSpeedConfig(file).config, f"ACCELERATE_DEEPSPEED_CONFIG_FILE={file}"
    return None


def check_deepspeed_optimizer(values: dict[str, Any], where: str) -> None:
    """Per-module rates live in the param groups of the optimizer the trainer builds and in the schedule the trainer
    builds from each group's rate. A DeepSpeed config with its own ``optimizer`` makes Trainer skip the first and
    DeepSpeed build one at a single rate; one with its own ``scheduler`` makes DeepSpeed's WarmupLR / WarmupDecayLR /
    WarmupCosineLR write one ``warmup_max_lr`` into every group at each step (transformers'
    ``deepspeed_optim_sched``; DeepSpeed's ``_format_param``). Either drops the rates; checked before
    TrainingArguments loads the DeepSpeed config."""
    from emoreason.training.optim import MODULES

    rates = [f"{m}_learning_rate" for m in MODULES if m != "language" and values.get(f"{m}_learning_rate") is not None]
    try:
        found = deepspeed_config(values.get("deepspeed")) if rates else None
    except (OSError, ValueError) as exc:  # a missing or unreadable file: named here rather than by the trainer
        raise ConfigError(f"{where}: the DeepSpeed config cannot be read: {exc}") from exc
    sections = [s for s in ("optimizer", "scheduler") if found is not None and s in found[0]]
    if sections:
        own = " and ".join(f"'{s}'" for s in sections)
        raise ConfigError(f"{where}: {' and '.join(rates)} would not be applied: the DeepSpeed config "
                          f"({found[1]}) defines its own {own}, which DeepSpeed applies to all parameters at "
                          f"one rate. Remove its {own} section{'s' if len(sections) > 1 else ''} (the trainer then "
                          "builds the optimizer and schedule, per-module rates included, from the recipe's "
                          "optim / learning_rate / lr_scheduler_type) or the per-module rates.")


def _check(recipe: Recipe, kind: str) -> None:
    where = recipe.path or f"{kind} recipe"
    missing = [k for k, v in (("model_name_or_path", recipe.model.model_name_or_path),
                              ("dataset_name", recipe.script.dataset_name),
                              ("output_dir", recipe.training.output_dir)) if not v]
    if missing:
        raise ConfigError(f"{where}: set {', '.join(missing)}")
    if recipe.training.remove_unused_columns:
        raise ConfigError(f"{where}: remove_unused_columns must be false (the video collator and rollouts read "
                          "the media and ground-truth columns)")
    if kind == "sft" and not (recipe.training.dataset_kwargs or {}).get("skip_prepare_dataset"):
        raise ConfigError(f"{where}: dataset_kwargs.skip_prepare_dataset must stay true (rows are encoded with "
                          "their frames by the video collator)")
    if kind == "sft" and recipe.training.completion_only_loss is False:
        raise ConfigError(f"{where}: completion_only_loss: false is not supported (the video collator puts the "
                          "loss on the assistant turns only)")
    if recipe.script.dataset_streaming:
        raise ConfigError(f"{where}: dataset_streaming is not supported (rows are checked before training)")
    if (recipe.model.load_in_4bit or recipe.model.load_in_8bit) and not recipe.model.use_peft:
        raise ConfigError(f"{where}: a quantized base (load_in_4bit / load_in_8bit) trains an adapter: set "
                          "use_peft: true")
    if recipe.script.freeze_language and recipe.model.use_peft:
        raise ConfigError(f"{where}: freeze_language trains the vision path's own weights: set use_peft: false")
    if recipe.script.freeze_language and recipe.script.freeze_vision and recipe.script.freeze_projector:
        raise ConfigError(f"{where}: freeze_language with freeze_vision and freeze_projector leaves nothing to train")
    if kind == "grpo":
        from emoreason.rewards import REWARD_NAMES

        unknown = [n for n in recipe.script.reward_funcs if n not in REWARD_NAMES]
        if unknown:
            raise ConfigError(f"{where}: unknown reward_funcs {', '.join(unknown)} (known: "
                              f"{', '.join(REWARD_NAMES)})")
        weights = recipe.training.reward_weights
        if weights is not None and len(weights) != len(recipe.script.reward_funcs):
            raise ConfigError(f"{where}: reward_weights has {len(weights)} values for "
                              f"{len(recipe.script.reward_funcs)} reward_funcs")
