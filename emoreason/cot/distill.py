"""Self-distillation (Facial-R1 stage 3): sample k responses per item from a trained model — local
transformers or an OpenAI-compatible endpoint — for the pipeline to verify and keep."""

from __future__ import annotations

import logging
from dataclasses import replace

from emoreason.reasoning import build_messages, to_openai_messages
from emoreason.records import SampleRecord

log = logging.getLogger(__name__)


def sample_responses(options: dict, records: list[SampleRecord], labels: list[str] | None, style: str,
                     cache: object) -> list[list[str]]:
    """k candidate responses per record (an empty list where generation failed, logged)."""
    k = int(options.get("k", 4))
    temperature = float(options.get("temperature", 1.0))
    max_new_tokens = int(options.get("max_new_tokens", 256))
    if options.get("endpoint"):
        from emoreason.client import EndpointConfig, media_url, run_chat_batch

        endpoint = EndpointConfig(**options["endpoint"])
        batch = []
        for r in records:
            kind = "image" if r.media["type"] == "image" else "video"
            messages = build_messages(None, kind, labels, style)
            batch.append(to_openai_messages(messages, media_url(r.media["path"])))
        results = run_chat_batch(endpoint, batch, n=k, temperature=temperature, max_tokens=max_new_tokens)
        out = []
        for record, result in zip(records, results, strict=True):
            if not result.ok:
                log.warning("self-distillation failed for %s: %s", record.id, result.error)
            out.append(result.choices if result.ok else [])
        return out
    if not options.get("model"):
        raise ValueError("self_distill needs `model` (a local directory) or `endpoint`")
    from emoreason.audio import audio_window_s
    from emoreason.audio.modalities import audio_source, model_modalities, with_modalities
    from emoreason.inference import generate
    from emoreason.models import frame_policy_for, load_model_and_processor
    from emoreason.video import MediaError, load_media

    if getattr(cache, "_distiller", None) is None:
        cache._distiller = load_model_and_processor(options["model"])  # type: ignore[attr-defined]
    model, processor = cache._distiller  # type: ignore[attr-defined]
    policy = replace(frame_policy_for(processor), fps=float(options.get("fps", 2.0)),
                     max_frames=int(options.get("max_frames", 16)))
    modalities = model_modalities(processor, None)  # all the model takes, as evaluation shows it by default
    window = audio_window_s(processor) if modalities != "video" else None
    out = []
    for record in records:
        kind = "image" if record.media["type"] == "image" else "video"
        try:  # evaluation's path: a face-crop folder is heard with its original clip's track (media["audio_path"])
            frames, track = with_modalities(load_media(record.media, policy), modalities, window,
                                            audio_source(record.media))
            audio = [track] if modalities != "video" else None  # None in the list: the encoding hears silence
        except MediaError as exc:
            log.warning("self-distillation skipped %s: %s", record.id, exc)
            out.append([])
            continue
        messages = build_messages(record.media["path"], kind, labels, style)
        out.append(generate(model, processor, [messages] * k, [frames] * k, max_new_tokens=max_new_tokens,
                            do_sample=True, temperature=temperature, seed=int(options.get("seed", 0)),
                            audio=audio * k if audio is not None else None))
    return out
