"""Optional teacher rewrite: an OpenAI-compatible chat model makes a template rationale fluent without
changing its evidence. The verifier then holds the rewrite to the same evidence as the template."""

from __future__ import annotations

from emoreason.client import EndpointConfig, media_url, run_chat_batch
from emoreason.cot.temporal import TemporalAnalysis
from emoreason.knowledge import au_name, display_name

TEACHER_SYSTEM = (
    "You rewrite explanations of facial expressions. Keep every Action Unit code (AUn), its intensity letter, "
    "its frame numbers and the final answer exactly as given; add no Action Unit that is not listed; keep the "
    "format <think>Observations: ... Interpretation: ... Conclusion: ...</think><answer>label</answer>. Make the "
    "language natural and varied. Reply with the rewritten response only."
)


def evidence_summary(analysis: TemporalAnalysis) -> str:
    if not analysis.tracks:
        return "No Action Unit is active."
    lines = []
    for t in analysis.tracks:
        timing = f", onset frame {t.onset}, apex frame {t.apex}" if t.onset is not None else ""
        lines.append(f"- AU{t.au} ({au_name(t.au)}), intensity {t.letter}{timing}")
    return "\n".join(lines)


def teacher_messages(draft: str, analysis: TemporalAnalysis, label: str, media_path: str | None = None,
                     media_type: str | None = None) -> list[dict]:
    text = (f"Evidence (the only AUs you may mention as present):\n{evidence_summary(analysis)}\n"
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
