"""Optional teacher rewrite: an OpenAI-compatible chat model makes a template rationale fluent without
changing its evidence. The verifier then holds the rewrite to the same evidence as the template."""

from __future__ import annotations

from emoreason.client import EndpointConfig, media_url, run_chat_batch
from emoreason.cot.temporal import TemporalAnalysis, Timeline
from emoreason.knowledge import au_name, display_name

TEACHER_SYSTEM = (
    "You rewrite explanations of facial expressions. Keep every Action Unit code (AUn), its intensity letter, "
    "its times (as written, in the same unit) and the final answer exactly as given; add no Action Unit that is "
    "not listed, and call no Action Unit absent unless the draft does; do not name the emotion before the "
    "Conclusion; keep the "
    "format <think>Observations: ... Interpretation: ... Conclusion: ...</think><answer>label</answer>. Make the "
    "language natural and varied. Reply with the rewritten response only."
)


def evidence_summary(analysis: TemporalAnalysis, timeline: Timeline | None = None) -> str:
    if not analysis.tracks:
        return "No Action Unit is active."
    lines = []
    for t in analysis.tracks:
        timing = ""
        if timeline is not None and t.onset is not None:
            timing = f", onset {timeline.say(t.onset)}"
            timing += f", apex {timeline.say(t.apex)}" if t.apex is not None else ""
        letter = f", intensity {t.letter}" if t.letter else ""
        lines.append(f"- AU{t.au} ({au_name(t.au)}){letter}{timing}")
    return "\n".join(lines)


def teacher_messages(draft: str, analysis: TemporalAnalysis, label: str, media_path: str | None = None,
                     media_type: str | None = None, timeline: Timeline | None = None) -> list[dict]:
    text = (f"Evidence (the only AUs you may mention as present):\n{evidence_summary(analysis, timeline)}\n"
            f"Label: {display_name(label)}\n\nDraft response:\n{draft}")
    content: list[dict] = []
    if media_path and media_type in ("video", "image"):
        content.append({"type": f"{media_type}_url", f"{media_type}_url": {"url": media_url(media_path)}})
    content.append({"type": "text", "text": text})
    return [{"role": "system", "content": TEACHER_SYSTEM}, {"role": "user", "content": content}]


def rewrite_batch(config: EndpointConfig, batch: list[list[dict]], temperature: float = 0.7,
                  max_tokens: int = 512) -> list[tuple[str | None, str | None]]:
    """(text, error) per item, in order; one failing item never fails the batch."""
    results = run_chat_batch(config, batch, temperature=temperature, max_tokens=max_tokens)
    return [(r.text, r.error) for r in results]
