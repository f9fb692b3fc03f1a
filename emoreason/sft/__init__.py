"""Supervised fine-tuning of video-LLMs on the project's conversational data (TRL SFTTrainer + video collator)."""

from emoreason.sft.collator import OverlongSampleError, SampleMediaError, VideoSFTCollator, assistant_labels

__all__ = ["OverlongSampleError", "SampleMediaError", "VideoSFTCollator", "assistant_labels"]
