"""The face stage's options and its per-frame result type."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.core.config import ConfigError, field


@dataclass(frozen=True)
class FaceConfig:
    min_face: float = field(20.0, "smallest face to find, in pixels of the detection-scale frame")
    thresholds: tuple[float, float, float] = field((0.6, 0.7, 0.7), "P-Net, R-Net, O-Net face probability "
                                                   "thresholds (the DFDC winner used 0.7,0.8,0.8)")
    scale_factor: float = field(0.709, "image pyramid step (MTCNN's 0.709: about half the area per level)")
    max_side: int = field(960, "downscale frames whose longer side exceeds this before detecting (0: never)")
    detect_scale: float = field(1.0, "extra scale for detection, e.g. 0.5 as the DFDC winner (boxes are "
                                      "mapped back to the input frame)")
    coarse_min_face: float = field(79.0, "search whole frames only at the pyramid levels of faces of at least "
                                         "this size (detection-scale pixels; lower while the subject is small), "
                                         "and the smaller levels only around the faces that could be the "
                                         "subject and where it is missing: the subject's boxes are the whole "
                                         "search's at about a third of its cost; far smaller faces are not "
                                         "reported (0: the whole search everywhere)")
    coarse_threshold: float = field(0.9, "speed: P-Net probability a candidate needs to go on to R-Net in the "
                                         "coarse search, which only says where faces are (all candidates of "
                                         "thresholds[0] are used for the boxes)")
    coarse_nms: float = field(0.3, "speed: IoU at which the coarse search merges candidates")
    region_band: float = field(0.25, "coarse_min_face: smallest window searched around a face, as a fraction "
                                     "of its side (0: down to min_face; 0.35 still gave the same boxes on the "
                                     "dev clips, 0.5 did not)")
    chunk_mb: float = field(0.0, "CPU only, speed only: largest layer output per net call in MB "
                                      "(0: auto, an eighth of the last-level cache)", identity=False)
    cpu_engine: str = field("auto", "CPU only, speed only: mkldnn (oneDNN blocked layout, faster here), "
                                    "eager (channels_last), or auto (mkldnn when available)",
                            choices=("auto", "mkldnn", "eager"), identity=False)
    second_look: bool = field(True, "where the subject is missing in a frame but found in its neighbours, search "
                                    "again around the box they predict, contrast-normalised, and take a face only "
                                    "if the cascade confirms it there and it continues the track (issue 18); "
                                    "these frames are marked as the second look's in the store")
    second_look_region: float = field(2.5, "second look: side of the region searched, as a multiple of the "
                                           "predicted box's side (x1.2 when the gap is at one end of the track)",
                                      omit_default=True)
    second_look_accept: float = field(0.9, "second look: O-Net probability a face in the region needs (P-Net and "
                                           "R-Net run at 0.5 there)", omit_default=True)
    subject: str = field("track", "how the video's subject is chosen: 'track', the face seen through most of "
                                  "the video (the track with the largest sum of box sides over the frames it is "
                                  "found in; each frame is compared with the track's last two boxes), or "
                                  "'largest', the largest confident face followed from its last box (the rule "
                                  "before issue 18)",
                         choices=("track", "largest"))
    min_prob: float = field(0.9, "probability a face needs to seed the video's subject")
    track_iou: float = field(0.3, "least overlap (IoU) with the subject's last box to follow it")
    track_dist: float = field(0.5, "or at most this centre distance, in units of the last box's size")
    smooth: int = field(3, "moving-average window over sampled frames for the subject's box (1: off)")
    margin: float = field(1.3, "square crop side as a multiple of the face box (FaceForensics++: 1.3)")
    fallback: str = field("missing", "frames without the subject: 'missing' (masked) or 'frame' "
                                     "(the whole frame is used)", choices=("missing", "frame"))

    def validate(self) -> None:
        if not self.min_face >= 1:
            raise ConfigError(f"min_face must be >= 1 px, got {self.min_face}")
        if len(self.thresholds) != 3 or not all(0 <= t <= 1 for t in self.thresholds):
            raise ConfigError(f"thresholds must be three probabilities, got {self.thresholds}")
        if not 0.1 <= self.scale_factor < 1:
            raise ConfigError(f"scale_factor must be in [0.1, 1), got {self.scale_factor}")
        if self.max_side < 0 or not 0 < self.detect_scale <= 1:
            raise ConfigError("max_side must be >= 0 and detect_scale in (0, 1]")
        if self.cpu_engine not in ("auto", "mkldnn", "eager"):
            raise ConfigError(f"cpu_engine must be auto, mkldnn or eager, got {self.cpu_engine!r}")
        if self.subject not in ("track", "largest"):
            raise ConfigError(f"subject must be 'track' or 'largest', got {self.subject!r}")
        if self.fallback not in ("missing", "frame"):
            raise ConfigError(f"fallback must be 'missing' or 'frame', got {self.fallback!r}")
        if self.coarse_min_face < 0 or not 0 < self.coarse_nms <= 1 or not 0 <= self.coarse_threshold <= 1 \
                or not 0 <= self.region_band < 1:
            raise ConfigError("coarse_min_face must be >= 0, coarse_nms in (0, 1], coarse_threshold in [0, 1] and "
                              "region_band in [0, 1)")
        if not 1.5 <= self.second_look_region <= 6 or not 0.5 <= self.second_look_accept <= 1:
            raise ConfigError("second_look_region must be in [1.5, 6] and second_look_accept in [0.5, 1]")
        if self.margin < 1 or self.smooth < 1 or self.chunk_mb < 0:
            raise ConfigError("margin must be >= 1, smooth >= 1 and chunk_mb >= 0")

    def __post_init__(self) -> None:
        self.validate()


@dataclass(frozen=True)
class Detections:
    boxes: np.ndarray       # (n, 4) float32 x1, y1, x2, y2 in input-frame pixels, best first
    probs: np.ndarray       # (n,) float32 face probability from O-Net
    landmarks: np.ndarray   # (n, 5, 2) float32 (x, y): left eye, right eye, nose, mouth left, mouth right

    def __len__(self) -> int:
        return len(self.probs)

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))
