"""Trace files: JSON, gzip-compressed when the name ends in .gz; reading refuses anything that fails the schema.

Reading is bounded: the file's size is checked before it is opened, gzip is decompressed in a streaming way and cut at
TraceCaps.json_bytes, values are counted before parsing and declared shapes checked before any array is built. A
hostile file costs at most about 9 x TraceCaps.json_bytes of memory while it is read (measured worst case: one long
string holding a 4-byte character, which Python stores at 4 bytes a character; 4 M empty lists cost 270 MB, 4 M
floats 155 MB)."""
from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np

from engine.decoding.trace import Trace, TraceFormatError
from engine.decoding.trace_checks import TraceCaps, check_declared_shapes, check_drawable, check_json_size

GZIP_MAGIC = b"\x1f\x8b"


def trace_json(trace: Trace) -> dict:
    """The trace as a strict-JSON-ready dict: non-finite floats (none in a trace the engine records) become null,
    which reads back as NaN."""
    obj = trace.to_dict()
    for name, array in trace.arrays.items():
        if array.dtype.kind == "f" and not _all_finite(array):
            obj["arrays"][name]["data"] = [x if math.isfinite(x) else None for x in obj["arrays"][name]["data"]]
    obj["meta"] = strict_json(obj["meta"])
    return obj


def strict_json(value: object) -> object:
    """A copy of a JSON-able value with NaN and infinities replaced by None (strict JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def save_trace(trace: Trace, path: str | Path) -> Path:
    """Write strict JSON (gzip-compressed when the name ends in .gz); floats round-trip exactly."""
    path = Path(path)
    text = json.dumps(trace_json(trace), separators=(",", ":"), allow_nan=False)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))
    else:
        path.write_text(text, encoding="utf-8")
    return path


def load_trace(path: str | Path, max_bytes: int = 200 * 2**20, caps: TraceCaps = TraceCaps()) -> Trace:
    """Read a trace written by save_trace; anything else, or anything over `caps`, raises TraceFormatError with the
    reason. max_bytes caps the file as stored (compressed or not)."""
    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise TraceFormatError(f"trace file is {size / 2**20:.0f} MB; the limit is {max_bytes / 2**20:.0f} MB")
    text = _read_capped(path, caps.json_bytes)
    check_json_size(text, caps)
    try:
        obj = json.loads(text.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise TraceFormatError(f"not a readable JSON trace ({type(err).__name__}: {str(err)[:200]})") from None
    check_declared_shapes(obj, caps)
    trace = Trace.from_dict(obj)
    check_drawable(trace)
    return trace


def _read_capped(path: Path, cap: int) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic; at most cap bytes are ever held."""
    with path.open("rb") as raw:
        compressed = raw.read(2) == GZIP_MAGIC
    try:
        opener = gzip.open if compressed else open
        with opener(path, "rb") as stream:
            text = stream.read(cap + 1)  # gzip decompresses incrementally: never more than cap + 1 bytes out
    except (OSError, EOFError) as err:
        raise TraceFormatError(f"not a readable JSON trace: the gzip data is broken ({err})") from None
    if len(text) > cap:
        kind = "unpacks to" if compressed else "holds"
        raise TraceFormatError(f"trace {kind} more than {cap / 2**20:.0f} MB of JSON; the limit is "
                               f"{cap / 2**20:.0f} MB (a gen-1024 trace of this app is about 13 MB)")
    return text


def _refuse_constant(name: str) -> None:
    raise TraceFormatError(f"the trace holds {name}, which strict JSON does not allow")


def _all_finite(array: np.ndarray) -> bool:
    return bool(np.isfinite(array).all())
