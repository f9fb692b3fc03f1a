"""Recipes are TRL's own configs: every recipe file parses into (script args, SFTConfig/GRPOConfig, ModelConfig);
TRL options reach TRL's dataclasses; unknown keys name the closest valid key; the accelerate configs are valid."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from emoreason.config import ConfigError
from emoreason.training import GRPOScriptArguments, SFTScriptArguments, load_recipe
from emoreason.training.recipe import check_deepspeed_optimizer, recipe_keys

ROOT = Path(__file__).resolve().parents[1]
# TRL recipes (sft/, grpo/); the vision warm-up's configs (warmup/) are emoreason's own dataclass, tested below
RECIPES = sorted(p for p in (ROOT / "recipes").glob("*/*/*.yaml") if p.parent.name != "warmup")
WARMUP_CONFIGS = sorted((ROOT / "recipes").glob("*/warmup/*.yaml"))


def _base(tmp_path, **extra) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"model_name_or_path": "m", "dataset_name": "d", "output_dir": str(tmp_path / "o"),
                                    **extra}))
    return path


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(ROOT / "recipes")))
def test_every_recipe_file_loads_through_trls_parser(path):
    from trl import GRPOConfig, ModelConfig, SFTConfig

    kind = path.parent.name
    assert kind in ("sft", "grpo"), path
    written = yaml.safe_load(path.read_text())
    recipe = load_recipe(kind, path)
    assert isinstance(recipe.training, SFTConfig if kind == "sft" else GRPOConfig)
    assert isinstance(recipe.model, ModelConfig)
    assert isinstance(recipe.script, SFTScriptArguments if kind == "sft" else GRPOScriptArguments)
    # every key of the file landed in the dataclass that owns it, with its value
    for key, value in written.items():
        owner = next(o for o in (recipe.script, recipe.training, recipe.model) if key in o.__dataclass_fields__)
        got = getattr(owner, key)
        if key == "report_to":  # TrainingArguments normalises it to a list
            value = [] if value == "none" else [value]
        assert got == value or (isinstance(value, float | int) and float(got) == float(value)), (key, got, value)
    assert recipe.mode == ("lora" if written.get("use_peft") else "full")
    assert not recipe.training.remove_unused_columns


@pytest.mark.parametrize("path", WARMUP_CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "recipes")))
def test_every_vision_warmup_config_loads_with_every_key_landed(path):
    from emoreason.config import load_config
    from emoreason.training.vision_warmup import VisionWarmupConfig

    written = yaml.safe_load(path.read_text())
    cfg = load_config(VisionWarmupConfig, path)
    for key, value in written.items():
        assert getattr(cfg, key) == value, (key, getattr(cfg, key), value)


def test_unknown_key_names_the_closest_valid_key(tmp_path):
    path = _base(tmp_path, learning_rat=1e-4)
    with pytest.raises(ConfigError, match=r"unknown config keys for .*'learning_rat' \(did you mean "
                                          r"'learning_rate'\?\)") as err:
        load_recipe("sft", path)
    assert str(path) in str(err.value)
    with pytest.raises(ConfigError, match="did you mean 'lora_alpha'"):
        load_recipe("sft", _base(tmp_path), ["lora_alpah=8"])
    with pytest.raises(ConfigError, match="did you mean 'reward_funcs'"):
        load_recipe("grpo", _base(tmp_path), ["reward_func=[format]"])
    with pytest.raises(ConfigError, match="reward_funcs"):  # a GRPO key is unknown to SFT
        load_recipe("sft", _base(tmp_path), ["reward_funcs=[format]"])
    with pytest.raises(ConfigError, match="did you mean 'bfloat16'"):
        load_recipe("sft", _base(tmp_path), ["dtype=bfloat"])
    with pytest.raises(ConfigError, match="learning_rate"):
        load_recipe("sft", _base(tmp_path), ["learning_rate=fast"])


def test_cli_reports_an_unknown_key(tmp_path, capfd):
    from emoreason.cli import main

    assert main(["sft", "--config", str(_base(tmp_path)), "num_train_epoch=2"]) == 1
    assert "did you mean 'num_train_epochs'" in capfd.readouterr().err


def test_values_are_converted_as_trls_cli_converts_them(tmp_path):
    path = _base(tmp_path, learning_rate="5e-5", lr_scheduler_kwargs={"min_lr": 1e-6},
                 env={"EMOREASON_RECIPE_TEST": "on"})
    recipe = load_recipe("grpo", path, [
        "beta=0", "use_vllm=true", "num_generations=4", "reward_funcs=[format,emotion]", "reward_weights=[1,0.5]",
        "reward_options.emotion.va_credit=0.3", "multi_objective_aggregation=normalize_then_sum",
        "use_peft=true", "load_in_4bit=true", "lora_target_modules=[q_proj,v_proj]", "steps_per_generation=2"])
    training, model, script = recipe.training, recipe.model, recipe.script
    assert training.learning_rate == 5e-5 and isinstance(training.beta, float) and training.beta == 0.0
    assert training.use_vllm is True and training.num_generations == 4 and training.steps_per_generation == 2
    assert training.reward_weights == [1.0, 0.5] and training.multi_objective_aggregation == "normalize_then_sum"
    assert training.lr_scheduler_kwargs == {"min_lr": 1e-6}
    assert script.reward_funcs == ["format", "emotion"] and script.reward_options == {"emotion": {"va_credit": 0.3}}
    assert model.lora_target_modules == ["q_proj", "v_proj"] and recipe.mode == "qlora"
    import os

    assert os.environ.pop("EMOREASON_RECIPE_TEST") == "on"


def test_settings_the_trainers_cannot_honour_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="set dataset_name"):
        load_recipe("sft", None, None, model_name_or_path="m", output_dir="o")
    with pytest.raises(ConfigError, match="remove_unused_columns"):
        load_recipe("sft", _base(tmp_path), ["remove_unused_columns=true"])
    with pytest.raises(ConfigError, match="use_peft"):
        load_recipe("sft", _base(tmp_path), ["load_in_4bit=true"])
    with pytest.raises(ConfigError, match="unknown reward_funcs"):
        load_recipe("grpo", _base(tmp_path), ["reward_funcs=[format,telepathy]"])
    with pytest.raises(ConfigError, match="reward_weights has 1 values"):
        load_recipe("grpo", _base(tmp_path), ["reward_funcs=[format,emotion]", "reward_weights=[1]"])


def test_lora_targets_default_to_the_language_model(tmp_path):
    from emoreason.training import LM_LORA_TARGETS
    from emoreason.training.loading import peft_config_for

    assert peft_config_for(load_recipe("sft", _base(tmp_path))) is None
    assert peft_config_for(load_recipe("sft", _base(tmp_path), ["use_peft=true"])).target_modules == LM_LORA_TARGETS
    chosen = peft_config_for(load_recipe("sft", _base(tmp_path), ["use_peft=true", "lora_target_modules=[q_proj,o_proj]",
                                                                  "use_rslora=true", "lora_r=4"]))
    assert set(chosen.target_modules) == {"q_proj", "o_proj"} and chosen.use_rslora and chosen.r == 4


def test_recipe_keys_cover_trl_and_emoreason():
    keys = recipe_keys("grpo")
    assert {"learning_rate", "num_generations", "multi_objective_aggregation", "lora_r", "load_in_4bit", "fps",
            "reward_funcs", "dataset_name", "vllm_sync_dir"} <= keys
    assert "overlong" in recipe_keys("sft") and "overlong" not in keys


@pytest.mark.parametrize("path", sorted((ROOT / "recipes" / "accelerate_configs").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_accelerate_configs_are_valid_for_accelerate(path, monkeypatch):
    """Each launch config goes through `accelerate launch`'s own validation and environment; FSDP is version 2
    and its plugin builds from that environment; ZeRO-3 gathers 16-bit weights for the final save."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    args, defaults, _ = _validate_launch_command(launch_command_parser().parse_args(
        ["--config_file", str(path), "train.py"]))
    assert args.num_processes >= 2
    if args.use_fsdp:
        env = prepare_multi_gpu_env(args)
        assert env["FSDP_VERSION"] == "2" and env["FSDP_STATE_DICT_TYPE"] == "SHARDED_STATE_DICT"
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        from accelerate.utils import FullyShardedDataParallelPlugin

        plugin = FullyShardedDataParallelPlugin()
        assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
    elif args.use_deepspeed:
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
        _, env = prepare_deepspeed_cmd_env(args)
        assert env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] in ("2", "3")
        if env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == "3":
            assert env["ACCELERATE_DEEPSPEED_ZERO3_SAVE_16BIT_MODEL"] == "true"
    else:
        assert args.multi_gpu


def test_a_single_value_for_a_list_option_is_a_one_item_list_as_on_trls_cli(tmp_path):
    """`--tasks cot` on TRL's CLI gives ["cot"]; `tasks=cot` used to stay the string "cot", which the row
    selection read as the tasks "c", "o", "t" (and `reward_funcs=format` as six unknown rewards)."""
    sft = load_recipe("sft", _base(tmp_path), ["tasks=cot", "report_to=none"])
    assert sft.script.tasks == ["cot"]
    grpo = load_recipe("grpo", _base(tmp_path), ["reward_funcs=format", "reward_weights=2"])
    assert grpo.script.reward_funcs == ["format"] and grpo.training.reward_weights == [2.0]
    # ModelConfig collapses a one-item list as it does for TRL's CLI (`all-linear` reaches peft as the string)
    assert load_recipe("sft", _base(tmp_path), ["use_peft=true", "lora_target_modules=all-linear"]
                       ).model.lora_target_modules == "all-linear"


def test_unknown_sft_tasks_are_refused_naming_the_known_ones(tmp_path):
    """A misspelt task used to leave its rows out of training with only an info log line."""
    from emoreason.reasoning.prompts import TASKS

    with pytest.raises(ConfigError, match=r"tasks='emotoin' is not one of .*\(did you mean 'emotion'\?\)"):
        load_recipe("sft", _base(tmp_path), ["tasks=[cot,emotoin]"])
    assert load_recipe("sft", _base(tmp_path), [f"tasks=[{','.join(TASKS)}]"]).script.tasks == list(TASKS)


def test_sft_loss_options_the_video_collator_cannot_honour_are_refused(tmp_path):
    """The video collator labels the assistant turns only: `completion_only_loss: false` (TRL: loss on the prompt
    too) used to be ignored without a word."""
    with pytest.raises(ConfigError, match="completion_only_loss"):
        load_recipe("sft", _base(tmp_path), ["completion_only_loss=false"])
    for value in ("true", "null"):  # what the collator does anyway
        load_recipe("sft", _base(tmp_path), [f"completion_only_loss={value}"])


def test_per_module_rates_with_a_deepspeed_optimizer_are_refused(tmp_path, monkeypatch):
    """A DeepSpeed config with its own `optimizer` makes Trainer hand DeepSpeed all parameters at one rate, so
    vision_learning_rate / projector_learning_rate were dropped without a word. The recipe is refused before
    TrainingArguments reads the DeepSpeed config (deepspeed need not be installed), from each place a config comes
    from: the recipe's `deepspeed` (a file or a mapping) and `accelerate launch`'s deepspeed_config_file."""
    with_optimizer = {"optimizer": {"type": "AdamW", "params": {"lr": "auto"}}, "zero_optimization": {"stage": 2}}
    ds_file = tmp_path / "ds.json"
    ds_file.write_text(json.dumps(with_optimizer))
    with pytest.raises(ConfigError, match=rf"vision_learning_rate.*not be applied.*{ds_file.name}.*own 'optimizer'"):
        load_recipe("sft", _base(tmp_path, deepspeed=str(ds_file), vision_learning_rate=1e-3))
    with pytest.raises(ConfigError, match=r"projector_learning_rate.*would not be applied"):
        load_recipe("grpo", _base(tmp_path, deepspeed=with_optimizer), ["projector_learning_rate=1e-3"])
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_CONFIG_FILE", str(ds_file))
    with pytest.raises(ConfigError, match=r"would not be applied.*ACCELERATE_DEEPSPEED_CONFIG_FILE"):
        load_recipe("sft", _base(tmp_path), ["vision_learning_rate=1e-3"])
    with pytest.raises(ConfigError, match="DeepSpeed config cannot be read"):
        check_deepspeed_optimizer({"deepspeed": str(tmp_path / "missing.json"), "vision_learning_rate": 1e-3}, "r")
    # the trainer builds the optimizer (and the per-module groups) when DeepSpeed's config has none; no rates, no clash
    check_deepspeed_optimizer({"deepspeed": {"zero_optimization": {"stage": 3}}, "vision_learning_rate": 1e-3}, "r")
    check_deepspeed_optimizer({"deepspeed": with_optimizer, "vision_learning_rate": None}, "r")
    # a DeepSpeed scheduler (HF's ds-config templates ship WarmupLR with "auto") writes one rate into every group
    with_scheduler = {"scheduler": {"type": "WarmupLR", "params": {"warmup_max_lr": "auto"}},
                      "zero_optimization": {"stage": 2}}
    with pytest.raises(ConfigError, match=r"audio_learning_rate would not be applied.*own 'scheduler'"):
        check_deepspeed_optimizer({"deepspeed": with_scheduler, "audio_learning_rate": 1e-3}, "r")
    with pytest.raises(ConfigError, match=r"own 'optimizer' and 'scheduler'.*sections"):
        check_deepspeed_optimizer({"deepspeed": {**with_optimizer, **with_scheduler}, "vision_learning_rate": 1e-3},
                                  "r")
