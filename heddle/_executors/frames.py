"""Messages on a worker's pipe, framed exactly as multiprocessing.Connection frames them.

The worker reads with a plain Connection; the driver writes and reads the frames
itself so that one readable event costs one read, however many messages it holds
(Connection.poll builds a selector per call, and recv reads each frame in two).
"""

from __future__ import annotations

import os
import pickle
import struct
from typing import Any

_SHORT = struct.Struct("!i")
_LONG = struct.Struct("!Q")
READ_SIZE = 1 << 20


def encode(message: Any) -> bytes:
    body = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
    n = len(body)
    if n > 0x7FFFFFFF:
        return _SHORT.pack(-1) + _LONG.pack(n) + body
    return _SHORT.pack(n) + body


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class FrameReader:
    """Reassembles the messages read from one file descriptor."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buf = bytearray()

    def pending(self) -> bool:
        """Whether part of a message has been read and the rest not yet."""
        return bool(self._buf)

    def read(self) -> list[Any]:
        """Read once (call when the descriptor is readable) and return every message now
        complete; raise EOFError when the other end has closed."""
        chunk = os.read(self.fd, READ_SIZE)
        if not chunk:
            raise EOFError
        buf = self._buf
        buf += chunk
        out = []
        pos, end = 0, len(buf)
        while end - pos >= 4:
            (n,) = _SHORT.unpack_from(buf, pos)
            head = 4
            if n == -1:
                if end - pos < 12:
                    break
                (n,) = _LONG.unpack_from(buf, pos + 4)
                head = 12
            if end - pos - head < n:
                break
            out.append(pickle.loads(buf[pos + head : pos + head + n]))
            pos += head + n
        if pos:
            del buf[:pos]
        return out
