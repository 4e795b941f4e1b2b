"""`/debug/pprof/`: the Python equivalents of Go's pprof pages.

- `profile?seconds=N`: CPU profile of the trio thread (pyinstrument with async_mode
  "disabled", so it samples the whole thread rather than one task). One profile at a time
  (409 while busy), N capped. Formats: text (default), speedscope JSON, pprof protobuf (gzip,
  `go tool pprof` reads it like the Go original's).
- `tasks`: the trio task tree from the root task through every child nursery, with each task's
  await stack (the goroutine dump's equivalent).
- `threads`: every thread's stack (`sys._current_frames()`).
- `heap`: top allocations from tracemalloc. Tracing starts on demand only (at boot it slows
  start-up many times over) and stops again after the snapshot (`keep=1` keeps it on): left
  running, it costs memory and CPU on every allocation for the rest of the process's life,
  so one visit could otherwise degrade the daemon for good. Snapshots are processed in a
  worker thread so the event loop never stalls.

Every query value is checked: a bad one is a 400 that says what is expected, never a 500.

Pages show code locations only, never local variables, so no secret can leak through them.
"""

from __future__ import annotations

import gzip
import re
import sys
import threading
import traceback
import tracemalloc
from typing import TYPE_CHECKING, Any

import trio
from quart import Blueprint, Response, request

if TYPE_CHECKING:
    from pyinstrument import Profiler

MAX_PROFILE_SECONDS = 60.0
MAX_HEAP_LIMIT = 500
_FLAGS = {"": False, "0": False, "false": False, "no": False, "1": True, "true": True, "yes": True}
_busy = False

pprof = Blueprint("pprof", __name__, url_prefix="/debug/pprof")

_INDEX = """<!doctype html><html><head><title>/debug/pprof/</title></head><body>
<h1>/debug/pprof/</h1><ul>
<li><a href="profile?seconds=5">profile?seconds=5</a> CPU profile, text
 (<a href="profile?seconds=5&format=speedscope">speedscope</a>,
 <a href="profile?seconds=5&format=pprof">pprof</a>)</li>
<li><a href="tasks">tasks</a> trio task tree with await stacks (like goroutine?debug=2)</li>
<li><a href="threads">threads</a> stacks of every thread</li>
<li><a href="heap">heap</a> top allocations (tracemalloc; the first visit starts tracing, the
 next shows the snapshot and stops it; <a href="heap?keep=1">keep=1</a> keeps tracing on,
 <a href="heap?stop=1">stop</a>; <code>limit=N</code>, 1-500)</li>
</ul></body></html>"""


def _text(body: str, status: int = 200) -> Response:
    return Response(body, status=status, mimetype="text/plain")


class BadQuery(ValueError):
    """A query parameter that cannot be used; the message is the 400's body."""


def _flag(name: str) -> bool:
    """`?name`, `?name=1` or `?name=true` -> True; absent, `0` or `false` -> False."""
    if name in request.args and not request.args[name].strip():
        return True
    value = request.args.get(name, "").strip().lower()
    if value not in _FLAGS:
        raise BadQuery(f"{name} must be 1/0/true/false\n")
    return _FLAGS[value]


def _int(name: str, default: int, low: int, high: int) -> int:
    value = request.args.get(name, "").strip() or str(default)
    if re.fullmatch(r"[0-9]{1,6}", value) is None or not low <= int(value) <= high:
        raise BadQuery(f"{name} must be an integer in [{low}, {high}]\n")
    return int(value)


@pprof.get("/")
async def index() -> Response:
    return Response(_INDEX, mimetype="text/html")


@pprof.get("/profile")
async def profile() -> Response:
    global _busy
    try:
        seconds = float(request.args.get("seconds", "30"))
    except ValueError:
        return _text("seconds must be a number\n", 400)
    if not 0 < seconds <= MAX_PROFILE_SECONDS:
        return _text(f"seconds must be in (0, {MAX_PROFILE_SECONDS:g}]\n", 400)
    fmt = request.args.get("format", "text")
    if fmt not in ("text", "speedscope", "pprof"):
        return _text("format must be text, speedscope or pprof\n", 400)
    if _busy:
        return _text("a profile is already running\n", 409)
    # Imported here: pyinstrument is only needed when someone profiles, not at start-up.
    from pyinstrument import Profiler
    from pyinstrument.renderers import SpeedscopeRenderer

    _busy = True
    try:
        profiler = Profiler(interval=0.001, async_mode="disabled")
        profiler.start()
        try:
            await trio.sleep(seconds)
        finally:
            session = profiler.stop()
    finally:
        _busy = False
    if fmt == "speedscope":
        return Response(
            SpeedscopeRenderer().render(session),
            mimetype="application/json",
            headers={"Content-Disposition": "attachment; filename=profile.speedscope.json"},
        )
    if fmt == "pprof":
        return Response(
            gzip.compress(_pprof_proto(profiler)),
            mimetype="application/octet-stream",
            headers={"Content-Disposition": "attachment; filename=profile.pb.gz"},
        )
    return _text(profiler.output_text(unicode=True, color=False, show_all=False))


def _task_lines(task: trio.lowlevel.Task, depth: int, out: list[str]) -> None:
    pad = "  " * depth
    out.append(f"{pad}task {task.name}")
    for frame, lineno in task.iter_await_frames():
        code = frame.f_code
        out.append(f"{pad}    {code.co_filename}:{lineno} in {code.co_name}")
    for nursery in task.child_nurseries:
        out.append(f"{pad}  nursery ({len(nursery.child_tasks)} tasks)")
        for child in sorted(nursery.child_tasks, key=lambda t: t.name):
            _task_lines(child, depth + 2, out)


@pprof.get("/tasks")
async def tasks() -> Response:
    out: list[str] = []
    root = trio.lowlevel.current_root_task()
    if root is not None:
        _task_lines(root, 0, out)
    return _text("\n".join(out) + "\n")


@pprof.get("/threads")
async def threads() -> Response:
    names = {t.ident: t.name for t in threading.enumerate()}
    out = []
    for ident, frame in sys._current_frames().items():
        out.append(f"thread {names.get(ident, '?')} ({ident}):")
        out.extend(line.rstrip("\n") for line in traceback.format_stack(frame))
        out.append("")
    return _text("\n".join(out))


def _heap_report(limit: int) -> str:
    snapshot = tracemalloc.take_snapshot().filter_traces(
        (tracemalloc.Filter(False, tracemalloc.__file__),)
    )
    stats = snapshot.statistics("lineno")
    current, peak = tracemalloc.get_traced_memory()
    lines = [f"traced: current {current / 1e6:.2f} MB, peak {peak / 1e6:.2f} MB", ""]
    lines += [str(stat) for stat in stats[:limit]]
    return "\n".join(lines) + "\n"


@pprof.get("/heap")
async def heap() -> Response:
    try:
        stop, keep = _flag("stop"), _flag("keep")
        limit = _int("limit", 50, 1, MAX_HEAP_LIMIT)
    except BadQuery as exc:
        return _text(str(exc), 400)
    if stop:
        tracemalloc.stop()
        return _text("tracemalloc stopped\n")
    if not tracemalloc.is_tracing():
        tracemalloc.start(10)
        return _text("tracemalloc started now; reload this page for the top allocations\n")
    try:
        report = await trio.to_thread.run_sync(_heap_report, limit)
    finally:
        if not keep:
            tracemalloc.stop()
    note = "tracing kept on (keep=1)" if keep else "tracing stopped; reload to start it again"
    return _text(f"{report}\n{note}\n")


# --- pprof protobuf (profile.proto), just enough for `go tool pprof` -----------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _int_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _packed(number: int, values: list[int]) -> bytes:
    return _field(number, b"".join(_varint(v) for v in values))


def _pprof_proto(profiler: Profiler) -> bytes:
    """Encode pyinstrument's call tree as a pprof Profile: one sample per leaf stack."""
    strings: dict[str, int] = {"": 0}

    def sid(text: str) -> int:
        return strings.setdefault(text, len(strings))

    functions: dict[tuple[str, str], int] = {}
    locations: dict[tuple[int, int], int] = {}
    samples: list[tuple[list[int], int]] = []
    interval_ns = int(profiler.interval * 1e9)

    def location(frame: Any) -> int:
        key = (frame.function or "?", frame.file_path or "?")
        fid = functions.setdefault(key, len(functions) + 1)
        return locations.setdefault((fid, frame.line_no or 0), len(locations) + 1)

    def walk(frame: Any, stack: list[int]) -> None:
        stack = [location(frame), *stack]
        self_time = frame.total_self_time
        if self_time > 0:
            samples.append((stack, int(self_time * 1e9)))
        for child in frame.children:
            walk(child, stack)

    root = profiler.last_session.root_frame() if profiler.last_session else None
    if root is not None:
        walk(root, [])
    body = bytearray()
    body += _field(1, _int_field(1, sid("cpu")) + _int_field(2, sid("nanoseconds")))
    for stack, value in samples:
        body += _field(2, _packed(1, stack) + _packed(2, [value]))
    for (fid, line), lid in locations.items():
        body += _field(4, _int_field(1, lid) + _field(4, _int_field(1, fid) + _int_field(2, line)))
    for (name, path), fid in functions.items():
        body += _field(5, _int_field(1, fid) + _int_field(2, sid(name)) + _int_field(4, sid(path)))
    for text in strings:  # dicts keep insertion order = string table order
        body += _field(6, text.encode())
    body += _field(11, _int_field(1, sid("cpu")) + _int_field(2, sid("nanoseconds")))
    body += _int_field(12, interval_ns)
    return bytes(body)
