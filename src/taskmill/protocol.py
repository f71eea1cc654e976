"""Messages between a worker and its child processes: length-prefixed JSON.

JSON rather than pickle (which multiprocessing would use) so that nothing a
task returns or a row contains is ever unpickled, and so that a child never needs
anything of its worker's memory: it is a fresh interpreter, or a fork of the fork
server, which holds no database socket and never imports the application.
"""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

from taskmill.errors import ProtocolError

_HEADER = struct.Struct("!I")
#: a message above this is refused; output and results are capped well below it
MAX_MESSAGE = 1024 * 1024 * 1024
#: defaults of the worker's --max-output-chars and --max-result-bytes: what a run row
#: keeps of a task's output (its tail), and the largest JSON result stored. Both stay
#: well below MariaDB's default max_allowed_packet (16 MiB), past which the write of
#: the outcome would fail again and again and hold up the worker's other results.
MAX_OUTPUT_CHARS = 1024 * 1024
MAX_RESULT_BYTES = 8 * 1024 * 1024


def encode_message(message: dict[str, Any]) -> bytes:
    data = json.dumps(message, separators=(",", ":")).encode()
    return _HEADER.pack(len(data)) + data


def send_message(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.sendall(encode_message(message))


def send_messages(sock: socket.socket, messages: list[dict[str, Any]]) -> None:
    """Several messages in one write: one wake-up of the reader, not one each."""
    sock.sendall(b"".join(encode_message(message) for message in messages))


def _recv_exactly(sock: socket.socket, size: int) -> bytes | None:
    """`size` bytes, or None if the other side has gone (end of file or reset)."""
    buffer = bytearray(size)
    view = memoryview(buffer)
    received = 0
    while received < size:
        try:
            count = sock.recv_into(view[received:], size - received)
        except ConnectionResetError:
            return None
        if count == 0:
            return None
        received += count
    return bytes(buffer)


def _body_size(header: bytes | memoryview, received: list[dict[str, Any] | None]) -> int:
    (size,) = _HEADER.unpack(header)
    if size > MAX_MESSAGE:
        raise ProtocolError(f"message of {size} bytes exceeds the limit", received=received)
    return int(size)


def recv_available(sock: socket.socket, chunk: int = 65536) -> list[dict[str, Any] | None]:
    """Every message that has arrived, in one read (a child running tasks back
    to back has often sent several "done" by the time its worker looks): waits for
    the first bytes, and for the rest of a message only begun, so that nothing is
    left behind in a buffer of ours where select() would not see it. [None]
    once the other side has gone. ProtocolError on garbage carries the
    messages read before it (`received`)."""
    try:
        data = sock.recv(chunk)
    except ConnectionResetError:
        data = b""
    if not data:
        return [None]
    buffer = memoryview(data)
    messages: list[dict[str, Any] | None] = []
    while buffer:
        if len(buffer) < _HEADER.size:
            rest = _recv_exactly(sock, _HEADER.size - len(buffer))
            if rest is None:
                return [*messages, None]
            buffer = memoryview(bytes(buffer) + rest)
        end = _HEADER.size + _body_size(buffer[: _HEADER.size], messages)
        if len(buffer) < end:
            rest = _recv_exactly(sock, end - len(buffer))
            if rest is None:
                return [*messages, None]
            buffer = memoryview(bytes(buffer) + rest)
        try:
            messages.append(_decode(buffer[_HEADER.size : end]))
        except (ProtocolError, ValueError) as exc:
            raise ProtocolError(str(exc), received=messages) from exc
        buffer = buffer[end:]
    return messages


def _decode(body: bytes | memoryview) -> dict[str, Any]:
    message = json.loads(bytes(body))
    if not isinstance(message, dict) or "type" not in message:
        raise ProtocolError(f"malformed message: {bytes(body[:200])!r}")
    return message


def recv_message(sock: socket.socket) -> dict[str, Any] | None:
    """The next message, or None when the other side has gone."""
    header = _recv_exactly(sock, _HEADER.size)
    if header is None:
        return None
    body = _recv_exactly(sock, _body_size(header, []))
    if body is None:
        return None
    return _decode(body)
