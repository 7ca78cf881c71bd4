"""Options for turning a dataset root into a manifest (``--dataset``, split ratios and seed, CSV columns, FF++)."""
from __future__ import annotations

from dataclasses import dataclass

from pipeline.core.config import ConfigError, field
from pipeline.core.videos import VIDEO_EXTS

LAYOUTS = ("folder", "csv", "ffpp", "celebdf", "dfdc")
# FaceForensics++ manipulation folders under manipulated_sequences/ (DeepFakeDetection is Google's DFD set,
# whose originals live in original_sequences/actors); absent ones are skipped.
FFPP_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter", "DeepFakeDetection")
FFPP_COMPRESSIONS = ("raw", "c23", "c40")


@dataclass(frozen=True)
class DatasetConfig:
    dataset: str = field("auto", "dataset layout of ROOT; auto detects it from the files",
                         choices=("auto",) + LAYOUTS)
    split_ratios: tuple[float, ...] = field((0.7, 0.15, 0.15),
                                            "train,val,test fractions of the seeded group-aware split "
                                            "(used where the dataset has no official split)")
    split_seed: int = field(0, "seed of the group-aware split (same seed and videos -> same split)")
    csv_id: str = field("", "CSV column with the video id (empty: video_id/id if present, else the path)")
    csv_path: str = field("", "CSV column with the video path (empty: path/filepath/filename/file/video)")
    csv_label: str = field("", "CSV column with the label real/fake or 0/1 (empty: label/class/target)")
    csv_split: str = field("", "CSV column with train/val/test (empty: split/set/subset if present)")
    csv_group: str = field("", "CSV column with the identity group (empty: group/identity if present, "
                               "else each video is its own group)")
    csv_method: str = field("", "CSV column with the manipulation method (empty: method if present)")
    csv_video_dir: str = field("", "folder the CSV's relative paths start from (empty: the CSV's folder)")
    ffpp_compression: str = field("c23", "FaceForensics++ compression folder", choices=FFPP_COMPRESSIONS)
    ffpp_methods: tuple[str, ...] = field(FFPP_METHODS, "FaceForensics++ manipulation methods to include "
                                                        "(absent ones are skipped)")
    celebdf_split: str = field("official", "Celeb-DF v2: 'official' keeps List_of_testing_videos.txt as the "
                                           "test split; 'identity' splits all videos by celebrity",
                               choices=("official", "identity"))
    video_exts: tuple[str, ...] = field(VIDEO_EXTS, "file extensions counted as videos")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.dataset not in ("auto",) + LAYOUTS:
            raise ConfigError(f"--dataset {self.dataset!r}: expected one of auto, {', '.join(LAYOUTS)}")
        ratios = tuple(self.split_ratios)
        if len(ratios) != 3 or any(r < 0 for r in ratios) or ratios[0] <= 0:
            raise ConfigError(f"--split-ratios {','.join(map(str, ratios))}: expected three fractions "
                              "train,val,test, none negative, train above 0 (e.g. 0.7,0.15,0.15)")
        if abs(sum(ratios) - 1.0) > 1e-3:
            raise ConfigError(f"--split-ratios {','.join(map(str, ratios))}: fractions must sum to 1 "
                              f"(they sum to {sum(ratios):g})")
        if self.ffpp_compression not in FFPP_COMPRESSIONS:
            raise ConfigError(f"--ffpp-compression {self.ffpp_compression!r}: expected one of "
                              f"{', '.join(FFPP_COMPRESSIONS)}")
        if self.celebdf_split not in ("official", "identity"):
            raise ConfigError(f"--celebdf-split {self.celebdf_split!r}: expected official or identity")
        if not self.video_exts or not all(str(e).startswith(".") for e in self.video_exts):
            raise ConfigError(f"--video-exts {','.join(self.video_exts)}: expected extensions like .mp4,.avi")
