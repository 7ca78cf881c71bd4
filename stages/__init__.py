"""Stage one (decode, faces, backbone, extraction) and stage two (training)."""
