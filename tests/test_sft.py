"""SFT: the video collator's labels and guards, LoRA/QLoRA/full steps, resume, and 2-process training."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from recipe_support import ROOT, recipe_yaml, tiny_recipe

from emoreason.cot.pipeline import CoTConfig, CoTPipeline
from emoreason.models import frame_policy_for
from emoreason.sft import OverlongSampleError, SampleMediaError, VideoSFTCollator
from emoreason.sft.collator import IGNORE_INDEX
from emoreason.sft.train import build_trainer, run_sft
from emoreason.synth import SynthConfig, build_dataset
from emoreason.training import load_dataset_split


@pytest.fixture(scope="module")
def cot_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("sftdata")
    build_dataset(SynthConfig(out=str(root / "synth"), clips=24, frames=8, size=112, difficulty="easy",
                              identities=6), workers=1, progress=False)
    out = CoTPipeline(CoTConfig(dataset_root=str(root / "synth"), output_dir=str(root / "cot")),
                      progress=False).run()
    return out / "hf"


def _processor(tiny_model_dirs, family="qwen2_5_vl"):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_model_dirs[family])


def _policy(processor):
    from dataclasses import replace

    return replace(frame_policy_for(processor), fps=4.0, max_frames=4, min_pixels=3136, max_pixels=12544)


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_labels_cover_exactly_the_assistant_turn(family, tiny_model_dirs, cot_dataset):
    processor = _processor(tiny_model_dirs, family)
    rows = load_dataset_split(str(cot_dataset), "train", 2)
    batch = VideoSFTCollator(processor, _policy(processor))([rows[0], rows[1]])
    assert "pixel_values_videos" in batch and batch["video_grid_thw"].shape[0] == 2
    tok = processor.tokenizer
    for i, row in enumerate([rows[0], rows[1]]):
        ids, labels = batch["input_ids"][i], batch["labels"][i]
        kept = ids[labels != IGNORE_INDEX]
        expected = row["completion"][0]["content"][0]["text"] + "<|im_end|>"
        assert tok.decode(kept) == expected
        video_id = tok.convert_tokens_to_ids("<|video_pad|>")
        assert (labels[ids == video_id] == IGNORE_INDEX).all()
        assert (ids == video_id).sum() == int(batch["video_grid_thw"][i].prod()) // 4


def test_collator_refuses_an_overlong_batch_instead_of_cutting_it(tiny_model_dirs, cot_dataset):
    processor = _processor(tiny_model_dirs)
    rows = load_dataset_split(str(cot_dataset), "train", 3)
    collator = VideoSFTCollator(processor, _policy(processor))
    lengths = collator([rows[i] for i in range(3)])["attention_mask"].sum(1)
    assert [collator.row_length(rows[i]) for i in range(3)] == lengths.tolist()  # what the pre-training check sees
    longest = int(lengths.argmax())
    with pytest.raises(OverlongSampleError, match=rows[longest]["id"]):
        VideoSFTCollator(processor, _policy(processor), max_length=int(lengths.max()) - 1)([rows[i] for i in range(3)])


def _lengths(tiny_model_dirs, cot_dataset, n):
    processor = _processor(tiny_model_dirs)
    collator = VideoSFTCollator(processor, _policy(processor))
    rows = load_dataset_split(str(cot_dataset), "train", n)
    return rows, [int(collator.row_length(rows[i])) for i in range(n)]  # plain ints: they go into YAML recipes


def test_overlong_rows_are_removed_before_training_and_counted(tmp_path, tiny_model_dirs, cot_dataset):
    """Batch size 1 (the 7B/8B recipes): an overlong row used to be a whole overlong batch, which raised."""
    rows, lengths = _lengths(tiny_model_dirs, cot_dataset, 6)
    limit = sorted(lengths)[-3]  # the two longest rows (or more, on ties) are over it
    over = sorted(rows[i]["id"] for i, n in enumerate(lengths) if n > limit)
    recipe = _recipe(tmp_path, tiny_model_dirs["qwen2_5_vl"], cot_dataset, max_train_samples=6, max_length=limit,
                     per_device_train_batch_size=1, max_steps=-1, num_train_epochs=1)
    final = run_sft(recipe)
    summary = json.loads((tmp_path / "out" / "train_summary.json").read_text())
    data = summary["data"]["train"]
    assert data["rows"] == 6 and data["kept"] == 6 - len(over) and data["dropped"] == {"overlong": len(over)}
    assert sorted(data["dropped_ids"]["overlong"]) == over
    assert summary["global_step"] == 6 - len(over)  # every kept row trained, one per step; none was cut
    assert (final / "config.json").is_file()
    with pytest.raises(OverlongSampleError, match=over[0]):
        build_trainer(_recipe(tmp_path / "strict", tiny_model_dirs["qwen2_5_vl"], cot_dataset, max_train_samples=6,
                              max_length=limit, overlong="error"))


def test_rows_with_unreadable_media_are_removed_and_named(tmp_path, tiny_model_dirs, cot_dataset):
    rows = [dict(r) for r in load_dataset_split(str(cot_dataset), "train", 4)]
    rows[1]["video"] = str(tmp_path / "missing.mp4")
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    rows[2]["video"] = str(tmp_path / "broken.mp4")
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    trainer, _ = build_trainer(_recipe(tmp_path, tiny_model_dirs["qwen2_5_vl"], data))
    check = trainer.row_checks["train"].summary()
    assert check["kept"] == 2 and sorted(check["dropped_ids"]["media_error"]) == sorted([rows[1]["id"], rows[2]["id"]])
    assert len(trainer.train_dataset) == 2


def test_missing_video_names_the_sample(tiny_model_dirs, cot_dataset):
    processor = _processor(tiny_model_dirs)
    row = dict(load_dataset_split(str(cot_dataset), "train", 1)[0])
    row["video"] = "/nonexistent/clip.mp4"
    with pytest.raises(SampleMediaError, match=row["id"]) as err:
        VideoSFTCollator(processor, _policy(processor))([row])
    assert "/nonexistent/clip.mp4" in str(err.value)


def test_mixed_video_image_and_text_rows(tiny_model_dirs, cot_dataset, demo_image):
    processor = _processor(tiny_model_dirs)
    video_row = dict(load_dataset_split(str(cot_dataset), "train", 1)[0])
    image_row = dict(video_row, media_type="image", video=None, image=str(demo_image),
                     prompt=[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Emotion?"}]}])
    text_row = dict(video_row, media_type=None, video=None,
                    prompt=[{"role": "user", "content": [{"type": "text", "text": "Define AU12."}]}])
    batch = VideoSFTCollator(processor, _policy(processor))([video_row, image_row, text_row])
    assert batch["input_ids"].shape[0] == 3
    assert "pixel_values" in batch and "pixel_values_videos" in batch
    assert (batch["labels"] != IGNORE_INDEX).sum(1).min() > 10


def _recipe(tmp_path, tiny_dir, data, **kw):
    fields = {"per_device_train_batch_size": 2, "max_steps": 2, "learning_rate": 1e-3, **kw}
    return tiny_recipe("sft", tiny_dir, data, tmp_path / "out", **fields)


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_training_modes_take_a_step(mode, tmp_path, tiny_model_dirs, cot_dataset):
    recipe = _recipe(tmp_path, tiny_model_dirs["qwen2_5_vl"], cot_dataset, use_peft=mode == "lora", freeze_vision=True)
    trainer, _ = build_trainer(recipe)
    vision_before = next(trainer.model.get_base_model().model.visual.parameters()).clone() if mode == "lora" else \
        next(trainer.model.model.visual.parameters()).clone()
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    if mode == "lora":
        assert trainable and all("lora_" in n and "language_model" in n for n in trainable)
    else:
        assert not any(".visual." in n and "merger" not in n for n in trainable)
    trainer.train()
    assert trainer.state.global_step == 2
    vision_after = next((trainer.model.get_base_model() if mode == "lora" else trainer.model).model.visual
                        .parameters())
    assert torch.equal(vision_before, vision_after)  # frozen vision tower did not move


def test_qlora_step_where_bitsandbytes_supports_cpu(tmp_path, tiny_model_dirs, cot_dataset):
    try:
        import bitsandbytes as bnb

        q = bnb.nn.Linear4bit(64, 64, bias=False, quant_type="nf4", compute_dtype=torch.float32)
        q.weight = bnb.nn.Params4bit(torch.randn(64, 64), requires_grad=False, quant_type="nf4")
        q.to("cpu")(torch.randn(2, 64))  # .to() quantises
    except Exception as exc:  # pragma: no cover - depends on the installed bitsandbytes build
        pytest.skip(f"bitsandbytes 4-bit does not run on this CPU build: {type(exc).__name__}: {exc}")
    recipe = _recipe(tmp_path, tiny_model_dirs["qwen2_5_vl"], cot_dataset, use_peft=True, load_in_4bit=True,
                     max_steps=1)
    assert recipe.mode == "qlora"
    final = run_sft(recipe)  # saved through trainer.save_model (every rank calls it): the adapter on its 4-bit base
    assert (final / "adapter_config.json").is_file() and (final / "adapter_model.safetensors").is_file()
    assert json.loads((tmp_path / "out" / "train_summary.json").read_text())["global_step"] == 1


def test_resume_continues_from_the_saved_step(tmp_path, tiny_model_dirs, cot_dataset):
    first = _recipe(tmp_path, tiny_model_dirs["qwen2_5_vl"], cot_dataset, max_steps=4, save_steps=2)
    run_sft(first)
    checkpoints = sorted((tmp_path / "out").glob("checkpoint-*"))
    assert [c.name for c in checkpoints][-1] == "checkpoint-4"
    # as if killed while writing step 4's checkpoint: Trainer writes trainer_state.json last
    for name in ("trainer_state.json", "optimizer.pt", "scheduler.pt", "rng_state.pth"):
        (checkpoints[-1] / name).unlink(missing_ok=True)
    resumed = _recipe(tmp_path, tiny_model_dirs["qwen2_5_vl"], cot_dataset, max_steps=4, save_steps=2)
    # a killed run resumes from its last *complete* checkpoint (transformers' get_last_checkpoint would pick the
    # half-written one, whose missing state restarts the step count: steps 1-4 again)
    assert resumed.resume_from() == str(checkpoints[0])
    assert _recipe(tmp_path, tiny_model_dirs["qwen2_5_vl"], cot_dataset, max_steps=4, save_steps=2,
                   resume_from_checkpoint="true").resume_from() == str(checkpoints[0])
    trainer, _ = build_trainer(resumed)
    from transformers import TrainerCallback

    steps_run: list[int] = []

    class Record(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            steps_run.append(state.global_step)

    trainer.add_callback(Record())
    trainer.train(resume_from_checkpoint=resumed.resume_from())
    assert trainer.state.global_step == 4 and steps_run == [3, 4]


@pytest.mark.slow  # two processes: about 1.5 min on 2 cores; CI runs it in `make test-slow`
def test_two_process_accelerate_training_keeps_ranks_identical(tmp_path, tiny_model_dirs, cot_dataset):
    """2 processes (gloo): ranks stay identical, and the row check is split over both ranks and their dataloader
    workers yet counts the whole dataset — the same rows removed on every rank."""
    rows, lengths = _lengths(tiny_model_dirs, cot_dataset, 10)
    limit = sorted(lengths)[-3]
    over = sorted(rows[i]["id"] for i, n in enumerate(lengths) if n > limit)
    recipe = recipe_yaml(tmp_path / "r.yaml", {
        "model_name_or_path": str(tiny_model_dirs["qwen2_5_vl"]), "dataset_name": str(cot_dataset),
        "output_dir": str(tmp_path / "ddp"), "max_steps": 3, "per_device_train_batch_size": 2,
        "learning_rate": 0.001, "max_train_samples": 10, "max_length": limit, "dataloader_num_workers": 2})
    out = tmp_path / "ranks"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                    str(ROOT / "recipes/accelerate_configs/cpu2.yaml"), str(ROOT / "tests/helpers/ddp_sft_check.py"),
                    str(recipe), str(out)], check=True, env=env, timeout=600, capture_output=True)
    ranks = [json.loads((out / f"rank{i}.json").read_text()) for i in range(2)]
    assert all(r["world"] == 2 and r["steps"] == 3 for r in ranks)
    assert ranks[0]["after"] == ranks[1]["after"]
    assert ranks[0]["before"] == ranks[1]["before"] != ranks[0]["after"]
    assert ranks[0]["data"] == ranks[1]["data"]
    data = ranks[0]["data"]
    assert data["rows"] == 10 and data["kept"] == 10 - len(over) and sorted(data["dropped_ids"]["overlong"]) == over
    assert [r["measured_here"] for r in ranks] == [5, 5] and all(r["workers_here"] == 2 for r in ranks)


def test_final_model_carries_its_frame_policy(tmp_path, tiny_model_dirs, cot_dataset):
    from emoreason.evaluation.backends import LocalBackend
    from emoreason.models import saved_frame_policy

    final = run_sft(_recipe(tmp_path, tiny_model_dirs["qwen2_5_vl"], cot_dataset, max_steps=1))
    saved = saved_frame_policy(final)
    assert saved["fps"] == 4.0 and saved["max_frames"] == 4 and saved["max_pixels"] == 12544
    backend = LocalBackend(str(final), {}, None, "tags", batch_size=1, max_new_tokens=4)
    assert (backend.policy.fps, backend.policy.max_frames, backend.policy.max_pixels) == (4.0, 4, 12544)


