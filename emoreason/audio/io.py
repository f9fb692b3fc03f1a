"""Reading the audio track of a clip (PyAV), aligned with the frames sampled from its video, and writing it.

What Qwen2.5-Omni expects (transformers ``Qwen2_5OmniProcessor`` / ``Qwen2_5OmniThinkerModel.get_rope_index``,
and vLLM's ``qwen2_5_omni_thinker``):

- audio: mono float32 at the feature extractor's rate (16 kHz; Whisper log-mel, 10 ms hop). After the encoder's
  two stride-2 steps one audio token covers 40 ms, so audio token *k* sits at temporal position *k* — 25
  positions per second (``position_id_per_seconds``).
- video: temporal patch *j* (2 frames) sits at position ``j × second_per_grid × 25`` with
  ``second_per_grid = temporal_patch_size / fps``, where ``fps`` is the *processor argument* (it defaults to 2.0
  whatever the frames were sampled at). Pass :func:`omni_video_fps` of the loaded frames.
- ``use_audio_in_video``: audio and video tokens are interleaved in 2 s chunks (``seconds_per_chunk``), both
  counted from 0, so the audio must start at the first sampled frame. :func:`audio_for_frames` starts it there
  and, like vLLM, runs it to the end of the track (or fits it to the video span on request).

Decoding mirrors vLLM's PyAV path (channels averaged to mono, libswresample for the rate), so training and
serving see the same waveform for 16 kHz sources; vLLM resamples other rates with torchaudio's sinc kernel,
a small numeric difference.

Bad inputs raise :class:`~emoreason.video.MediaError` subclasses naming the file and the reason: no audio
track (:class:`NoAudioError`), a corrupt stream (:class:`~emoreason.video.CorruptMediaError`), an audio track
whose length disagrees with the video beyond a tolerance (:class:`AudioLengthMismatchError`); mono, stereo and
multichannel tracks and any sample rate are accepted and converted.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from emoreason.video import CorruptMediaError, EmptyMediaError, LoadedFrames, MediaError, MissingMediaError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000  # Qwen2.5-Omni's WhisperFeatureExtractor
AUDIO_TOKENS_PER_SECOND = 25  # 16 kHz → 100 mel frames/s → two stride-2 steps → 25 tokens/s


class NoAudioError(EmptyMediaError):
    """The file has no audio stream, or one with no decodable samples."""


class AudioLengthMismatchError(MediaError):
    """The audio track is shorter or longer than the video span it should cover, beyond the tolerance."""


@dataclass
class LoadedAudio:
    waveform: np.ndarray  # (samples,) float32 mono, nominally in [-1, 1]
    sample_rate: int
    path: str
    start_s: float = 0.0  # source time of waveform[0]
    source_rate: int = 0
    source_channels: int = 0
    source_duration_s: float = 0.0  # the whole decoded audio track
    meta: dict = field(default_factory=dict)  # e.g. padded_s / trimmed_s when the track was fitted to a span

    @property
    def duration_s(self) -> float:
        return len(self.waveform) / self.sample_rate if self.sample_rate else 0.0


@dataclass(frozen=True)
class AudioInfo:
    """What a file's first audio stream declares, without decoding it."""

    codec: str
    sample_rate: int
    channels: int
    duration_s: float | None


def probe_audio(path: str | Path) -> AudioInfo | None:
    """The first audio stream's codec, rate, channels and declared duration; None when there is none."""
    import av

    path = _existing(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                return None
            stream = container.streams.audio[0]
            duration = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else (
                container.duration / 1e6 if container.duration else None)
            return AudioInfo(stream.codec_context.name, int(stream.rate or 0), int(stream.channels or 0), duration)
    except MediaError:
        raise
    except Exception as exc:
        raise CorruptMediaError(path, f"PyAV cannot open the file ({type(exc).__name__}: {exc})") from exc


def read_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> LoadedAudio:
    """Decode a file's first audio stream to mono float32 at ``sample_rate`` (whole track, source time 0 = the
    start of the container's video stream when there is one, else of the audio stream)."""
    path = _existing(path)
    samples, native_rate, channels, start_s = _decode(path)
    waveform = _resample(samples, native_rate, sample_rate)
    return LoadedAudio(waveform, sample_rate, str(path), start_s, native_rate, channels,
                       len(samples) / native_rate)


def audio_for_frames(path: str | Path, frames: LoadedFrames, sample_rate: int = SAMPLE_RATE,
                     tolerance_s: float = 0.5, on_mismatch: str = "error", span: str = "track") -> LoadedAudio:
    """The audio that goes with the sampled frames of ``frames``, mono at ``sample_rate``, from the first sampled
    frame on — what ``use_audio_in_video`` interleaves with those frames.

    ``span="track"`` (default) keeps it to the end of the audio track, as vLLM and Qwen's ``qwen-omni-utils``
    (which load the whole file) do for a clip sampled from its start, so training sees the tokens serving sees;
    an AAC track usually runs a few ms past the video (its last frame's padding). ``span="video"`` pads with
    silence / trims to the end of the video instead (recorded as ``padded_s`` / ``trimmed_s`` in ``meta``).

    A track that ends more than ``tolerance_s`` before the video, or runs on more than ``tolerance_s`` after it,
    raises :class:`AudioLengthMismatchError` with ``on_mismatch="error"``; with ``"pad"`` that clip is fitted to
    the video span as with ``span="video"``.
    """
    if on_mismatch not in ("error", "pad"):
        raise ValueError(f"on_mismatch must be 'error' or 'pad', got {on_mismatch!r}")
    if span not in ("track", "video"):
        raise ValueError(f"span must be 'track' or 'video', got {span!r}")
    if frames.kind == "image":
        raise NoAudioError(frames.path, "an image has no audio track")
    audio = read_audio(path, sample_rate)  # a frame folder's own path raises NoAudioError: it has no track
    video_end = frames.total_frames / frames.source_fps if frames.source_fps else audio.source_duration_s
    start = frames.timestamps[0] if frames.timestamps else 0.0
    audio_end = audio.start_s + audio.duration_s
    gap = video_end - audio_end  # > 0: the audio ends first
    if abs(gap) > tolerance_s:
        if on_mismatch == "error":
            what, where = ("ends", "before") if gap > 0 else ("runs on", "after")
            raise AudioLengthMismatchError(
                path, f"audio track ({audio_end:.2f} s) {what} {abs(gap):.2f} s {where} the video "
                      f"({video_end:.2f} s); tolerance {tolerance_s} s (on_mismatch='pad' fits it to the video)")
        span = "video"
    first = int(round((start - audio.start_s) * sample_rate))
    lead = max(0, -first)  # the audio starts after the first frame: silence before it
    waveform = np.concatenate([np.zeros(lead, np.float32), audio.waveform[max(0, first):]])
    meta = dict(audio.meta)
    if lead:
        meta["padded_start_s"] = round(lead / sample_rate, 4)
    if span == "video":
        count = int(round((video_end - start) * sample_rate))
        if len(waveform) < count:
            meta["padded_s"] = round((count - len(waveform)) / sample_rate, 4)
            waveform = np.concatenate([waveform, np.zeros(count - len(waveform), np.float32)])
        elif len(waveform) > count:
            meta["trimmed_s"] = round((len(waveform) - count) / sample_rate, 4)
            waveform = waveform[:count]
    return LoadedAudio(waveform.astype(np.float32), sample_rate, str(path), start, audio.source_rate,
                       audio.source_channels, audio.source_duration_s, meta)


def omni_video_fps(frames: LoadedFrames) -> float:
    """The ``fps`` to give Qwen2.5-Omni's processor for these frames: sampled frames per second of video (as
    qwen-vl-utils computes it), so ``second_per_grid = temporal_patch / fps`` is the real time per temporal
    patch and video tokens line up with the audio tokens (25 per second). A frame folder is timed by the rate
    its frames were loaded at — the dataset's (the adapter's ``media["fps"]``), else
    ``emoreason.video.DEFAULT_FRAME_FOLDER_FPS`` — which ``LoadedFrames.source_fps`` carries."""
    if frames.kind == "image" or not frames.source_fps or not frames.total_frames:
        return 2.0  # the processor's own default: a single image has no time
    return len(frames.indices) / (frames.total_frames / frames.source_fps)


def audio_token_count(samples: int) -> int:
    """Audio tokens Qwen2.5-Omni makes from ``samples`` at 16 kHz: Whisper's 10 ms mel frames (its attention
    mask counts one per started hop), then the processor's ``_get_feat_extract_output_lengths`` (two stride-2
    steps)."""
    mel_frames = -(-samples // (SAMPLE_RATE // 100))
    return ((mel_frames - 1) // 2 + 1 - 2) // 2 + 1 if mel_frames > 0 else 0


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise MissingMediaError(path, "no such file")
    if path.is_dir():
        raise NoAudioError(path, "a frame folder has no audio track")
    if path.stat().st_size == 0:
        raise EmptyMediaError(path, "file is empty")
    return path


def _decode(path: Path) -> tuple[np.ndarray, int, int, float]:
    """(samples (channels averaged), native rate, channels, start time relative to the video stream)."""
    import av

    try:
        container = av.open(str(path))
    except Exception as exc:
        raise CorruptMediaError(path, f"PyAV cannot open the file ({type(exc).__name__}: {exc})") from exc
    with container:
        if not container.streams.audio:
            raise NoAudioError(path, "no audio track")
        stream = container.streams.audio[0]
        rate, channels = int(stream.rate or 0), int(stream.channels or 0)
        if rate <= 0:
            raise CorruptMediaError(path, "the audio stream declares no sample rate")
        reference = _video_start(container)
        chunks: list[np.ndarray] = []
        first_time: float | None = None
        decoded_s = 0.0
        try:
            # planar float at the native layout and rate: every sample format becomes (channels, samples)
            planar = av.AudioResampler(format="fltp", layout=stream.layout.name or channels, rate=rate)
            for frame in container.decode(stream):
                if first_time is None and frame.time is not None:
                    first_time = float(frame.time)
                for out in planar.resample(frame):
                    chunks.append(out.to_ndarray().mean(axis=0))
                    decoded_s += out.samples / rate
            for out in planar.resample(None):
                chunks.append(out.to_ndarray().mean(axis=0))
        except Exception as exc:
            raise CorruptMediaError(path, f"the audio stream cannot be decoded after {decoded_s:.2f} s "
                                          f"({type(exc).__name__}: {exc})") from exc
    if not chunks or sum(len(c) for c in chunks) == 0:
        raise NoAudioError(path, "the audio track has no decodable samples")
    samples = np.concatenate(chunks).astype(np.float32)
    if not np.isfinite(samples).all():
        raise CorruptMediaError(path, "the audio stream decodes to non-finite samples")
    start = (first_time or 0.0) - (reference if reference is not None else (first_time or 0.0))
    return samples, rate, channels, start


def _video_start(container) -> float | None:
    if not container.streams.video:
        return None
    stream = container.streams.video[0]
    if stream.start_time is None or stream.time_base is None:
        return 0.0
    return float(stream.start_time * stream.time_base)


def _resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """libswresample through PyAV, as vLLM's ``resample_audio_pyav`` does (mono in, mono out)."""
    import av

    if rate == target:
        return samples
    expected = int(math.ceil(len(samples) * target / rate))
    padded = samples if len(samples) >= 1024 else np.pad(samples, (0, 1024 - len(samples)))
    resampler = av.AudioResampler(format="fltp", layout="mono", rate=target)
    frame = av.AudioFrame.from_ndarray(padded.reshape(1, -1), format="fltp", layout="mono")
    frame.sample_rate = rate
    out = [f.to_ndarray() for f in resampler.resample(frame)]
    out += [f.to_ndarray() for f in resampler.resample(None)]
    return np.concatenate(out, axis=1)[0, :expected].astype(np.float32)


def add_audio_stream(container, sample_rate: int = SAMPLE_RATE, layout: str = "mono"):
    """An AAC stream on an open PyAV output container; feed it with :func:`encode_audio`. 4 bits per sample and
    channel (64 kb/s for 16 kHz mono): ffmpeg's AAC encoder is near-transparent for speech there."""
    stream = container.add_stream("aac", rate=sample_rate)
    stream.layout = layout
    stream.bit_rate = 4 * sample_rate * max(1, stream.layout.nb_channels)
    return stream


def encode_audio(container, stream, waveform: np.ndarray) -> None:
    """Encode a float waveform — (samples,) mono or (channels, samples) in the stream's layout, at the stream's
    rate — into ``stream`` and mux it, flushing at the end."""
    import av

    planar = np.clip(np.atleast_2d(np.asarray(waveform, dtype=np.float32)), -1.0, 1.0)
    layout = stream.layout.name
    if planar.shape[0] != stream.layout.nb_channels:
        raise ValueError(f"{planar.shape[0]} audio channels for a {layout} stream")
    step = stream.codec_context.frame_size or 1024
    for offset in range(0, planar.shape[1], step):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planar[:, offset:offset + step]), format="fltp",
                                           layout=layout)
        frame.sample_rate = stream.rate
        frame.pts = offset
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def omni_processor_kwargs(frames: list[LoadedFrames], audio: list[LoadedAudio | None]) -> dict:
    """Keyword arguments for one ``Qwen2_5OmniProcessor`` call over ``frames`` (one per video, in order) and their
    aligned audio (:func:`audio_for_frames`; None for a silent clip), interleaving each track with its video.

    The processor takes one ``fps`` per call (``video_second_per_grid`` is computed from it for every video), so
    all videos of a call must share their sampled fps: batch clips of equal fps, or call once per clip. The model's
    forward/generate then needs ``use_audio_in_video=True``, and a silent clip in such a batch must get a silent
    waveform (transformers' ``get_rope_index`` applies the flag to every video of the batch).
    """
    if len(frames) != len(audio):
        raise ValueError(f"{len(frames)} videos but {len(audio)} audio entries")
    rates = {round(omni_video_fps(f), 3) for f in frames}
    if len(rates) > 1:
        raise ValueError(f"videos sampled at different fps {sorted(rates)} need separate processor calls")
    kwargs: dict = {"fps": rates.pop() if rates else 2.0}
    tracks = [(i, a.waveform) for i, a in enumerate(audio) if a is not None]
    if tracks:
        kwargs.update(audio=[w for _, w in tracks], audio_from_video_indices=[i for i, _ in tracks],
                      load_audio_from_video=True)
    return kwargs


def takes_audio(processor) -> bool:
    """True for a processor that encodes audio beside video (Qwen2.5-Omni's): it has a feature extractor and an
    audio placeholder token."""
    return getattr(processor, "feature_extractor", None) is not None and bool(getattr(processor, "audio_token", None))


def silence_for(frames: LoadedFrames, sample_rate: int = SAMPLE_RATE) -> LoadedAudio:
    """A silent waveform spanning the sampled video (first sampled frame to the end of the video): what a clip
    without an audio track hears when an audio model encodes it (``emoreason.inference.encode_batch``), alone or
    beside speaking clips, so its tokens never depend on its batch-mates (``use_audio_in_video`` applies to every
    video of a forward: transformers' ``get_rope_index``). ``meta["silent"]`` records it."""
    start = frames.timestamps[0] if frames.timestamps else 0.0
    end = frames.total_frames / frames.source_fps if frames.source_fps and frames.total_frames else (
        frames.timestamps[-1] if frames.timestamps else 0.0)
    count = max(int(round((end - start) * sample_rate)), SAMPLE_RATE // 100)  # at least one mel frame
    return LoadedAudio(np.zeros(count, np.float32), sample_rate, frames.path, start,
                       meta={"silent": "no audio track"})


def heard_track(frames: LoadedFrames | None, audio: LoadedAudio | None,
                max_s: float | None = None) -> LoadedAudio | None:
    """What an audio model hears beside ``frames``, the one rule for local encodings
    (``emoreason.inference.encode_batch``), served requests (``emoreason eval/predict --endpoint``) and GRPO's vLLM
    rollouts: the clip's track, or silence of the video's duration (:func:`silence_for`) for a clip without one,
    cut to ``max_s`` (the feature extractor's window, :func:`fit_window`); None for an image or no media."""
    if frames is None or frames.kind == "image":
        return None
    return fit_window(audio if audio is not None else silence_for(frames), max_s)


def audio_window_s(processor) -> float | None:
    """Seconds of audio the processor's feature extractor keeps (Whisper's ``chunk_length``: 30 s for the tiny
    model and Whisper, 300 s for Qwen2.5-Omni-7B); it silently drops the rest, so :func:`fit_window` cuts first.
    None for a processor without one."""
    extractor = getattr(processor, "feature_extractor", None)
    samples, rate = getattr(extractor, "n_samples", None), getattr(extractor, "sampling_rate", None)
    return samples / rate if samples and rate else None


def fit_window(audio: LoadedAudio, max_s: float | None) -> LoadedAudio:
    """``audio`` cut to its first ``max_s`` seconds (the feature extractor's window, :func:`audio_window_s`), with a
    warning naming the clip and the duration kept, recorded in ``meta`` (``truncated_to_s``, ``truncated_from_s``)
    for the run's counts; unchanged when it fits."""
    if max_s is None or audio.duration_s <= max_s + 0.5 / audio.sample_rate:
        return audio
    log.warning("%s: audio cut to the feature extractor's window: %.2f s kept of %.2f s (from the first sampled "
                "frame); the model hears no more", audio.path, max_s, audio.duration_s)
    meta = {**audio.meta, "truncated_to_s": round(max_s, 3), "truncated_from_s": round(audio.duration_s, 3)}
    return replace(audio, waveform=audio.waveform[:int(round(max_s * audio.sample_rate))], meta=meta)


def clip_audio(path: str | Path, frames: LoadedFrames, sample_rate: int = SAMPLE_RATE,
               tolerance_s: float = 0.5, max_s: float | None = None) -> LoadedAudio | None:
    """The audio that goes with ``frames`` for a training or inference row: :func:`audio_for_frames`, except that
    a clip with no audio track (or frames/images, which have none) gives None, and an audio/video length mismatch
    beyond ``tolerance_s`` is fitted to the video (``meta["mismatch"]`` says what was wrong) rather than raised,
    and audio past ``max_s`` (the model's window, :func:`audio_window_s`) is cut with a warning (:func:`fit_window`)
    — so what is measured of it (vocal cues) is what the model hears. A corrupt audio stream still raises
    :class:`~emoreason.video.CorruptMediaError` naming the file. ``path`` may be another file than the frames'
    (a face-crop folder's original clip): pass ``frames`` through :func:`frames_on_clip` first."""
    if frames.kind == "image":
        return None
    try:
        audio = audio_for_frames(path, frames, sample_rate, tolerance_s=tolerance_s)
    except NoAudioError:
        return None
    except AudioLengthMismatchError as exc:
        audio = audio_for_frames(path, frames, sample_rate, tolerance_s=tolerance_s, on_mismatch="pad")
        audio.meta["mismatch"] = exc.reason
    return fit_window(audio, max_s)


def video_duration_s(path: str | Path) -> float:
    """Seconds of a file's video stream (its declared duration, else its frame count over its rate, else the
    container's duration); a file without video is timed by its audio stream. Remembered per (path, mtime, size):
    a face-crop folder timed on its original clip opens that clip once, not on every load of every epoch."""
    path = _existing(path)
    stat = path.stat()
    return _duration_s(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=65536)  # DFEW has ~16k clips, MAFW ~10k
def _duration_s(path: str, mtime_ns: int, size: int) -> float:
    import av

    try:
        with av.open(str(path)) as container:
            streams = container.streams.video or container.streams.audio
            stream = streams[0] if streams else None
            if stream is not None and stream.duration and stream.time_base:
                return float(stream.duration * stream.time_base)
            if stream is not None and stream.type == "video" and stream.frames and stream.average_rate:
                return float(stream.frames / stream.average_rate)
            if container.duration:
                return container.duration / 1e6
    except MediaError:
        raise
    except Exception as exc:
        raise CorruptMediaError(path, f"PyAV cannot open the file ({type(exc).__name__}: {exc})") from exc
    raise CorruptMediaError(path, "the file declares no duration")


def fps_on_clip(n_frames: int, clip: str | Path) -> float:
    """The rate at which ``n_frames`` span ``clip``'s duration (frame *i* at *i/N* of it): the time base of frames
    heard with another file's track (:func:`frames_on_clip`) and of the AU timeline written about them."""
    duration = video_duration_s(clip)
    if duration <= 0:
        raise CorruptMediaError(clip, f"the clip's duration is {duration} s")
    return n_frames / duration


def frames_on_clip(frames: LoadedFrames, audio_path: str | Path | None) -> LoadedFrames:
    """``frames`` timed on the clip whose audio they are heard with, when that audio comes from another file than
    the frames (DFEW's face-crop folders, MAFW's frame folders: the audio is the original video's,
    ``media["audio_path"]``): the frames span that clip's duration, so frame *i* of *N* sits at *i/N* of it. A frame
    folder's rate is assumed where the dataset states none (DFEW: 25 fps; its 16-frame variant is time-normalised),
    so its own timeline may be shorter or longer than the clip's; re-timed, the first sampled frame starts the audio
    at the same moment of the clip and Qwen2.5-Omni's interleaving (``use_audio_in_video``) pairs each 2 s of video
    with the same 2 s of audio. ``meta["timed_by"]`` names the clip; unchanged when the audio is the frames' own
    file, for an image, or already timed on that clip."""
    if (audio_path is None or frames.kind == "image" or str(audio_path) == str(frames.path) or not frames.total_frames
            or frames.meta.get("timed_by") == str(audio_path)):
        return frames
    fps = fps_on_clip(frames.total_frames, audio_path)
    return replace(frames, timestamps=[i / fps for i in frames.indices], source_fps=fps,
                   meta={**frames.meta, "timed_by": str(audio_path), "own_fps": frames.source_fps})


_UNTIMED: set[str] = set()  # originals that could not time their frames in this run (the first one is warned)


def frames_on_clip_or_own(frames: LoadedFrames, audio_path: str | Path | None, sample: str = "?") -> LoadedFrames:
    """:func:`frames_on_clip`, or the frames on their own rate when the original clip cannot be read: the frames
    are fine, so a video-only model still sees the sample (a model that hears it fails on the audio instead). One
    warning per run, for the first such original; the others are logged at debug level."""
    try:
        return frames_on_clip(frames, audio_path)
    except MediaError as exc:
        report = log.debug if _UNTIMED else log.warning
        _UNTIMED.add(str(audio_path))
        report("sample %s: frames on their own rate (%s fps), not the original clip's: %s (further unreadable "
               "originals are logged at debug level)", sample, frames.source_fps, exc)
        return frames
