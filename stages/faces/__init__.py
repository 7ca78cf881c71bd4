"""Faces: batched MTCNN detection (PyTorch, the mtcnn package's weights), subject tracking, square crops.

    det = FaceDetector(FaceConfig(), device="cpu")
    dets = det.detect(frames)                           # (B, H, W, 3) uint8 -> list of B Detections
    track = select_subject(dets, frame_hw=(H, W), cfg=cfg)
    crops, valid = crop_faces(frames, track, crop=224, margin=cfg.margin, fallback=cfg.fallback)
"""
from stages.faces.crop import crop_faces
from stages.faces.config import Detections, FaceConfig
from stages.faces.detector import FaceDetector, FaceError
from stages.faces.track import Track, select_subject

__all__ = ["Detections", "FaceConfig", "FaceDetector", "FaceError", "Track", "crop_faces", "select_subject"]
