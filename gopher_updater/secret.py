"""Secrets: a string that refuses to be printed, and the one way to read one from a file.

Kubernetes and Docker hand secrets to a container as files; several variables accept either
the value (`NAME`) or a path (`NAME_FILE`). Reading such a file is where start-up can hang or
leak: a FIFO blocks `open()` forever, a directory or `/dev/zero` never ends, and a decoding
error message quotes the very bytes it could not decode. `read_secret_file` is written so none
of that can happen, and its errors (`SecretFileError`) say what is wrong with the *file* and
never anything about its content.
"""

from __future__ import annotations

import hmac
import os
import stat
from typing import Generic, TypeVar

T = TypeVar("T", str, bytes)

#: Far above any token or password; a file bigger than this is the wrong file.
MAX_SECRET_FILE_BYTES = 64 * 1024


class Hidden(Generic[T]):
    """A value that refuses to be printed: repr/str/format never show it."""

    __slots__ = ("_value",)
    _value: T

    def __init__(self, value: T) -> None:
        self._value = value

    def reveal(self) -> T:
        return self._value

    def __repr__(self) -> str:
        return f"{type(self).__name__}('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Hidden) or type(other._value) is not type(self._value):
            return False
        mine, theirs = self._value, other._value
        if isinstance(mine, str) and isinstance(theirs, str):  # non-ASCII str: compare bytes
            return hmac.compare_digest(mine.encode(), theirs.encode())
        return hmac.compare_digest(mine, theirs)

    def __hash__(self) -> int:
        return hash(self._value)


class Secret(Hidden[str]):
    """A password, token or credential-bearing URL read from the environment."""

    __slots__ = ()


class SecretFileError(ValueError):
    """Why a secret file cannot be used; the message never quotes the file's content."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        shown = path if len(path) <= 120 else path[:117] + "..."
        super().__init__(f"{shown!r}: {reason}")


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def read_secret_file(
    path: str, *, exact: bool = False, max_bytes: int = MAX_SECRET_FILE_BYTES
) -> Secret:
    """The UTF-8 content of the regular file at `path`, as a `Secret`.

    `exact=False` strips trailing CR/LF (what `echo token > file` and `kubectl create secret
    --from-file` leave behind); `exact=True` keeps every byte, for tokens compared byte for
    byte (HMAC keys). Raises `SecretFileError` for a missing, unreadable, non-regular, huge,
    non-UTF-8 or empty file. Opened with O_NONBLOCK, so a FIFO cannot stall start-up.
    """
    if "\x00" in path:
        raise SecretFileError(path, "the path contains a NUL character")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise SecretFileError(path, f"cannot open: {exc.strerror or 'error'}") from None
    except ValueError:  # a path the file system encoding cannot express (lone surrogates)
        raise SecretFileError(path, "cannot open: the path is not valid text") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise SecretFileError(path, f"is {_kind(mode)}, expected a regular file")
        chunks: list[bytes] = []
        size = 0
        while size <= max_bytes:
            chunk = os.read(fd, max_bytes + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise SecretFileError(path, f"cannot read: {exc.strerror or 'error'}") from None
    finally:
        os.close(fd)
    if size > max_bytes:
        raise SecretFileError(path, f"is larger than {max_bytes // 1024} KiB")
    try:
        text = b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError:
        # The exception's own text quotes the offending byte: never show it.
        raise SecretFileError(path, "is not UTF-8 text") from None
    if not exact:
        text = text.rstrip("\r\n")
    if not text.strip():
        raise SecretFileError(path, "is empty" if not text else "holds only whitespace")
    return Secret(text)
