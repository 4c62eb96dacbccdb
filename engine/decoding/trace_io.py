"""Trace files: JSON, gzip-compressed when the name ends in .gz; reading refuses anything that fails the schema."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

from engine.decoding.trace import Trace, TraceFormatError


def save_trace(trace: Trace, path: str | Path) -> Path:
    """Write JSON (gzip-compressed when the name ends in .gz); floats round-trip exactly."""
    path = Path(path)
    text = json.dumps(trace.to_dict(), separators=(",", ":"))
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))
    else:
        path.write_text(text, encoding="utf-8")
    return path


def load_trace(path: str | Path, max_bytes: int = 200 * 2**20) -> Trace:
    """Read a trace written by save_trace; anything else raises TraceFormatError with the reason."""
    path = Path(path)
    if path.stat().st_size > max_bytes:
        raise TraceFormatError(f"trace file is {path.stat().st_size / 2**20:.0f} MB; the limit is "
                               f"{max_bytes / 2**20:.0f} MB")
    raw = path.read_bytes()
    try:
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        obj = json.loads(raw.decode("utf-8"))
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise TraceFormatError(f"not a readable JSON trace ({type(err).__name__}: {err})") from None
    return Trace.from_dict(obj)
