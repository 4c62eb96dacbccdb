"""Property tests: malformed uploads never raise anything but the parsers' own clear ValueError."""
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.uds.uploads import ColumnMapping, load_upload

FUZZ = settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
cells = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(cells, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8),
                                                                                            inner, max_size=3),
                           max_leaves=10)
mappings = st.builds(ColumnMapping, prompt=st.sampled_from(["prompt", "q", ""]),
                     response=st.sampled_from(["response", "a"]), messages=st.sampled_from(["", "messages"]),
                     category=st.sampled_from(["", "category"]), answer=st.sampled_from(["", "answer"]))


def parse(tmp_path, name: str, data: bytes, mapping: ColumnMapping):
    path = tmp_path / name
    path.write_bytes(data)
    try:
        dataset = load_upload(path, mapping)
    except ValueError as err:
        assert str(err) and "Traceback" not in str(err)
        return None
    return dataset


@FUZZ
@given(data=st.binary(max_size=400), suffix=st.sampled_from([".jsonl", ".json", ".csv", ".parquet"]),
       mapping=mappings)
def test_arbitrary_bytes(tmp_path, data, suffix, mapping):
    parse(tmp_path, f"upload{suffix}", data, mapping)


@FUZZ
@given(rows=st.lists(st.dictionaries(st.sampled_from(["prompt", "response", "messages", "category", "answer", "x"]),
                                     json_values, max_size=5), max_size=6), mapping=mappings)
def test_json_lines_of_any_shape(tmp_path, rows, mapping):
    data = "\n".join(json.dumps(row) for row in rows).encode()
    parse(tmp_path, "upload.jsonl", data, mapping)


@FUZZ
@given(text=st.text(alphabet=st.sampled_from(list('ab,"\n\r\t x')), max_size=200), mapping=mappings)
def test_csv_text(tmp_path, text, mapping):
    parse(tmp_path, "upload.csv", ("prompt,response\n" + text).encode(), mapping)


@FUZZ
@given(prompts=st.lists(st.text(max_size=30) | st.none(), min_size=1, max_size=5), mapping=mappings,
       numbers=st.booleans())
def test_parquet_tables(tmp_path, prompts, mapping, numbers):
    response = list(range(len(prompts))) if numbers else [p[::-1] if p else p for p in prompts]
    buffer = io.BytesIO()
    pq.write_table(pa.table({"prompt": prompts, "response": response}), buffer)
    parse(tmp_path, "upload.parquet", buffer.getvalue(), mapping)
