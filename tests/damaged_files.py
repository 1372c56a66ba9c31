"""Files damaged the way a bad disk or copy damages them: one bit flipped inside a file torch.save wrote."""

from __future__ import annotations

import zipfile
from pathlib import Path


def flip_one_bit(path: Path, member: str) -> Path:
    """Flip one bit in the middle of the zip member whose name ends with `member` (`data.pkl`, or `data/0`: a
    tensor's storage). The archive still opens; only the member's CRC-32 tells."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith(member))
    header = info.header_offset  # local header: 30 bytes, then the name and the extra field, then the data
    start = header + 30 + int.from_bytes(data[header + 26 : header + 28], "little")
    start += int.from_bytes(data[header + 28 : header + 30], "little")
    data[start + info.file_size // 2] ^= 0x01
    path.write_bytes(bytes(data))
    return path
