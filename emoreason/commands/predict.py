"""emoreason predict: emotion + AUs for videos, frame folders and images, through a served model (any
OpenAI-compatible endpoint) or locally with transformers; one JSON line per input."""

from __future__ import annotations

import argparse
import json
import sys

from emoreason.commands.exit_codes import EPILOG, ERROR, batch_exit_code


def register(subparsers) -> None:
    p = subparsers.add_parser("predict", help="predict emotion + AUs for videos/images; prints JSON lines",
                              description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="video files, frame folders, images, or URLs")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--endpoint", help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    source.add_argument("--model", help="local model directory (transformers, no server)")
    p.add_argument("--served-model", help="model name on the endpoint (default: the first listed)")
    p.add_argument("--api-key", help="bearer token for the endpoint (default: $OPENAI_API_KEY)")
    p.add_argument("--media-dir", help="the server's media dir: files under it go by path, others inline")
    p.add_argument("--image", action="store_true", help="treat every input as an image (default: by extension)")
    p.add_argument("--labels", nargs="*", help="label set for the prompt (default: open vocabulary)")
    p.add_argument("--response-format", choices=("tags", "json"), default="tags",
                   help="json: the JSON answer variant (with --endpoint enforced by the server's guided decoding; "
                        "locally only asked for in the prompt)")
    p.add_argument("--modalities", choices=("audio+video", "video", "audio"),
                   help="what the model is shown (default: all it takes: audio+video for an audio-visual model such "
                        "as Qwen2.5-Omni, video otherwise); audio: the clip's audio with blank frames. A clip without "
                        "an audio track hears silence of its duration under audio+video, and fails under audio")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--max-tokens", type=int, default=512)
    p.add_argument("--max-inline-mb", type=float, default=None,
                   help="largest file sent inside a request (outside --media-dir, frame folders), MiB "
                        "(default 32)")
    p.set_defaults(func=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    kind = "image" if args.image else None
    if args.endpoint:
        from emoreason.client import DEFAULT_MAX_INLINE_MB, EndpointConfig, predict_many

        config = EndpointConfig(base_url=args.endpoint, model=args.served_model, api_key=args.api_key,
                                concurrency=args.concurrency, timeout_s=args.timeout,
                                max_inline_mb=args.max_inline_mb or DEFAULT_MAX_INLINE_MB)
        from emoreason.evaluation.backends import EndpointSetupError

        try:
            backend = None if args.modalities == "video" else _endpoint_with_audio(args, config)
            if backend is not None:  # as many requests in flight as for video alone
                results = _predict_with(backend, args.inputs, kind, concurrency=args.concurrency)
            else:
                results = [r.to_dict() for r in predict_many(config, args.inputs, kind, args.labels,
                                                              args.response_format, args.media_dir, args.max_tokens)]
        except EndpointSetupError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return ERROR
    else:
        results = _predict_local(args, kind)
    for row in results:
        print(json.dumps(row, ensure_ascii=False))
    failed = sum(r.get("error") is not None for r in results)
    if failed:
        print(f"{failed} of {len(results)} input(s) failed", file=sys.stderr)
    return batch_exit_code(len(results), failed)


def _endpoint_with_audio(args: argparse.Namespace, config):
    """Evaluation's endpoint backend when the served model is to hear the clips (it sends each clip's audio, read
    and windowed as local runs read it, beside the frames local runs show); None for video alone."""
    from dataclasses import asdict

    from emoreason.evaluation.backends import EndpointBackend

    backend = EndpointBackend(asdict(config), {}, args.labels, args.response_format, max_new_tokens=args.max_tokens,
                              batch_size=args.concurrency, media_dir=args.media_dir, modalities=args.modalities)
    return None if backend.modalities == "video" else backend


def _predict_local(args: argparse.Namespace, kind: str | None) -> list[dict]:
    """The same prompt, frame policy and parser as evaluation's local backend, one input at a time."""
    from emoreason.evaluation.backends import LocalBackend

    backend = LocalBackend(args.model, {}, args.labels, args.response_format, batch_size=1,
                           max_new_tokens=args.max_tokens, modalities=args.modalities)
    out = _predict_with(backend, args.inputs, kind)
    print(f"predicted {len(out)} input(s) locally", file=sys.stderr)
    return out


def _predict_with(backend, inputs: list[str], kind: str | None, concurrency: int = 1) -> list[dict]:
    """One structured row per input (in input order), through an evaluation backend. With ``concurrency`` > 1 (an
    endpoint) a pool keeps that many inputs in progress, each decoded and sent on its own as soon as a slot frees
    (so no input waits for a slow one, and no more than ``concurrency`` are decoded ahead of the server); a local
    model runs one at a time. Each row's latency is its own request's where the backend timed it (``latency_s``),
    else its call's."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    from emoreason.client import media_kind, prediction_from_text
    from emoreason.records import SampleRecord

    def one(source: str) -> dict:
        record = SampleRecord(id=str(source), dataset="predict",
                              media={"type": kind or media_kind(source), "path": str(source)})
        start = time.perf_counter()
        [(text, error)] = backend.predict([record])
        elapsed = time.perf_counter() - start
        latency = getattr(backend, "latency_s", {}).get(str(source), elapsed)
        row = prediction_from_text(str(source), text or "", latency).to_dict()
        if error is not None or text is None:
            row.update(text=None, error=error or "no output")
        return row

    if concurrency <= 1:
        return [one(source) for source in inputs]
    backend.modalities, backend.policy  # noqa: B018  (resolved once, not raced by the threads)
    pool = ThreadPoolExecutor(max_workers=concurrency)
    try:
        return list(pool.map(one, inputs))
    finally:  # a setup error stops the inputs not yet started
        pool.shutdown(wait=True, cancel_futures=True)
