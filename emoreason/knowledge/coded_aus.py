"""Which AUs each evidence source codes — the one place that says so.

An AU outside a source's coded set is *unknown* for that source, never "absent": a rationale may say "there is no
AU7" only when the evidence could have shown AU7. Rewards and metrics likewise score claims only on coded AUs.

Sources
-------
* DISFA (Mavadati et al., "DISFA: A Spontaneous Facial Action Intensity Database", IEEE TAC 4(2), 2013): 12 AUs
  coded per frame on the 0–5 intensity scale.
* BP4D-Spontaneous (Zhang et al., Image Vis. Comput. 32(10), 2014) as released for FERA 2015 (Valstar et al., FG
  2015): 12 AUs coded per frame for occurrence (0/1); intensity (0–5) for AU6, 10, 12, 14 and 17 only.
* Aff-Wild2 (Kollias & Zafeiriou, BMVC 2019; ABAW AU detection challenge, Kollias et al. 2020–2023): 12 AUs,
  occurrence only (0/1, −1 = not annotated).
* CK+ (Lucey et al., CVPRW 2010): the peak frame is fully FACS coded, so every catalog AU is coded.
* OpenFace 2.0 (Baltrušaitis et al., FG 2018): intensity (``AUxx_r``) for 17 AUs; AU28 has occurrence only and
  is not used as evidence.
* SynthFACS: every AU its renderer draws (``emoreason.synth``), with exact per-frame intensities.
* FEA-20K lists present AUs per sample without a coded set: unknown (``None``), so no absence can be claimed.
"""

from __future__ import annotations

from emoreason.knowledge.facs import ACTION_UNITS

DISFA_AUS: tuple[int, ...] = (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26)
BP4D_AUS: tuple[int, ...] = (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)
BP4D_INTENSITY_AUS: tuple[int, ...] = (6, 10, 12, 14, 17)
ABAW_AUS: tuple[int, ...] = (1, 2, 4, 6, 7, 10, 12, 15, 23, 24, 25, 26)
OPENFACE_AUS: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 45)
SYNTHFACS_AUS: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 16, 17, 20, 23, 24, 25, 26, 43, 45)

# Evidence source (dataset name, or the producer of per-frame AU values) → AUs it codes.
CODED_AUS: dict[str, tuple[int, ...]] = {
    "disfa": DISFA_AUS,
    "bp4d": BP4D_AUS,
    "affwild2": ABAW_AUS,
    "ckplus": tuple(sorted(ACTION_UNITS)),
    "openface": OPENFACE_AUS,
    "synthfacs": SYNTHFACS_AUS,
}

# Datasets whose per-frame AU values are occurrence (0/1), not intensity: their letters come from the peak
# intensities the dataset ships separately (``au_intensity``), or are unknown.
OCCURRENCE_ONLY: frozenset[str] = frozenset({"bp4d", "affwild2"})


def coded_aus(source: str | None) -> frozenset[int] | None:
    """The AUs ``source`` codes, or None when unknown (then no absence may be claimed)."""
    if source is None:
        return None
    aus = CODED_AUS.get(source.lower())
    return frozenset(aus) if aus is not None else None
