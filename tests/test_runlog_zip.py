"""Run-log zips (issue 16, item 3): bytes counted as they are unpacked and stopped at the cap with bounded memory,
members that lie about their sizes or use bzip2 refused, table sizes checked before reading, and the unpacked folder
gone on every path."""
import struct
import tracemalloc
import zipfile

import pytest

from engine.uds.runlog_io import RunLogFormatError
from engine.uds.runlog_zip import RUNLOG_FILES, ZipCaps, export_runlog_zip, import_runlog_zip

MiB = 2**20


@pytest.fixture(scope="module")
def good_zip(uds_runlogs, tmp_path_factory):
    return export_runlog_zip(uds_runlogs["random"], tmp_path_factory.mktemp("zips"))


def rezip(source, target, replace=None, compression=zipfile.ZIP_DEFLATED):
    """The run log's members into a new zip, some of them replaced by other bytes."""
    replace = replace or {}
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", compression=compression) as new:
        for name in RUNLOG_FILES:
            new.writestr(name, replace.get(name, old.read(name)))
    return target


def lie_about_sizes(path, member: str, declared: int):
    """Rewrite `member`'s uncompressed size in its local header and in the central directory."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
    struct.pack_into("<I", data, info.header_offset + 22, declared)  # local file header
    central = data.find(b"PK\x01\x02")
    while central >= 0:
        name_length = struct.unpack_from("<H", data, central + 28)[0]
        if bytes(data[central + 46:central + 46 + name_length]) == member.encode():
            struct.pack_into("<I", data, central + 24, declared)
            break
        central = data.find(b"PK\x01\x02", central + 4)
    path.write_bytes(bytes(data))
    return path


def read(path, work_dir, **caps):
    return import_runlog_zip(path, work_dir, ZipCaps(**caps))


def test_a_run_log_round_trips_and_leaves_nothing_behind(good_zip, uds_runlogs, tmp_path):
    assert read(good_zip, tmp_path).equals(uds_runlogs["random"])
    assert list(tmp_path.iterdir()) == []


def test_unpacking_stops_at_the_cap_with_bounded_memory(good_zip, tmp_path):
    big = rezip(good_zip, tmp_path / "big.zip", {"embeddings.npy": b"\0" * (32 * MiB)})  # ~32 KB deflated
    work = tmp_path / "work"
    work.mkdir()
    tracemalloc.start()
    with pytest.raises(RunLogFormatError, match="unpacks to more than 4 MB"):
        read(big, work, max_unzipped_bytes=4 * MiB)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 * MiB, f"unpacking held {peak / MiB:.1f} MB"
    assert list(work.iterdir()) == []


def test_a_member_lying_about_its_size_is_refused_and_cleaned_up(good_zip, tmp_path):
    lying = lie_about_sizes(rezip(good_zip, tmp_path / "lying.zip", {"embeddings.npy": b"\0" * (8 * MiB)}),
                            "embeddings.npy", 1000)
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(RunLogFormatError, match="not a readable zip file .*Bad CRC-32"):
        read(lying, work)
    assert list(work.iterdir()) == []


def test_bzip2_members_are_refused_before_reading(good_zip, tmp_path):
    bz = rezip(good_zip, tmp_path / "bz.zip", compression=zipfile.ZIP_BZIP2)
    with pytest.raises(RunLogFormatError, match="use a compression other than deflate"):
        read(bz, tmp_path)


def test_table_sizes_are_checked_before_reading(good_zip, uds_runlogs, tmp_path):
    candidates = len(uds_runlogs["random"].candidates)
    with pytest.raises(RunLogFormatError, match=f"candidates.parquet has {candidates} rows, over the 10"):
        read(good_zip, tmp_path, max_rows=10)
    with pytest.raises(RunLogFormatError, match="strips.parquet holds .* values, over the 100"):
        read(good_zip, tmp_path, max_strip_values=100)
    assert list(tmp_path.iterdir()) == []


def test_other_archives_are_refused_with_the_reason(good_zip, tmp_path):
    extra = tmp_path / "extra.zip"
    with zipfile.ZipFile(good_zip) as old, zipfile.ZipFile(extra, "w") as new:
        for name in RUNLOG_FILES:
            new.writestr(name, old.read(name))
        new.writestr("../evil.sh", "rm -rf /")
    with pytest.raises(RunLogFormatError, match=r"unexpected \['../evil.sh'\]"):
        read(extra, tmp_path)
    broken = rezip(good_zip, tmp_path / "broken.zip", {"meta.json": b"{not json"})
    with pytest.raises(RunLogFormatError, match="meta.json is not valid UTF-8 JSON"):
        read(broken, tmp_path)
    with pytest.raises(RunLogFormatError, match="over the 0.25 MB limit"):
        read(good_zip, tmp_path, max_zip_bytes=2**18)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.zip", "extra.zip"]
