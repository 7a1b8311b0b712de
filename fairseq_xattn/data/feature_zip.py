"""Features stored the way fairseq's S2T recipes store them: ``.npy`` arrays inside one
uncompressed (ZIP_STORED) zip, referenced from the TSV as ``<zip>:<byte offset>:<byte length>``.

fairseq's loader (``fairseq.data.audio.audio_utils.get_features_or_waveform``) mmaps exactly that
byte range and ``np.load``s it, so the offset must point at the npy data itself, past the zip
entry's local header (30 bytes + file name + extra field).
"""
from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path
from typing import Dict, Iterable, Tuple, Union

import numpy as np

_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")  # 30 bytes; the last two are name and extra lengths


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


class FeatureZipWriter:
    """Append ``<utt_id>.npy`` entries to an uncompressed zip."""

    def __init__(self, path: Union[str, Path]):
        self.path = Path(path)
        self._zip = zipfile.ZipFile(self.path, "w", compression=zipfile.ZIP_STORED, allowZip64=True)
        self._names = set()

    def add(self, key: str, features: np.ndarray) -> None:
        """Store ``features`` as entry ``<key>.npy`` (``key`` may contain "/", e.g. "train/utt1")."""
        name = f"{key}.npy"
        if name in self._names:
            raise ValueError(f"duplicate entry {key!r} written to {self.path}")
        self._names.add(name)
        info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # fixed time: reproducible bytes
        info.compress_type = zipfile.ZIP_STORED
        self._zip.writestr(info, npy_bytes(features))

    def close(self) -> None:
        self._zip.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def zip_manifest(path: Union[str, Path], reference: str) -> Dict[str, str]:
    """entry key (file name without ``.npy``) -> ``"<reference>:<offset>:<length>"`` for every entry.

    ``reference`` is how the zip is named in the TSV (e.g. ``fbank80.zip``, relative to the data
    directory).  Each range is checked to start with the npy magic bytes.
    """
    path = Path(path)
    out = {}
    with zipfile.ZipFile(path) as z, open(path, "rb") as f:
        for info in z.infolist():
            if info.compress_type != zipfile.ZIP_STORED:
                raise ValueError(f"{path}: entry {info.filename} is compressed; fairseq needs a stored zip")
            f.seek(info.header_offset)
            fields = _LOCAL_HEADER.unpack(f.read(_LOCAL_HEADER.size))
            if fields[0] != b"PK\x03\x04":
                raise ValueError(f"{path}: bad local header for entry {info.filename}")
            offset = info.header_offset + _LOCAL_HEADER.size + fields[-2] + fields[-1]
            f.seek(offset)
            if f.read(6) != b"\x93NUMPY":
                raise ValueError(f"{path}: entry {info.filename} is not a .npy array")
            if not info.filename.endswith(".npy"):
                raise ValueError(f"{path}: entry {info.filename} is not a .npy file")
            out[info.filename[: -len(".npy")]] = f"{reference}:{offset}:{info.file_size}"
    return out


def parse_zip_reference(ref: str) -> Tuple[str, int, int]:
    """``"a/b.zip:123:456"`` -> ("a/b.zip", 123, 456); raises ValueError otherwise."""
    parts = ref.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        raise ValueError(f"not a '<zip>:<offset>:<length>' reference: {ref!r}")
    return parts[0], int(parts[1]), int(parts[2])


def read_npy_shape(f, offset: int, length: int) -> Tuple[int, ...]:
    """Shape of the npy array stored at ``offset`` in the open binary file ``f`` (header only)."""
    f.seek(offset)
    head = f.read(min(length, 4096))
    buf = io.BytesIO(head)
    fmt = np.lib.format
    version = fmt.read_magic(buf)
    read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
    shape, _, _ = read_header(buf)
    return tuple(shape)


def iter_npy_shapes(refs: Iterable[Tuple[str, int, int]]):
    """Yield the shape of each (zip path, offset, length), keeping the zip files open in between."""
    handles = {}
    try:
        for zpath, off, length in refs:
            if zpath not in handles:
                handles[zpath] = open(zpath, "rb")
            yield read_npy_shape(handles[zpath], off, length)
    finally:
        for h in handles.values():
            h.close()
