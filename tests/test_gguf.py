"""GGUF files as a model source: bad files are one clear message; good ones dequantize once, into a cache."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import STUDIO_BIN

from lorastudio.models import ggufload as gguf
from lorastudio.models.resolve import resolve_model_path
from lorastudio.recipe import ModelSection


def write_gguf(path: Path, arch: str = "llama", floats: int = 4096) -> Path:
    """A small, well-formed GGUF file (metadata and one f32 tensor), made with gguf's own writer."""
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), arch)
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.arange(floats, dtype=np.float32).reshape(-1, 64))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_not_gguf_names_the_file(tmp_path: Path) -> None:
    bogus = tmp_path / "model.gguf"
    bogus.write_text("this is not a model\n")
    with pytest.raises(gguf.GgufError) as err:
        resolve_model_path(ModelSection(name=str(bogus)))
    message = str(err.value)
    assert message == f"{bogus}: not a GGUF file (it does not start with the GGUF magic bytes)"


def test_truncated_gguf_names_the_file(tmp_path: Path) -> None:
    whole = write_gguf(tmp_path / "whole.gguf")
    gguf.read_header(whole)  # the intact file parses
    for keep in (whole.stat().st_size - 100, 40, 6):
        cut = tmp_path / f"cut{keep}.gguf"
        cut.write_bytes(whole.read_bytes()[:keep])
        with pytest.raises(gguf.GgufError) as err:
            gguf.check_gguf(cut)
        assert str(err.value).startswith(f"{cut}: truncated") and "\n" not in str(err.value)


def test_unsupported_architecture_names_it(tmp_path: Path) -> None:
    odd = write_gguf(tmp_path / "odd.gguf", arch="studio-test-arch")
    with pytest.raises(gguf.GgufError) as err:
        resolve_model_path(ModelSection(name=str(odd)))
    message = str(err.value)
    assert message.startswith(f"{odd}: unsupported architecture 'studio-test-arch'") and "llama" in message
    assert not any(p.name.startswith("odd") for p in gguf.gguf_cache_root().iterdir())


def test_missing_gguf_and_gguf_file_field(tmp_path: Path) -> None:
    with pytest.raises(gguf.GgufError, match="no such GGUF file"):
        resolve_model_path(ModelSection(name=str(tmp_path / "absent.gguf")))
    write_gguf(tmp_path / "inside.gguf")
    assert gguf.gguf_path_for(str(tmp_path), "inside.gguf") == (tmp_path / "inside.gguf").resolve()
    with pytest.raises(gguf.GgufError, match="model.gguf_file"):
        gguf.gguf_path_for(str(tmp_path / "inside.gguf"), "inside.gguf")
    assert ModelSection(name="x").gguf_file is None  # old recipes stay valid


def test_cli_error_is_one_line(tmp_path: Path) -> None:
    bogus = tmp_path / "broken.gguf"
    bogus.write_bytes(b"PK\x03\x04 not gguf")
    out = subprocess.run(
        [STUDIO_BIN, "preview", "tiny-pirate", f"model.name={bogus}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert (
        out.stderr.strip()
        == f"studio: {bogus}: not a GGUF file (it does not start with the GGUF magic bytes)"
    )


def test_content_hash_is_remembered_per_path_size_mtime(tmp_path: Path, monkeypatch) -> None:
    file = write_gguf(tmp_path / "h.gguf")
    first = gguf.content_hash(file)
    monkeypatch.setattr(gguf, "sha256_file", lambda *a, **k: pytest.fail("hashed again"))
    assert gguf.content_hash(file) == first
    monkeypatch.undo()
    file.touch()  # a new mtime: hashed again, same content, same cache folder
    assert gguf.content_hash(file) == first


@pytest.mark.slow
def test_smollm2_dequantized_once_then_plain(smollm2_gguf: Path, smollm2_dir: Path, monkeypatch) -> None:
    marker = json.loads((smollm2_dir / gguf.MARKER).read_text())
    assert marker["sha256"] == gguf.content_hash(smollm2_gguf) and marker["architecture"] == "llama"
    config = json.loads((smollm2_dir / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    assert (smollm2_dir / "model.safetensors").exists() and (smollm2_dir / "chat_template.jinja").exists()
    # second load: no conversion
    monkeypatch.setattr(gguf, "convert", lambda *a, **k: pytest.fail("converted again"))
    assert gguf.ensure_dequantized(smollm2_gguf) == smollm2_dir
    assert resolve_model_path(ModelSection(name=str(smollm2_gguf))) == str(smollm2_dir)
    assert resolve_model_path(
        ModelSection(name=str(smollm2_gguf.parent), gguf_file=smollm2_gguf.name)
    ) == str(smollm2_dir)
    # a folder without the marker (a conversion cut short) is never taken for a finished one
    half = gguf.gguf_cache_root() / "half-done"
    half.mkdir()
    (half / "config.json").write_text("{}")
    assert not gguf.is_converted(half)


@pytest.mark.slow
def test_memory_estimate_reads_the_converted_config(
    smollm2_gguf: Path, smollm2_dir: Path, tmp_path: Path
) -> None:
    """Once a Preview or a run has converted the GGUF, the Launch sheet's estimate comes from its config.json,
    for the offline name and for a GGUF path alike; a GGUF never converted (and never hashed) stays rough."""
    from lorastudio import registry
    from lorastudio.models.estimate import estimate_memory, find_model_config

    for name in ("smollm2-135m-instruct", str(smollm2_gguf)):
        recipe = registry.load("smollm2-pirate", [f"model.name={name}"])
        config = find_model_config(recipe)
        assert config is not None and config["hidden_size"] == 576 and config["num_hidden_layers"] == 30
        estimate = estimate_memory(recipe, gpu=False)
        assert estimate is not None and estimate.source == "config.json"
    copy = tmp_path / "copy.gguf"
    copy.write_bytes(smollm2_gguf.read_bytes()[:4096])
    assert gguf.converted_folder(copy) is None
    assert find_model_config(registry.load("smollm2-pirate", [f"model.name={copy}"])) is None


@pytest.mark.slow
def test_chat_straight_from_a_gguf_file(smollm2_dir: Path, smollm2_gguf: Path) -> None:
    from lorastudio.chat.engine import Sampling, engine_for

    engine = engine_for(str(smollm2_gguf))
    engine.load()
    assert engine.model.name_or_path == str(smollm2_dir)  # the cached copy, not the GGUF
    reply = engine.generate(
        [{"role": "user", "content": "What is the capital of France?"}],
        Sampling(greedy=True, max_new_tokens=30),
    )
    assert "Paris" in reply.text and reply.finish_reason == "stop"
