"""Per-dataset label maps: a benchmark's raw label (code or name, as distributed) → canonical label.

Each entry lists the dataset's classes in its official index order, so numeric codes resolve and metrics
report classes in the order papers use.

* DFEW (Jiang et al., ACM MM 2020): set_N.csv labels 1–7 = happy, sad, neutral, angry, surprise, disgust, fear.
* FERV39K (Wang et al., CVPR 2022): 0–6 = angry, disgust, fear, happy, neutral, sad, surprise.
* MAFW (Liu et al., ACM MM 2022), single-label 11 classes, 1–11 = anger, disgust, fear, happiness, neutral,
  sadness, surprise, contempt, anxiety, helplessness, disappointment.
* RAF-DB basic (Li et al., CVPR 2017): 1–7 = surprise, fear, disgust, happiness, sadness, anger, neutral;
  RAF-DB compound: 1–11 = the compound classes below.
* AffectNet (Mollahosseini et al., TAC 2019): 0–7 = neutral, happy, sad, surprise, fear, disgust, anger,
  contempt (8–10 = none, uncertain, no-face are not emotions); the 7-class protocol drops contempt.
* CK+ (Lucey et al., CVPRW 2010): 0–7 = neutral, anger, contempt, disgust, fear, happy, sadness, surprise.
* AFEW (Dhall et al., EmotiW): folders Angry, Disgust, Fear, Happy, Neutral, Sad, Surprise.
* Aff-Wild2 EXPR (Kollias, ABAW): 0–7 = neutral, anger, disgust, fear, happiness, sadness, surprise, other;
  −1 = unlabelled frame.
* FEA-20K: named labels (basic emotions and neutral), resolved through the synonym table.
* CREMA-D (Cao et al., IEEE TAC 2014): file-name codes ANG, DIS, FEA, HAP, NEU, SAD (6 classes).
* RAVDESS (Livingstone & Russo, "The Ryerson Audio-Visual Database of Emotional Speech and Song", PLoS ONE
  13(5), 2018): file-name field 3, 01–08 = neutral, calm, happy, sad, angry, fearful, disgust, surprised. The
  standard protocol (``ravdess``) is speech, 8 classes, calm its own class; ``ravdess7`` merges calm into neutral
  (``emotion_raw`` keeps "calm"; not comparable to 8-class figures); ``ravdess_song``: song has no disgust or
  surprise, so 6 classes (Livingstone & Russo 2018, Table 1).
* MER2023 (Lian et al., ACM MM 2023): ``discrete`` names neutral, angry, happy, sad, worried, surprise (6
  classes; "worried" is anxiety in emoreason's taxonomy).
* SynthFACS: canonical labels.
"""

from __future__ import annotations

from dataclasses import dataclass

from emoreason.knowledge.taxonomy import BASIC_EMOTIONS, COMPOUND_EMOTIONS, MAFW_EMOTIONS, canonical_emotion


class UnknownLabelError(ValueError):
    """A raw label that a dataset's map does not know."""

    def __init__(self, dataset: str, raw: object, where: str | None = None):
        self.dataset, self.raw, self.where = dataset, raw, where
        at = f" ({where})" if where else ""
        super().__init__(f"{dataset}: unknown label {raw!r}{at}")


@dataclass(frozen=True)
class DatasetLabels:
    name: str
    classes: tuple[str, ...]  # canonical labels in the dataset's official index order
    first_index: int  # numeric code of classes[0]
    raw_names: tuple[str, ...] = ()  # the dataset's own class names, same order (for name lookup)
    ignored: tuple[str, ...] = ()  # raw codes that mean "no emotion label" (returned as None)
    merged: tuple[tuple[str, str], ...] = ()  # (raw name, class) a protocol variant counts as another class


# MER2023/MER2024 discrete classes (Lian et al., ACM MM 2023): canonical, first index, the release's names
_MER = (("neutral", "anger", "happiness", "sadness", "anxiety", "surprise"), 0,
        ("neutral", "angry", "happy", "sad", "worried", "surprise"))
_BASIC7 = ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")

DATASET_LABEL_MAPS: dict[str, DatasetLabels] = {
    "dfew": DatasetLabels("dfew", ("happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear"), 1,
                          ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear")),
    "ferv39k": DatasetLabels("ferv39k", _BASIC7, 0,
                             ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")),
    "mafw": DatasetLabels("mafw", ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise",
                                   "contempt", "anxiety", "helplessness", "disappointment"), 1),
    "rafdb": DatasetLabels("rafdb", ("surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral"), 1),
    "rafdb_compound": DatasetLabels("rafdb_compound", (
        "happily_surprised", "happily_disgusted", "sadly_fearful", "sadly_angry", "sadly_surprised",
        "sadly_disgusted", "fearfully_angry", "fearfully_surprised", "angrily_surprised", "angrily_disgusted",
        "disgustedly_surprised"), 1),
    "affectnet8": DatasetLabels("affectnet8", ("neutral", "happiness", "sadness", "surprise", "fear", "disgust",
                                               "anger", "contempt"), 0, ignored=("8", "9", "10")),
    "affectnet7": DatasetLabels("affectnet7", ("neutral", "happiness", "sadness", "surprise", "fear", "disgust",
                                               "anger"), 0, ignored=("7", "8", "9", "10")),
    "ckplus": DatasetLabels("ckplus", ("neutral", "anger", "contempt", "disgust", "fear", "happiness", "sadness",
                                       "surprise"), 0),
    "afew": DatasetLabels("afew", _BASIC7, 0, ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")),
    "affwild2_expr": DatasetLabels("affwild2_expr", ("neutral", "anger", "disgust", "fear", "happiness", "sadness",
                                                     "surprise"), 0, ignored=("-1", "7")),
    "fea20k": DatasetLabels("fea20k", BASIC_EMOTIONS, 0),
    "mer2023": DatasetLabels("mer2023", *_MER),
    "mer2024": DatasetLabels("mer2024", *_MER),  # the same 6 classes (Lian et al., arXiv 2404.17113)
    "cremad": DatasetLabels("cremad", ("anger", "disgust", "fear", "happiness", "neutral", "sadness"), 0,
                            ("ang", "dis", "fea", "hap", "neu", "sad")),
    # by name only (the adapter reads field 3 as RAVDESS_EMOTIONS[code - 1])
    "ravdess": DatasetLabels("ravdess", ("neutral", "calm", "happiness", "sadness", "anger", "fear", "disgust",
                                         "surprise"), 1,
                             ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")),
    "ravdess7": DatasetLabels("ravdess7", ("neutral", "happiness", "sadness", "anger", "fear", "disgust", "surprise"),
                              1, ("neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised"),
                              merged=(("calm", "neutral"),)),
    "ravdess_song": DatasetLabels("ravdess_song", ("neutral", "calm", "happiness", "sadness", "anger", "fear"), 1,
                                  ("neutral", "calm", "happy", "sad", "angry", "fearful")),
    "synthfacs": DatasetLabels("synthfacs", (*BASIC_EMOTIONS, *MAFW_EMOTIONS, *COMPOUND_EMOTIONS), 0),
}


def dataset_label_set(dataset: str) -> tuple[str, ...]:
    """Canonical classes of a dataset, in its official order."""
    return _labels(dataset).classes


def _labels(dataset: str) -> DatasetLabels:
    key = dataset.lower().replace("-", "").replace("+", "plus")
    if key not in DATASET_LABEL_MAPS:
        raise KeyError(f"no label map for dataset {dataset!r}; known: {', '.join(DATASET_LABEL_MAPS)}")
    return DATASET_LABEL_MAPS[key]


# A finer category a benchmark without it scores as its coarser class: "calm" was neutral's synonym until RAVDESS's
# 8-class protocol (Livingstone & Russo, PLoS ONE 2018) made it a class; DFEW, MAFW, ravdess7 still count it neutral.
_COARSER = {"calm": "neutral"}


def prediction_in_label_set(dataset: str, emotion: str | None) -> str | None:
    """A predicted canonical ``emotion`` as ``dataset``'s protocol scores it: the label itself when the dataset has
    that class, else the class the protocol merges it into (``DatasetLabels.merged``) or its coarser category
    (calm → neutral) when the dataset has that one; otherwise unchanged (and scored wrong)."""
    spec = _labels(dataset)
    if emotion is None or emotion in spec.classes:
        return emotion
    merged = dict(spec.merged).get(emotion) or _COARSER.get(emotion)
    return merged if merged in spec.classes else emotion


def map_dataset_label(dataset: str, raw: object, where: str | None = None) -> str | None:
    """A dataset's raw label (int code, numeric string or class name) → canonical label.

    Returns None for the dataset's documented "no label" codes (AffectNet 8–10, Aff-Wild2 −1 and Other);
    raises UnknownLabelError (naming ``where``, e.g. "set_1.csv line 12") for anything else unknown.
    """
    spec = _labels(dataset)
    text = str(raw).strip()
    if text in spec.ignored:
        return None
    try:
        code = int(float(text))
    except ValueError:
        code = None
    if code is not None and str(code) in spec.ignored:
        return None
    if code is not None:
        index = code - spec.first_index
        if 0 <= index < len(spec.classes):
            return spec.classes[index]
        raise UnknownLabelError(spec.name, raw, where)
    lowered = text.lower()
    if lowered in dict(spec.merged):
        return dict(spec.merged)[lowered]
    if lowered in spec.raw_names:
        return spec.classes[spec.raw_names.index(lowered)]
    label = canonical_emotion(text)
    if label is not None and label in spec.classes:
        return label
    raise UnknownLabelError(spec.name, raw, where)
