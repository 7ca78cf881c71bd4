"""Dataset adapters on miniature trees of each published layout (empty placeholder files: nothing is decoded)."""
from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.core.config import ConfigError
from pipeline.datasets import (DatasetConfig, DatasetError, VideoEntry, check_no_group_leak, detect_layout,
                               load_manifest, manifest_sha256, read_manifest, write_manifest)
from pipeline.core.errors import PipelineError


def touch(root: Path, *rels: str) -> None:
    for rel in rels:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"")


def by_id(entries: list[VideoEntry]) -> dict[str, VideoEntry]:
    return {e.video_id: e for e in entries}


def split_of_group(entries: list[VideoEntry]) -> dict[str, str]:
    out = {}
    for e in entries:
        assert out.setdefault(e.group, e.split) == e.split, f"group {e.group} spans two splits"
    return out


def write_csv(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


# ---- trees ------------------------------------------------------------------------------------------------
def ffpp_tree(root: Path, methods=("Deepfakes", "Face2Face"), c="c23") -> Path:
    touch(root, *(f"original_sequences/youtube/{c}/videos/{v}.mp4" for v in ("000", "001", "002", "003")))
    for m in methods:
        touch(root, *(f"manipulated_sequences/{m}/{c}/videos/{a}_{b}.mp4"
                      for a, b in (("000", "001"), ("001", "000"), ("002", "003"), ("003", "002"))))
    return root


def celebdf_tree(root: Path) -> Path:
    touch(root, "Celeb-real/id0_0000.mp4", "Celeb-real/id0_0001.mp4", "Celeb-real/id1_0000.mp4",
          "Celeb-real/id2_0000.mp4", "Celeb-real/id3_0000.mp4",
          "YouTube-real/00000.mp4", "YouTube-real/00001.mp4", "YouTube-real/00002.mp4",
          "Celeb-synthesis/id0_id1_0000.mp4", "Celeb-synthesis/id1_id0_0000.mp4",
          "Celeb-synthesis/id2_id3_0000.mp4", "Celeb-synthesis/id3_id2_0000.mp4",
          "Celeb-synthesis/id2_id1_0000.mp4")
    return root


def dfdc_tree(root: Path) -> Path:
    part0 = {"a.mp4": {"label": "REAL", "split": "train", "original": None},
             "b.mp4": {"label": "FAKE", "split": "train", "original": "a.mp4"},
             "c.mp4": {"label": "FAKE", "split": "train", "original": "a.mp4"},
             "d.mp4": {"label": "REAL", "split": "train", "original": None}}
    part1 = {"e.mp4": {"label": "FAKE", "split": "train", "original": "d.mp4"},
             "f.mp4": {"label": "FAKE", "split": "train", "original": "a.mp4"},   # original in another part
             "g.mp4": {"label": "REAL", "split": "train", "original": None}}
    for part, meta in (("dfdc_train_part_0", part0), ("dfdc_train_part_1", part1)):
        touch(root, *(f"{part}/{name}" for name in meta))
        (root / part / "metadata.json").write_text(json.dumps(meta))
    return root


# ---- folder -----------------------------------------------------------------------------------------------
def test_folder_layout_labels_any_depth_and_own_groups(tmp_path):
    touch(tmp_path, "real/a.mp4", "real/deep/er/b.avi", "real/c.mov", "real/notes.txt", "real/._a.mp4",
          "fake/x.mp4", "fake/Deepfakes/y.MP4", "fake/z.webm")
    entries = load_manifest(tmp_path, DatasetConfig(dataset="folder"))
    got = {e.video_id: e.label for e in entries}
    assert got == {"real/a.mp4": 0, "real/deep/er/b.avi": 0, "real/c.mov": 0,
                   "fake/x.mp4": 1, "fake/Deepfakes/y.MP4": 1, "fake/z.webm": 1}
    for e in entries:
        assert e.group == e.video_id and e.method == ""   # nothing guessed from folder names
        assert Path(e.path).is_absolute() and Path(e.path).is_file()
        assert e.split in ("train", "val", "test") and e.split_source == "seeded"


def test_folder_layout_already_split_keeps_its_splits(tmp_path):
    touch(tmp_path, "train/real/a.mp4", "train/fake/b.mp4", "Validation/real/c.mp4", "test/fake/d.mp4")
    assert detect_layout(tmp_path) == "folder"
    entries = by_id(load_manifest(tmp_path))
    assert {k: (e.label, e.split, e.split_source) for k, e in entries.items()} == {
        "train/real/a.mp4": (0, "train", "file"), "train/fake/b.mp4": (1, "train", "file"),
        "Validation/real/c.mp4": (0, "val", "file"), "test/fake/d.mp4": (1, "test", "file")}


# ---- auto-detection ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["folder", "csv", "ffpp", "celebdf", "dfdc"])
def test_auto_detection_finds_each_layout(tmp_path, layout):
    if layout == "folder":
        touch(tmp_path, "real/a.mp4", "fake/b.mp4")
    elif layout == "csv":   # the generated sample: manifest.csv beside real/ and fake/ -> csv wins
        touch(tmp_path, "real/a.mp4", "fake/b.mp4")
        write_csv(tmp_path / "manifest.csv", ["video_id,path,label,group,identity,sha256",
                                              "a,real/a.mp4,real,g0,p0,x", "b,fake/b.mp4,fake,g0,p0,y"])
    else:
        {"ffpp": ffpp_tree, "celebdf": celebdf_tree, "dfdc": dfdc_tree}[layout](tmp_path)
    assert detect_layout(tmp_path) == layout
    assert load_manifest(tmp_path)  # auto picks the same adapter and yields a full manifest


def test_csv_file_root_is_detected(tmp_path):
    touch(tmp_path, "v/a.mp4", "v/b.mp4")
    csv = write_csv(tmp_path / "labels.csv", ["filename,label", "v/a.mp4,REAL", "v/b.mp4,FAKE"])
    assert detect_layout(csv) == "csv"
    assert {e.video_id for e in load_manifest(csv)} == {"v/a.mp4", "v/b.mp4"}


def test_wrong_root_names_expected_and_found(tmp_path):
    touch(tmp_path, "videos/a.mp4", "readme.txt")
    with pytest.raises(DatasetError) as err:
        load_manifest(tmp_path)
    msg = str(err.value)
    assert "real/ and fake/" in msg and "original_sequences/" in msg and "metadata.json" in msg
    assert "videos/" in msg and "readme.txt" in msg
    assert isinstance(err.value, PipelineError)


def test_explicit_layout_on_wrong_root_says_what_was_found(tmp_path):
    touch(tmp_path, "real/a.mp4", "fake/b.mp4")
    wrong_ffpp = r"not a FaceForensics\+\+ root.*original_sequences.*found fake/, real/"
    with pytest.raises(DatasetError, match=wrong_ffpp):
        load_manifest(tmp_path, DatasetConfig(dataset="ffpp"))
    with pytest.raises(DatasetError, match="not a Celeb-DF v2 root"):
        load_manifest(tmp_path, DatasetConfig(dataset="celebdf"))
    with pytest.raises(DatasetError, match="not a DFDC root"):
        load_manifest(tmp_path, DatasetConfig(dataset="dfdc"))
    with pytest.raises(DatasetError, match="dataset root not found"):
        load_manifest(tmp_path / "nope")


# ---- csv --------------------------------------------------------------------------------------------------
def test_csv_seed_shape_filename_label_upper_case(tmp_path):
    touch(tmp_path, "a.mp4", "b.mp4", "c.mp4")
    csv = write_csv(tmp_path / "metadata.csv", ["filename,label", "a.mp4,REAL", "b.mp4,FAKE", "./c.mp4,Fake"])
    entries = by_id(load_manifest(csv))
    assert {k: e.label for k, e in entries.items()} == {"a.mp4": 0, "b.mp4": 1, "c.mp4": 1}
    assert entries["c.mp4"].path == str(tmp_path / "c.mp4")


@pytest.mark.parametrize("real,fake", [("real", "fake"), ("0", "1")])
def test_csv_seed_shape_video_id_filepath_label(tmp_path, real, fake):
    touch(tmp_path, "clips/a.mp4", "clips/b.mp4")
    absolute = tmp_path / "clips" / "b.mp4"
    csv = write_csv(tmp_path / "data.csv", ["video_id,filepath,label", f"vid_a,clips/a.mp4,{real}",
                                            f"vid_b,{absolute},{fake}"])
    entries = by_id(load_manifest(csv))
    assert entries["vid_a"].label == 0 and entries["vid_b"].label == 1
    assert entries["vid_a"].path == str(tmp_path / "clips" / "a.mp4") and entries["vid_b"].path == str(absolute)


def test_csv_sample_manifest_groups_and_given_splits(tmp_path):
    rows = ["video_id,path,label,group,identity,sha256"]
    for g in range(6):
        touch(tmp_path, f"real/r{g}.mp4", f"fake/f{g}.mp4")
        rows += [f"r{g},real/r{g}.mp4,real,g{g},p{g},0", f"f{g},fake/f{g}.mp4,fake,g{g},p{g},0"]
    write_csv(tmp_path / "manifest.csv", rows)
    entries = load_manifest(tmp_path)
    groups = split_of_group(entries)   # asserts the real and the fake of a group share a split
    assert set(groups) == {f"g{g}" for g in range(6)}
    for split in ("train", "val", "test"):
        assert {e.label for e in entries if e.split == split} == {0, 1}


def test_csv_split_column_and_named_columns(tmp_path):
    touch(tmp_path, "v/a.mp4", "v/b.mp4", "v/c.mp4")
    write_csv(tmp_path / "x.csv", ["clip,is_fake,fold", "a.mp4,0,train", "b.mp4,1,validation", "c.mp4,1,"])
    cfg = DatasetConfig(csv_path="clip", csv_label="is_fake", csv_split="fold", csv_video_dir=str(tmp_path / "v"))
    entries = by_id(load_manifest(tmp_path / "x.csv", cfg))
    assert entries["a.mp4"].split == "train" and entries["a.mp4"].split_source == "file"
    assert entries["b.mp4"].split == "val" and entries["b.mp4"].split_source == "file"
    assert entries["c.mp4"].split_source == "seeded"
    assert entries["c.mp4"].path == str(tmp_path / "v" / "c.mp4")
    with pytest.raises(DatasetError, match="no column 'nope'.*clip, is_fake, fold"):
        load_manifest(tmp_path / "x.csv", DatasetConfig(csv_label="nope"))


def test_csv_unknown_label_names_line_and_value(tmp_path):
    write_csv(tmp_path / "m.csv", ["path,label", "a.mp4,real", "b.mp4,maybe"])
    with pytest.raises(DatasetError, match=r"line 3: unknown label 'maybe'"):
        load_manifest(tmp_path / "m.csv")


def test_csv_without_label_column_lists_columns(tmp_path):
    write_csv(tmp_path / "m.csv", ["path,kind", "a.mp4,real"])
    with pytest.raises(DatasetError, match="no label column.*columns are path, kind"):
        load_manifest(tmp_path / "m.csv")


def test_missing_file_is_kept_and_counted(tmp_path, caplog):
    touch(tmp_path, "a.mp4", "b.mp4")
    write_csv(tmp_path / "m.csv", ["path,label", "a.mp4,real", "b.mp4,fake", "gone.mp4,fake", "gone2.mp4,real"])
    with caplog.at_level(logging.WARNING):
        entries = by_id(load_manifest(tmp_path / "m.csv"))
    assert "gone.mp4" in entries and not Path(entries["gone.mp4"].path).exists()
    assert any("2 listed video(s) are missing" in r.getMessage() for r in caplog.records)


def test_duplicate_ids_are_an_error(tmp_path):
    write_csv(tmp_path / "m.csv", ["video_id,path,label", "x,a.mp4,real", "x,b.mp4,fake"])
    with pytest.raises(DatasetError, match="duplicate video id.*x"):
        load_manifest(tmp_path / "m.csv")


def test_csv_declared_split_that_leaks_fails_loudly(tmp_path):
    write_csv(tmp_path / "m.csv", ["path,label,group,split", "a.mp4,real,p1,train", "b.mp4,fake,p1,test"])
    with pytest.raises(DatasetError, match=r"1 group\(s\) span more than one split.*p1 \(train, test\)"):
        load_manifest(tmp_path / "m.csv")


# ---- FaceForensics++ --------------------------------------------------------------------------------------
def test_ffpp_labels_groups_methods_and_pairs(tmp_path):
    entries = by_id(load_manifest(ffpp_tree(tmp_path), DatasetConfig(dataset="ffpp")))
    assert len(entries) == 4 + 2 * 4
    orig = entries["original_sequences/youtube/c23/videos/000.mp4"]
    fake = entries["manipulated_sequences/Deepfakes/c23/videos/000_001.mp4"]
    assert (orig.label, orig.group, orig.method) == (0, "000", "")
    assert (fake.label, fake.group, fake.method) == (1, "000", "Deepfakes")   # fake A_B -> group of A
    assert entries["manipulated_sequences/Face2Face/c23/videos/003_002.mp4"].group == "003"
    groups = split_of_group(list(entries.values()))
    # A and B of a pair land together (B's face is in A_B), as FF++'s own pair splits keep them.
    assert groups["000"] == groups["001"] and groups["002"] == groups["003"]
    assert {e.split_source for e in entries.values()} == {"seeded"}


def test_ffpp_official_split_files_are_honoured(tmp_path):
    ffpp_tree(tmp_path)
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "train.json").write_text(json.dumps([["002", "003"]]))
    (tmp_path / "splits" / "val.json").write_text(json.dumps([]))
    (tmp_path / "splits" / "test.json").write_text(json.dumps([["000", "001"]]))
    entries = by_id(load_manifest(tmp_path))
    for vid, e in entries.items():
        want = "test" if e.group in ("000", "001") else "train"
        assert (e.split, e.split_source) == (want, "official"), vid


def test_ffpp_compression_and_method_options(tmp_path):
    ffpp_tree(tmp_path, methods=("Deepfakes", "FaceSwap"))
    entries = load_manifest(tmp_path, DatasetConfig(ffpp_methods=("FaceSwap", "NeuralTextures")))
    assert {e.method for e in entries if e.label == 1} == {"FaceSwap"}
    with pytest.raises(DatasetError, match="compression c40.*found original_sequences/youtube/ holding c23/"):
        load_manifest(tmp_path, DatasetConfig(ffpp_compression="c40"))
    with pytest.raises(DatasetError, match="expected one of Face2Face; found Deepfakes, FaceSwap"):
        load_manifest(tmp_path, DatasetConfig(ffpp_methods=("Face2Face",)))


def test_ffpp_deepfakedetection_groups_by_actor(tmp_path):
    ffpp_tree(tmp_path, methods=("Deepfakes",))
    touch(tmp_path, "original_sequences/actors/c23/videos/01__exit_phone_room.mp4",
          "original_sequences/actors/c23/videos/02__walking.mp4",
          "manipulated_sequences/DeepFakeDetection/c23/videos/01_02__exit_phone_room__YVGY8LOK.mp4")
    entries = by_id(load_manifest(tmp_path))
    dfd = entries["manipulated_sequences/DeepFakeDetection/c23/videos/01_02__exit_phone_room__YVGY8LOK.mp4"]
    assert (dfd.label, dfd.group, dfd.method) == (1, "actors/01", "DeepFakeDetection")
    assert entries["original_sequences/actors/c23/videos/02__walking.mp4"].group == "actors/02"


def test_ffpp_badly_named_fake_is_an_error(tmp_path):
    ffpp_tree(tmp_path, methods=("Deepfakes",))
    touch(tmp_path, "manipulated_sequences/Deepfakes/c23/videos/weird.mp4")
    with pytest.raises(DatasetError, match="do not follow the FF\\+\\+ naming.*weird.mp4"):
        load_manifest(tmp_path)


# ---- Celeb-DF v2 ------------------------------------------------------------------------------------------
def test_celebdf_labels_groups_and_official_test_list(tmp_path):
    celebdf_tree(tmp_path)
    (tmp_path / "List_of_testing_videos.txt").write_text(
        "1 Celeb-real/id2_0000.mp4\n1 YouTube-real/00000.mp4\n0 Celeb-synthesis/id2_id3_0000.mp4\n"
        "0 Celeb-synthesis/id2_id1_0000.mp4\n")
    entries = by_id(load_manifest(tmp_path))
    test = {k for k, e in entries.items() if e.split == "test"}
    assert test == {"Celeb-real/id2_0000.mp4", "YouTube-real/00000.mp4", "Celeb-synthesis/id2_id3_0000.mp4",
                    "Celeb-synthesis/id2_id1_0000.mp4"}
    assert all(entries[k].split_source == "official" for k in test)
    assert all(e.split in ("train", "val") and e.split_source == "seeded"
               for k, e in entries.items() if k not in test)
    fake = entries["Celeb-synthesis/id0_id1_0000.mp4"]
    assert (fake.label, fake.group, fake.method) == (1, "id0", "Celeb-synthesis")
    assert entries["Celeb-real/id0_0001.mp4"].group == "id0"
    assert entries["YouTube-real/00001.mp4"].group == "YouTube-real/00001.mp4"


def test_celebdf_official_list_sharing_identities_drops_the_leaking_rest(tmp_path, caplog):
    celebdf_tree(tmp_path)   # the real list covers nearly every celebrity: rest of id0 cannot train
    (tmp_path / "List_of_testing_videos.txt").write_text("1 Celeb-real/id0_0000.mp4\n1 Celeb-real/gone/x.mp4\n"
                                                         "0 Celeb-synthesis/id3_id2_0009.mp4\n")
    with pytest.raises(DatasetError, match="Celeb-real/gone/x.mp4"):
        load_manifest(tmp_path)
    (tmp_path / "List_of_testing_videos.txt").write_text("1 Celeb-real/id0_0000.mp4\n"
                                                         "0 Celeb-synthesis/id3_id2_0009.mp4\n")
    with caplog.at_level(logging.WARNING):
        entries = by_id(load_manifest(tmp_path))
    assert "Celeb-real/id0_0001.mp4" not in entries and "Celeb-synthesis/id0_id1_0000.mp4" not in entries
    assert entries["Celeb-synthesis/id3_id2_0009.mp4"].split == "test"   # listed, missing: kept
    assert any("shares 2 identities with 4 other videos" in r.getMessage() for r in caplog.records)
    everything = load_manifest(tmp_path, DatasetConfig(celebdf_split="identity"))
    assert len(everything) == 13 and {e.split_source for e in everything} == {"seeded"}


def test_celebdf_test_list_number_convention_is_checked(tmp_path, caplog):
    celebdf_tree(tmp_path)
    (tmp_path / "List_of_testing_videos.txt").write_text("0 YouTube-real/00000.mp4\n"
                                                         "1 Celeb-synthesis/id2_id1_0000.mp4\n")
    with caplog.at_level(logging.WARNING):
        entries = by_id(load_manifest(tmp_path))
    assert entries["Celeb-synthesis/id2_id1_0000.mp4"].label == 1   # labels come from the folders
    assert any("all lines use 0 = real" in r.getMessage() for r in caplog.records)
    (tmp_path / "List_of_testing_videos.txt").write_text("2 YouTube-real/00000.mp4\n")
    with pytest.raises(DatasetError, match="line 1"):
        load_manifest(tmp_path)


# ---- DFDC -------------------------------------------------------------------------------------------------
def test_dfdc_fakes_join_their_originals_group(tmp_path, caplog):
    dfdc_tree(tmp_path)
    touch(tmp_path, "dfdc_train_part_1/unlisted.mp4")
    (tmp_path / "dfdc_train_part_0" / "c.mp4").unlink()
    with caplog.at_level(logging.WARNING):
        entries = by_id(load_manifest(tmp_path, DatasetConfig(dataset="dfdc")))
    assert {k: (e.label, e.group) for k, e in entries.items()} == {
        "dfdc_train_part_0/a.mp4": (0, "a"), "dfdc_train_part_0/b.mp4": (1, "a"),
        "dfdc_train_part_0/c.mp4": (1, "a"), "dfdc_train_part_0/d.mp4": (0, "d"),
        "dfdc_train_part_1/e.mp4": (1, "d"), "dfdc_train_part_1/f.mp4": (1, "a"),
        "dfdc_train_part_1/g.mp4": (0, "g")}
    split_of_group(list(entries.values()))
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "1 listed video(s) are missing" in messages and "1 video(s) on disk are not in any" in messages


def test_dfdc_unknown_label_names_file_and_entry(tmp_path):
    touch(tmp_path, "x.mp4")
    (tmp_path / "metadata.json").write_text(json.dumps({"x.mp4": {"label": "DUNNO"}}))
    with pytest.raises(DatasetError, match=r"metadata.json, entry 'x.mp4': unknown label 'DUNNO'"):
        load_manifest(tmp_path)


# ---- manifest file, hash, checks, config ------------------------------------------------------------------
def test_manifest_round_trip_and_hash(tmp_path):
    entries = load_manifest(ffpp_tree(tmp_path / "data"))
    out = write_manifest(entries, tmp_path / "store.h5.manifest.csv")
    assert out.read_text().splitlines()[0] == "video_id,path,label,split,group,method,split_source"
    assert read_manifest(out) == entries
    assert manifest_sha256(entries) == manifest_sha256(out) == manifest_sha256(list(reversed(entries)))
    odd = [VideoEntry('dir, "quoted"/a.mp4', '/x/dir, "quoted"/a.mp4', 1, "val", "id 1", "Face2Face", "file"),
           VideoEntry("b\u00e9.mp4", "/x/b\u00e9.mp4", 0, "test", "b\u00e9.mp4", "", "")]
    assert read_manifest(write_manifest(odd, tmp_path / "odd.csv")) == odd[::-1]   # rows sorted by video id
    moved = [replace(entries[0], split="val" if entries[0].split != "val" else "test")] + entries[1:]
    assert manifest_sha256(moved) != manifest_sha256(entries)


def test_read_manifest_rejects_bad_files(tmp_path):
    write_csv(tmp_path / "m.csv", ["video_id,path,label", "a,/a.mp4,0"])
    with pytest.raises(DatasetError, match="missing column.*split, group, method"):
        read_manifest(tmp_path / "m.csv")
    write_csv(tmp_path / "m.csv", ["video_id,path,label,split,group,method", "a,/a.mp4,fake,train,g,"])
    with pytest.raises(DatasetError, match="line 2: label 'fake' is not 0 or 1"):
        read_manifest(tmp_path / "m.csv")


def test_check_no_group_leak_lists_offending_groups():
    entries = [VideoEntry("a", "/a", 0, "train", "p1"), VideoEntry("b", "/b", 1, "test", "p1"),
               VideoEntry("c", "/c", 0, "val", "p2"), VideoEntry("d", "/d", 1, "val", "p2"),
               VideoEntry("e", "/e", 1, "val", "p3"), VideoEntry("f", "/f", 1, "train", "p3")]
    with pytest.raises(DatasetError, match=r"2 group\(s\).*p1 \(train, test\); p3 \(train, val\)"):
        check_no_group_leak(entries)
    check_no_group_leak(entries[2:4])


@pytest.mark.parametrize("ratios", [(0.5, 0.5), (0.7, 0.2, 0.2), (0.0, 0.5, 0.5), (0.8, -0.1, 0.3)])
def test_bad_split_ratios_are_config_errors(ratios):
    with pytest.raises(ConfigError, match="split-ratios"):
        DatasetConfig(split_ratios=ratios)


def test_split_options_reach_the_split(tmp_path):
    touch(tmp_path, *(f"real/r{i}.mp4" for i in range(10)), *(f"fake/f{i}.mp4" for i in range(10)))
    counts = defaultdict(int)
    for e in load_manifest(tmp_path, DatasetConfig(split_ratios=(0.6, 0.2, 0.2))):
        counts[e.split] += 1
    assert dict(counts) == {"train": 12, "val": 4, "test": 4}
    a = load_manifest(tmp_path, DatasetConfig(split_seed=1))
    b = load_manifest(tmp_path, DatasetConfig(split_seed=2))
    assert [e.split for e in a] != [e.split for e in b]
