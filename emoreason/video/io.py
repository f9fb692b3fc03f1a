"""Video/image decoding, frame sampling and writing.

Sampling and resizing follow qwen-vl-utils (``smart_nframes`` / ``smart_resize``): frames at a target fps
(or an explicit count), clamped to [min_frames, max_frames], rounded to an even count (the temporal patch is
2); each frame resized to a multiple of the vision factor within [min_pixels, max_pixels] and within a total
pixel budget for the clip.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

DEFAULT_FRAME_FOLDER_FPS = 25.0  # frame folders whose dataset states no rate (adapters pass the paper's rate)
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".flv", ".mpg", ".mpeg", ".wmv")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class MediaError(Exception):
    """A media source that cannot be turned into frames; ``path`` names it."""

    def __init__(self, path: str | Path, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


class MissingMediaError(MediaError, FileNotFoundError):
    pass


class CorruptMediaError(MediaError):
    pass


class EmptyMediaError(MediaError):
    pass


@dataclass(frozen=True)
class FramePolicy:
    """How frames are sampled and sized (defaults: qwen-vl-utils' video defaults)."""

    fps: float | None = 2.0
    nframes: int | None = None  # overrides fps when set
    min_frames: int = 4
    max_frames: int = 768
    frame_factor: int = 2  # frame count is a multiple of the temporal patch size
    factor: int = 28  # patch_size * merge_size of the vision tower (28 for Qwen2.5-VL, 32 for Qwen3-VL)
    min_pixels: int = 128 * 28 * 28
    max_pixels: int = 768 * 28 * 28
    total_pixels: int | None = None  # budget over all frames of a clip

    def updated(self, values: dict) -> FramePolicy:
        """This policy with the fields a mapping names (a saved policy, a benchmark's ``frames``, a recipe);
        keys that are not policy fields (e.g. ``modalities``) are ignored."""
        return replace(self, **{k: v for k, v in values.items() if k in self.__dataclass_fields__})

    def frame_bounds(self) -> tuple[int, int]:
        """(fewest, most) frames ``num_frames`` takes from a clip long enough: ``max_frames`` caps ``min_frames``
        (qwen-vl-utils' rule), both rounded to ``frame_factor`` — what a report should print as the policy."""
        most = max(_floor_by(self.max_frames, self.frame_factor), self.frame_factor)
        return max(min(_ceil_by(self.min_frames, self.frame_factor), most), self.frame_factor), most

    def num_frames(self, total: int, video_fps: float) -> int:
        """qwen-vl-utils ``smart_nframes``: how many frames to take from a clip of ``total`` frames."""
        if total <= 0:
            return 0
        if self.nframes is not None:
            n = _round_by(self.nframes, self.frame_factor)
        else:
            lo = _ceil_by(self.min_frames, self.frame_factor)
            hi = _floor_by(min(self.max_frames, total), self.frame_factor)
            n = total / max(video_fps, 1e-6) * (self.fps or video_fps)
            # qwen-vl-utils: min(max(n, min_frames), max_frames, total), so max_frames caps even below min_frames,
            # and a clip shorter than min_frames gives all it has
            n = _floor_by(min(max(n, lo), hi), self.frame_factor)
        n = max(n, self.frame_factor)
        return int(n)


@dataclass
class LoadedFrames:
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    timestamps: list[float]  # seconds of each sampled frame
    indices: list[int]  # source frame indices
    source_fps: float
    total_frames: int
    path: str
    backend: str
    kind: str = "video"  # video | frames | image
    meta: dict = field(default_factory=dict)

    @property
    def sampled_fps(self) -> float:
        if len(self.timestamps) < 2:
            return self.source_fps
        span = self.timestamps[-1] - self.timestamps[0]
        return (len(self.timestamps) - 1) / span if span > 0 else self.source_fps

    def video_metadata(self) -> dict:
        """What transformers' video processors want beside pre-sampled frames."""
        return {"total_num_frames": self.total_frames, "fps": self.source_fps, "frames_indices": self.indices,
                "width": int(self.frames.shape[2]), "height": int(self.frames.shape[1]),
                "duration": self.total_frames / self.source_fps if self.source_fps else None}


def _round_by(x: float, f: int) -> int:
    return max(f, int(round(x / f)) * f)


def _ceil_by(x: float, f: int) -> int:
    return int(math.ceil(x / f)) * f


def _floor_by(x: float, f: int) -> int:
    return int(math.floor(x / f)) * f


def smart_resize(height: int, width: int, factor: int = 28, min_pixels: int = 56 * 56,
                 max_pixels: int = 14 * 14 * 4 * 1280) -> tuple[int, int]:
    """qwen-vl-utils ``smart_resize``: dimensions divisible by ``factor``, pixels within bounds, aspect kept."""
    if height <= 0 or width <= 0:
        raise ValueError(f"invalid frame size {height}x{width}")
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio must be below 200, got {max(height, width) / min(height, width):.1f}")
    h = max(factor, _round_by(height, factor))
    w = max(factor, _round_by(width, factor))
    if h * w > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h = max(factor, _floor_by(height / beta, factor))
        w = max(factor, _floor_by(width / beta, factor))
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = _ceil_by(height * beta, factor)
        w = _ceil_by(width * beta, factor)
    return h, w


def _resize_frames(frames: np.ndarray, policy: FramePolicy) -> np.ndarray:
    n, height, width = frames.shape[:3]
    max_pixels = policy.max_pixels
    if policy.total_pixels:
        # qwen-vl-utils: share the clip budget over frames (temporal patches of 2), never below min_pixels
        per_frame = policy.total_pixels / max(1, n) * policy.frame_factor
        max_pixels = max(min(max_pixels, per_frame), int(policy.min_pixels * 1.05))
    h, w = smart_resize(height, width, policy.factor, policy.min_pixels, max_pixels)
    if (h, w) == (height, width):
        return frames
    return np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BICUBIC)) for f in frames])


def natural_key(name: str | Path) -> list:
    """Sort key that orders numbered files as people do: 2.jpg before 10.jpg (plain sorting gives 1, 10, 2)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", Path(name).name)]


def frame_files(folder: str | Path) -> list[Path]:
    """The image files of a frame folder in natural order."""
    return sorted((p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS), key=natural_key)


def load_frames(media: str | Path | Sequence[str | Path], policy: FramePolicy | None = None,
                backend: str = "auto", resize: bool = True, fps: float | None = None,
                indices: Sequence[int] | None = None) -> LoadedFrames:
    """Sample frames from a video file, a folder of frames, an image, or a list of images.

    ``fps``: the frame rate of a frame folder or image list (a video file's comes from its container); default
    ``DEFAULT_FRAME_FOLDER_FPS``. Folders are read in natural order (1, 2, …, 10). ``indices``: take exactly
    these source frames (0-based positions) instead of sampling by the policy — a window around an annotated
    frame; the policy still sizes them and pads to an even count.
    ``backend``: "auto" (decord, then PyAV for what decord cannot open), "decord" or "pyav" for video files.
    Raises MissingMediaError / EmptyMediaError / CorruptMediaError naming the file.
    """
    policy = policy or FramePolicy()
    rate = float(fps) if fps else DEFAULT_FRAME_FOLDER_FPS
    wanted = [int(i) for i in indices] if indices is not None else None
    if isinstance(media, list | tuple):
        loaded = _load_image_list([Path(p) for p in media], policy, source=str(media[0]) if media else "[]",
                                  fps=rate, wanted=wanted)
    else:
        path = Path(media)
        if not path.exists():
            raise MissingMediaError(path, "no such file or directory")
        if path.is_dir():
            loaded = _load_image_list(frame_files(path), policy, source=str(path), fps=rate, wanted=wanted)
            loaded.kind = "frames"
        elif path.suffix.lower() in IMAGE_EXTENSIONS:
            frame = read_image(path)
            loaded = LoadedFrames(frame[None], [0.0], [0], 1.0, 1, str(path), "pil", kind="image")
        else:
            loaded = _load_video(path, policy, backend, wanted)
    if resize:
        if loaded.kind == "image":
            loaded.frames = resize_image(loaded.frames[0], policy)[None]
        else:
            loaded.frames = _resize_frames(loaded.frames, policy)
    return loaded


def load_media(media: dict, policy: FramePolicy | None = None, backend: str = "auto",
               resize: bool = True) -> LoadedFrames:
    """Frames of a sample record's ``media`` dict: its path(s), its frame rate (``fps``, for frame folders and
    image lists) and, for a window around an annotated frame, its exact ``frame_indices``. Frames whose clip's
    audio is another file (``media["audio_path"]``: DFEW's/MAFW's original videos) are timed on that clip whatever
    the modalities (``emoreason.audio.frames_on_clip``), so an audio-vs-video ablation changes only what is heard;
    an original that cannot be read leaves the frames on their own rate, with a warning."""
    from emoreason.audio.io import frames_on_clip_or_own  # emoreason.audio imports this module

    frames = load_frames(media["path"], policy, backend, resize, fps=media.get("fps"),
                         indices=media.get("frame_indices"))
    return frames_on_clip_or_own(frames, media.get("audio_path"), media["path"])


def resize_image(frame: np.ndarray, policy: FramePolicy) -> np.ndarray:
    """An image (H, W, 3) resized as every stage resizes it before the processor: to a multiple of the vision
    factor, 4 to 4,096 merged patches (or the policy's max_pixels if larger), PIL bicubic. ``emoreason serve``
    applies the same to the images it receives (:mod:`emoreason.serving.vllm_entry`)."""
    h, w = smart_resize(*frame.shape[:2], policy.factor, 4 * policy.factor ** 2,
                        max(policy.max_pixels, 16384 * policy.factor ** 2 // 4))
    if (h, w) == frame.shape[:2]:
        return frame
    return np.asarray(Image.fromarray(frame).resize((w, h), Image.BICUBIC))


def read_image(source: str | Path, fp=None) -> np.ndarray:
    """An image file (or the open file object ``fp`` holding it) as an RGB array; MediaError names ``source``."""
    path = Path(source)
    try:
        with Image.open(path if fp is None else fp) as im:
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError as exc:
        raise MissingMediaError(path, "no such file") from exc
    except Exception as exc:
        raise CorruptMediaError(source, f"cannot decode image ({type(exc).__name__}: {exc})") from exc



def _check_wanted(source: str | Path, wanted: list[int], total: int) -> None:
    bad = [i for i in wanted if not 0 <= i < total]
    if not wanted or bad:
        raise CorruptMediaError(source, f"frame indices {bad or wanted} outside the {total} frames available")


def _load_image_list(files: list[Path], policy: FramePolicy, source: str, fps: float = DEFAULT_FRAME_FOLDER_FPS,
                     wanted: list[int] | None = None) -> LoadedFrames:
    """Frame folders (DFEW/MAFW/Aff-Wild2 style) and image lists; frames are at ``fps``."""
    if not files:
        raise EmptyMediaError(source, "no image frames found")
    if wanted is not None:
        _check_wanted(source, wanted, len(files))
        indices = list(wanted)
    else:
        indices = _indices(len(files), min(policy.num_frames(len(files), fps), len(files)))
    frames = [read_image(files[i]) for i in indices]
    shape = frames[0].shape
    for i, f in zip(indices, frames, strict=True):
        if f.shape != shape:
            raise CorruptMediaError(files[i], f"frame size {f.shape[:2]} differs from {shape[:2]} of the first frame")
    stacked = np.stack(frames)
    if len(stacked) % policy.frame_factor:  # fewer files than the temporal patch: repeat the last frame
        stacked = np.concatenate([stacked, stacked[-1:]])
        indices = [*indices, indices[-1]]
    return LoadedFrames(stacked, [i / fps for i in indices], indices, fps, len(files), source, "pil", "frames")


def _indices(total: int, n: int) -> list[int]:
    return [int(round(x)) for x in np.linspace(0, total - 1, n)] if n > 0 else []


def _load_video(path: Path, policy: FramePolicy, backend: str, wanted: list[int] | None = None) -> LoadedFrames:
    if path.stat().st_size == 0:
        raise EmptyMediaError(path, "file is empty")
    if backend not in ("auto", "decord", "pyav"):
        raise ValueError(f"unknown video backend {backend!r}")
    if backend in ("auto", "decord"):
        try:
            return _load_decord(path, policy, wanted)
        except ImportError:
            if backend == "decord":
                raise
        except MediaError:
            if backend == "decord":
                raise
            log.debug("decord could not read %s; falling back to PyAV", path)
    return _load_pyav(path, policy, wanted)


def _load_decord(path: Path, policy: FramePolicy, wanted: list[int] | None = None) -> LoadedFrames:
    import decord

    try:
        reader = decord.VideoReader(str(path), num_threads=0)  # 0: decord picks the thread count
        total, fps = len(reader), float(reader.get_avg_fps() or 0.0)
    except Exception as exc:
        raise CorruptMediaError(path, f"decord cannot open the video ({exc})") from exc
    if total <= 0:
        raise EmptyMediaError(path, "video has no frames")
    fps = fps if fps > 0 else 25.0
    if wanted is not None:
        _check_wanted(path, wanted, total)
        indices = list(wanted)
    else:
        indices = _indices(total, min(policy.num_frames(total, fps), total))
    try:
        frames = reader.get_batch(indices).asnumpy()
    except Exception as exc:
        raise CorruptMediaError(path, f"decord failed to decode frames ({exc})") from exc
    indices, frames = _pad_even(indices, frames, policy)
    return LoadedFrames(frames, [i / fps for i in indices], indices, fps, total, str(path), "decord")


def _load_pyav(path: Path, policy: FramePolicy, requested: list[int] | None = None) -> LoadedFrames:
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise EmptyMediaError(path, "no video stream")
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 25.0)
            declared = int(stream.frames or 0)
            if declared > 0:  # convert only the sampled frames to RGB (the costly step)
                if requested is not None:
                    _check_wanted(path, requested, declared)
                wanted = requested if requested is not None else _indices(
                    declared, min(policy.num_frames(declared, fps), declared))
                keep = set(wanted)
                picked: dict[int, np.ndarray] = {}
                count = 0
                for i, frame in enumerate(container.decode(stream)):
                    if i in keep:
                        picked[i] = frame.to_ndarray(format="rgb24")
                    count = i + 1
                    if requested is not None and i >= max(keep):
                        count = declared  # a window: nothing after its last frame is needed
                        break
                if count == declared:
                    frames = np.stack([picked[i] for i in wanted])
                    indices, frames = _pad_even(list(wanted), frames, policy)
                    return LoadedFrames(frames, [i / fps for i in indices], indices, fps, declared, str(path),
                                        "pyav")
                container.seek(0)  # the header's frame count was wrong: decode everything
            decoded = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    except MediaError:
        raise
    except Exception as exc:
        raise CorruptMediaError(path, f"PyAV cannot decode the video ({type(exc).__name__}: {exc})") from exc
    if not decoded:
        raise EmptyMediaError(path, "video has no decodable frames")
    total = len(decoded)
    if requested is not None:
        _check_wanted(path, requested, total)
        indices = list(requested)
    else:
        indices = _indices(total, min(policy.num_frames(total, fps), total))
    indices, frames = _pad_even(indices, np.stack([decoded[i] for i in indices]), policy)
    return LoadedFrames(frames, [i / fps for i in indices], indices, fps, total, str(path), "pyav")


def _pad_even(indices: list[int], frames: np.ndarray, policy: FramePolicy) -> tuple[list[int], np.ndarray]:
    if len(indices) % policy.frame_factor:
        frames = np.concatenate([frames, frames[-1:]])
        indices = [*indices, indices[-1]]
    return indices, frames


def rgb_to_yuv420p(frame: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) → planar YUV 4:2:0 (BT.601 limited range, what decoders assume by default)."""
    f = frame.astype(np.float32)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128 + 0.439 * r - 0.368 * g - 0.071 * b
    h, w = y.shape
    u = u.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    v = v.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    planes = np.concatenate([y.ravel(), u.ravel(), v.ravel()])
    return np.clip(np.round(planes), 0, 255).astype(np.uint8).reshape(h * 3 // 2, w)


def write_video(frames: np.ndarray | Sequence[np.ndarray], path: str | Path, fps: float = 8.0,
                crf: int = 18, audio: np.ndarray | None = None, audio_rate: int = 16000,
                audio_layout: str = "mono") -> Path:
    """Write RGB uint8 frames as an H.264 mp4 (yuv420p, even dimensions) with PyAV; returns the path.

    ``audio`` (float waveform at ``audio_rate``: (samples,) mono or (channels, samples) in ``audio_layout``) adds
    an AAC track (``emoreason.audio``)."""
    import av

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    t, h, w, _ = frames.shape
    if t == 0 or h % 2 or w % 2:
        raise ValueError(f"need ≥ 1 frame with even height and width for H.264, got {frames.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=int(round(fps)) if float(fps).is_integer() else fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        # mbtree off + constant frame rate: x264's rate control otherwise varies run to run, and identical
        # frames should give identical files (SynthFACS is deterministic by seed)
        stream.options = {"crf": str(crf), "preset": "veryfast", "x264-params": "mbtree=0:force-cfr=1"}
        audio_stream = None
        if audio is not None:  # every stream must exist before the first packet is muxed
            from emoreason.audio.io import add_audio_stream, encode_audio

            audio_stream = add_audio_stream(container, audio_rate, audio_layout)
        for index, frame in enumerate(frames):
            # convert to YUV here: libswscale's RGB→YUV path gave run-to-run differences, numpy does not
            yuv = av.VideoFrame.from_ndarray(rgb_to_yuv420p(frame), format="yuv420p")
            yuv.pts = index
            for packet in stream.encode(yuv):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if audio_stream is not None:
            encode_audio(container, audio_stream, audio)
    return path


def sampled_indices(total: int, video_fps: float, policy: FramePolicy) -> list[int]:
    """Source indices of the frames ``load_frames`` samples from a clip of ``total`` frames under ``policy``
    (before any padding to an even count)."""
    return _indices(total, min(policy.num_frames(total, video_fps), total))
