"""Uploads: streamed to a private folder under a server-chosen name, limited in size, judged by their bytes.

The multipart body is parsed as it arrives (python-multipart's streaming parser), and the ``file`` field's
bytes go straight to ``<private folder>/<job id>/upload``: nothing is held in memory, nothing lands in a
shared temporary folder, and the upload is cut off with 413 as soon as it passes the limit. The client's file
name is kept as text to show back, never as part of a path or a command line. Whether it is a video is
decided by probing its bytes with ffmpeg (``stages.probe.probe``), never by its name or declared type.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header

from pipeline.core.errors import PipelineError
from stages.media import MediaError, not_a_file
from stages.probe import VideoInfo, probe

FIELD = "file"
UPLOAD = "upload"            # the server's name for every upload, inside the job's own folder
MULTIPART_SLACK = 64 * 1024  # headers, boundaries and small fields around the file in one body
NAME_LIMIT = 200             # characters of the client's file name kept for display


class UploadError(PipelineError):
    """An upload refused with an HTTP status and a one-line reason."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


@dataclass
class Received:
    path: Path
    bytes: int
    filename: str            # as the client named it, for display only


def display_name(raw: bytes | str | None) -> str:
    """The client's file name as plain one-line text (control characters dropped, length capped)."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else (raw or "")
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C")
    return text.replace("\\", "/").rsplit("/", 1)[-1][:NAME_LIMIT]


class UploadDir:
    """A private folder (mode 0700) holding one folder per job; removed whole by ``close``."""

    def __init__(self, parent: str | None = None):
        self.path = Path(tempfile.mkdtemp(prefix="deepfake-serve-", dir=parent or None))   # 0700 by mkdtemp

    def job_folder(self, job_id: str) -> Path:
        if not job_id.isalnum():                 # ids are server-made hex; never a client's string
            raise ValueError(f"not a job id: {job_id!r}")
        folder = self.path / job_id
        folder.mkdir(mode=0o700)
        return folder

    def remove(self, folder: Path) -> None:
        if folder.parent == self.path:
            shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


class _Sink:
    """python-multipart callbacks writing the ``file`` part to disk and counting its bytes."""

    def __init__(self, dest: Path, limit: int):
        self.dest, self.limit = dest, limit
        self.fd: int | None = None
        self.size, self.files, self.filename = 0, 0, ""
        self._header, self._value, self._headers = b"", b"", {}
        self._in_file = False

    def callbacks(self) -> dict:
        return {"on_part_begin": self.part_begin, "on_header_field": self.header_field,
                "on_header_value": self.header_value, "on_header_end": self.header_end,
                "on_headers_finished": self.headers_finished, "on_part_data": self.part_data,
                "on_part_end": self.part_end}

    def part_begin(self) -> None:
        self._headers, self._in_file = {}, False

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self._header += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def header_end(self) -> None:
        self._headers[self._header.strip().lower()] = self._value.strip()
        self._header, self._value = b"", b""

    def headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if options.get(b"name") != FIELD.encode():
            return                                # another field: read past it, keep nothing
        self.files += 1
        if self.files > 1:
            raise UploadError(400, f"send one video per request (field '{FIELD}' came twice)")
        self.filename = display_name(options.get(b"filename"))
        self.fd = os.open(self.dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._in_file = True

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if not self._in_file:
            return
        self.size += end - start
        if self.size > self.limit:
            raise UploadError(413, f"file over the limit of {self.limit / 1e6:g} MB")
        view = memoryview(data)[start:end]
        while view:
            view = view[os.write(self.fd, view):]

    def part_end(self) -> None:
        self._in_file = False

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


async def receive(content_type: str, content_length: str | None, body: AsyncIterator[bytes], dest: Path,
                  limit: int) -> Received:
    """Stream a multipart/form-data body's ``file`` field to ``dest`` (a new file); an ``UploadError``
    with its status when the body is not such a form, has no file, or the file passes ``limit`` bytes."""
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data" or not options.get(b"boundary"):
        raise UploadError(400, f"send the video as multipart/form-data in a field named '{FIELD}'")
    if content_length and content_length.isdigit() and int(content_length) > limit + MULTIPART_SLACK:
        raise UploadError(413, f"file over the limit of {limit / 1e6:g} MB")   # refused before reading it
    sink = _Sink(dest, limit)
    parser = MultipartParser(options[b"boundary"], sink.callbacks())
    received = 0
    try:
        async for chunk in body:
            received += len(chunk)
            if received > limit + MULTIPART_SLACK:
                raise UploadError(413, f"file over the limit of {limit / 1e6:g} MB")
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        raise UploadError(400, f"malformed multipart body: {str(exc).splitlines()[0]}") from None
    finally:
        sink.close()
    if not sink.files:
        raise UploadError(400, f"no field named '{FIELD}' in the form: send the video as '{FIELD}'")
    return Received(dest, sink.size, sink.filename)


def check_video(path: Path) -> VideoInfo:
    """What the bytes hold, or an ``UploadError``: 400 for an empty file, 415 for anything not a video."""
    why = not_a_file(path)
    if why:
        raise UploadError(400, why)
    try:
        return probe(path, timeout=120)
    except MediaError as exc:   # ffmpeg's words may name the file: the client sees "the upload" instead
        reason = str(exc).splitlines()[0].replace(str(path), "the upload")
        if reason.startswith("not a readable media file"):
            reason = "ffmpeg reads these bytes as no media format it knows"
        raise UploadError(415, f"not a video: {reason}") from None
