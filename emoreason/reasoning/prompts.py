"""The one prompt builder used by SFT, GRPO, evaluation and serving.

Messages follow the Hugging Face chat format (``{"role": ..., "content": [{"type": "video", ...},
{"type": "text", ...}]}``), which transformers' processors, TRL's conversational datasets and (through
``to_openai_messages``) OpenAI-compatible servers all accept.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from emoreason.knowledge import display_name

SYSTEM_PROMPT = (
    "You are an expert in facial expression analysis who reasons with the Facial Action Coding System (FACS)."
)

_MEDIA_NOUN = {"video": "video", "image": "image", "frames": "frames", None: "description"}


TASKS = ("cot", "au_perception", "emotion")
_TIME_WORDS = {"seconds": " (in seconds from the start)",
               "sampled_frames": " (as the number of the frame shown, counting from 1)"}


def build_instruction(media_type: str | None = "video", labels: Sequence[str] | None = None,
                      style: str = "tags", focus: str | None = None, task: str = "cot",
                      time_unit: str = "seconds") -> str:
    """The user instruction: label set in the prompt (``labels``) or open vocabulary (``labels=None``).
    ``focus="centre"``: the clip is a window around one annotated frame (frame-level AU benchmarks) and the AUs
    asked for are those active at its middle frame.

    ``task``: ``cot`` (AU-grounded reasoning, then the answer), ``au_perception`` (which AUs are active, and how
    strongly: the list only) or ``emotion`` (the label only) — the rows of a multi-task curriculum.
    ``time_unit``: how the reasoning gives times (``seconds`` or ``sampled_frames``)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if time_unit not in _TIME_WORDS:
        raise ValueError(f"time_unit must be one of {tuple(_TIME_WORDS)}, got {time_unit!r}")
    noun = _MEDIA_NOUN.get(media_type, "video")
    if task == "au_perception":
        return (f"Look at the face in this {noun}. Which facial Action Units (AUs) are active, and how strongly "
                "(intensity A-E)?\nReply as <answer>AUn (name, intensity), ...</answer>, or <answer>none</answer> "
                "if no AU is active.")
    if task == "emotion":
        choice = ("Choose exactly one from: " + ", ".join(display_name(x) for x in labels) + ".") if labels else \
            "Name it in one or two words."
        return f"Look at the face in this {noun}. Which emotion does it show?\n{choice}\nReply as <answer>emotion</answer>."
    timing = f" when they rise and peak{_TIME_WORDS[time_unit]}," if media_type in ("video", "frames") else ""
    lines = [
        f"Look at the face in this {noun}. Identify the facial Action Units (AUs) that are active, with their "
        f"intensity (A-E),{timing} then explain what the combination means and which emotion it shows.",
    ]
    if focus == "centre":
        lines.append("The clip is centred on one moment: report the AUs active at its middle frame.")
    elif focus is not None:
        raise ValueError(f"unknown prompt focus {focus!r}; known: 'centre'")
    if labels:
        lines.append("Choose exactly one emotion from: " + ", ".join(display_name(x) for x in labels) + ".")
    else:
        lines.append("Name the emotion in one or two words.")
    if style == "json":
        lines.append('Reply as <think>Observations: ... Interpretation: ... Conclusion: ...</think> followed by '
                     '<answer>{"emotion": "...", "aus": [...], "valence": v, "arousal": a}</answer>, with valence '
                     'and arousal between -1 and 1.')
    else:
        lines.append("Reply as <think>Observations: ... Interpretation: ... Conclusion: ...</think> followed by "
                     "<answer>emotion</answer>.")
    return "\n".join(lines)


def build_messages(media: str | Sequence[str] | None = None, media_type: str | None = "video",
                   labels: Sequence[str] | None = None, style: str = "tags",
                   system: str | None = SYSTEM_PROMPT, focus: str | None = None, task: str = "cot",
                   time_unit: str = "seconds") -> list[dict]:
    """Chat messages for one sample. ``media`` is a path/URL (or a list of image paths for ``frames``);
    with ``media=None`` the media part is a placeholder, as TRL datasets store it beside a media column."""
    content: list[dict] = []
    if media_type == "video":
        content.append({"type": "video", **({"video": media} if media is not None else {})})
    elif media_type == "image":
        content.append({"type": "image", **({"image": media} if media is not None else {})})
    elif media_type == "frames":
        content.append({"type": "video", **({"video": list(media)} if media is not None else {})})
    content.append({"type": "text", "text": build_instruction(media_type, labels, style, focus, task, time_unit)})
    messages: list[dict] = []
    if system:
        messages.append({"role": "system", "content": [{"type": "text", "text": system}]})
    messages.append({"role": "user", "content": content})
    return messages


def to_openai_messages(messages: list[dict], media_url: str | None = None) -> list[dict]:
    """HF-style messages → OpenAI chat format (``video_url`` / ``image_url`` parts, as vLLM accepts)."""
    out = []
    for message in messages:
        parts = []
        for part in message["content"] if isinstance(message["content"], list) else [
                {"type": "text", "text": message["content"]}]:
            kind = part.get("type")
            if kind == "text":
                parts.append({"type": "text", "text": part["text"]})
            elif kind in ("video", "image"):
                url = media_url or part.get(kind)
                if not isinstance(url, str):
                    raise ValueError(f"{kind} part needs a URL or path for the OpenAI format, got {url!r}")
                if "://" not in url and not url.startswith("data:"):
                    url = Path(url).resolve().as_uri()
                parts.append({"type": f"{kind}_url", f"{kind}_url": {"url": url}})
        out.append({"role": message["role"], "content": parts})
    return out
