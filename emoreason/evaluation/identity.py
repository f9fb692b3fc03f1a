"""What a cached prediction depends on, so a cache can refuse to answer for another model, prompt or protocol.

* **Model identity.** A local model: a fingerprint of its weight files — names, sizes and, per file, the bytes
  of the safetensors header (tensor names, dtypes, shapes), the first and last 4 KiB of every tensor, and 64
  evenly spaced 64 KiB blocks (whole files up to 256 MiB), and the config and chat template. Two fine-tunes of
  one architecture have identical headers and sizes, so the sampled bytes are what tells them apart; sampling
  every tensor catches a fine-tune that changed one small module (a projector-only stage changes ~0.5 % of a
  7B shard, which evenly spaced blocks miss more often than not). That reads ~4 MiB per file plus 8 KiB per
  tensor, about 10 MB for a 15 GB checkpoint. A copied directory keeps its fingerprint. An endpoint: its base
  URL, the served model name, the ``root`` (weights path) the server reports and, when that path is a model
  directory readable here, its weights fingerprint (a model retrained into the same directory and served again
  is another model).
* **Prompt.** The hash of the exact chat messages (system prompt, instruction, label set, answer style) for
  video and image samples.
* **Protocol and frame policy**, from the benchmark spec and the backend.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import urllib.error
import urllib.request
from pathlib import Path

from emoreason.evaluation.benchmarks import short_hash

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
_METADATA = ("config.json", "adapter_config.json", "generation_config.json", "chat_template.jinja",
             "chat_template.json", "tokenizer_config.json", "emoreason_frames.json")
_WHOLE_FILE_LIMIT = 256 * 2**20
_BLOCKS, _BLOCK = 64, 64 * 2**10
_TENSOR_SAMPLE = 4 * 2**10


def _file_digest(path: Path) -> str:
    size = path.stat().st_size
    digest = hashlib.sha256(f"{path.name}:{size}".encode())
    with path.open("rb") as handle:
        if size <= _WHOLE_FILE_LIMIT:
            for chunk in iter(lambda: handle.read(2**20), b""):
                digest.update(chunk)
            return digest.hexdigest()
        if path.suffix == ".safetensors":  # 8-byte little-endian header length, then the JSON header
            length = int.from_bytes(handle.read(8), "little")
            header = handle.read(min(length, 100 * 2**20))
            digest.update(header)
            for start, end in _tensor_spans(header):  # each tensor's head and tail (offsets after the header)
                for offset in sorted({start, max(start, end - _TENSOR_SAMPLE)}):
                    handle.seek(8 + length + offset)
                    digest.update(handle.read(min(_TENSOR_SAMPLE, end - offset)))
        for i in range(_BLOCKS):
            handle.seek((size - _BLOCK) * i // (_BLOCKS - 1))
            digest.update(handle.read(_BLOCK))
    return digest.hexdigest()


def _tensor_spans(header: bytes) -> list[tuple[int, int]]:
    """(start, end) data offsets of every tensor in a safetensors header ([] when it is not one)."""
    try:
        entries = json.loads(header)
    except ValueError:
        return []
    spans = []
    for name, info in sorted(entries.items()) if isinstance(entries, dict) else []:
        offsets = info.get("data_offsets") if isinstance(info, dict) and name != "__metadata__" else None
        if isinstance(offsets, list) and len(offsets) == 2 and 0 <= int(offsets[0]) <= int(offsets[1]):
            spans.append((int(offsets[0]), int(offsets[1])))
    return spans


def weights_fingerprint(model_dir: str | Path) -> str:
    """SHA-256 (first 16 hex digits) over the model's weight and metadata files (see the module doc)."""
    root = Path(model_dir)
    files = sorted(p for p in root.iterdir() if p.is_file() and (p.suffix in _WEIGHT_SUFFIXES or p.name in _METADATA))
    if not any(p.suffix in _WEIGHT_SUFFIXES for p in files):
        raise FileNotFoundError(f"no weight files in {root}")
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.name}={_file_digest(path)}\n".encode())
    return digest.hexdigest()[:16]


def local_identity(model_dir: str | Path) -> dict:
    return {"kind": "local", "path": str(model_dir), "weights": weights_fingerprint(model_dir)}


def endpoint_identity(base_url: str, served_model: str | None, api_key: str = "EMPTY",
                      timeout_s: float = 30.0) -> dict:
    """Base URL, served model name (the first the server lists when none is given) and the weights path the
    server reports (vLLM's ``root``); an unreachable server is an error naming the URL."""
    url = base_url.rstrip("/") + "/models"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {api_key}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            models = json.loads(response.read()).get("data") or []
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ConnectionError(f"cannot list the models of {url}: {exc}") from exc
    if not models:
        raise ConnectionError(f"{url} lists no models")
    chosen = next((m for m in models if m.get("id") == served_model), None) if served_model else models[0]
    if chosen is None:
        raise ValueError(f"{url} does not serve {served_model!r}; it serves {[m.get('id') for m in models]}")
    identity = {"kind": "endpoint", "base_url": base_url.rstrip("/"), "served_model": chosen.get("id"),
                "root": chosen.get("root"), "max_model_len": chosen.get("max_model_len")}
    root = Path(str(chosen.get("root") or ""))
    if chosen.get("root") and root.is_dir():  # served from a directory this machine can read: its weights
        with contextlib.suppress(OSError):  # no weight files there, or unreadable: the path alone
            identity["weights"] = weights_fingerprint(root)
    return identity


def describe_model(identity: dict) -> str:
    """One line for reports: ``local:runs/sft/final (weights 1a2b…)`` or ``endpoint:URL model NAME``."""
    if identity.get("kind") == "local":
        return f"local:{identity['path']} (weights {identity['weights']})"
    if identity.get("kind") == "endpoint":
        root = f", weights {identity['root']}" if identity.get("root") else ""
        return f"endpoint:{identity['base_url']} model {identity['served_model']}{root}"
    return json.dumps(identity, sort_keys=True)


def model_key(identity: dict) -> dict:
    """The parts of an identity that decide predictions (a local model's path does not: copies are the same)."""
    return {k: v for k, v in identity.items() if k != "path"}


def prompt_hash(labels: list[str] | None, style: str, focus: str | None = None, task: str = "cot") -> str:
    from emoreason.reasoning import build_messages

    return short_hash([build_messages(None, kind, labels, style, focus=focus, task=task) for kind in ("video", "image")])
