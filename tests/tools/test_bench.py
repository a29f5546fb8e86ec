"""Smoke test of tools/bench.py on the tiny model (no timing assertions) and of the real-shape random models."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
import torch

from tests.conftest import REPO
from vidseg.errors import ConfigError
from vidseg.models.geometry import build_random_transformer, full_depth, transformer_config

BENCH = REPO / "tools" / "bench.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("vidseg_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.mark.parametrize("family", ["cogvideox", "wan", "hunyuan"])
def test_tiny_bench_meters_the_pipeline_and_the_overhead(bench, video_factory, tmp_path, capsys, family):
    video = video_factory("clip.mp4", num_frames=48, height=64, width=96)  # 16 frames at 8 fps: 3 windows
    out = tmp_path / "bench.json"
    argv = ["--video", str(video), "--family", family, "--repeats", "1", "--workers", "1", "--device", "cpu",
            "--json", str(out)]
    assert bench.main(argv) == 0

    report = json.loads(out.read_text())
    inversion = "DDIM inversion" if family == "cogvideox" else "flow inversion"
    names = [s["name"] for s in report["stages"]]
    assert names == ["encode text", "decode", "VAE encode", inversion, "read maps", "refine + export"]
    stages = {s["name"]: s for s in report["stages"]}
    steps = 6 if family == "wan" else 4  # the tiny presets: 10 steps, read-out index 4 (Wan) / 6
    assert len(stages[inversion]["step_seconds"]) == steps * report["windows"]
    assert stages["decode"]["count"] == report["windows"] >= 2
    # The same run's labels.json timings: the meter brackets exactly what the pipeline times.
    for name, key in (("encode text", "text"), ("decode", "decode"), ("VAE encode", "vae"),
                      (inversion, "inversion"), ("read maps", "maps")):
        assert abs(stages[name]["seconds"] - report["pipeline_seconds"][key]) < 0.25 + 0.2 * stages[name]["seconds"]
    for stage in report["stages"]:
        assert stage["peak_rss_mb"] > 0 and stage["peak_cuda_mb"] is None
    overhead = report["overhead"]
    assert overhead["layers_read"] == [0, 1]
    assert overhead["latents"] == ([1, 3, 4, 8, 12] if family == "cogvideox" else [1, 4, 3, 8, 12])
    assert len(overhead["runs"]["stock"]) == len(overhead["runs"]["readout"]) == 1
    assert {"time_ratio_wall", "time_ratio_cpu", "memory_ratio"} <= overhead.keys()
    printed = capsys.readouterr().out
    assert "| read maps |" in printed and "read-out / stock: wall x" in printed


def test_random_transformer_has_the_real_block_shapes():
    assert full_depth("cogvideox-2b") == 30 and full_depth("cogvideox-5b") == 42
    assert transformer_config("cogvideox-5b", 2) == {
        "num_attention_heads": 48, "num_layers": 2, "use_rotary_positional_embeddings": True,
    }
    model = build_random_transformer("cogvideox-2b", num_layers=1)
    cfg = model.config
    assert (cfg.num_attention_heads, cfg.attention_head_dim, cfg.text_embed_dim) == (30, 64, 4096)
    assert (cfg.sample_frames, cfg.sample_height, cfg.sample_width, cfg.max_text_seq_length) == (49, 60, 90, 226)
    block_params = sum(p.numel() for p in model.transformer_blocks[0].parameters())
    assert round(block_params / 1e6, 1) == 56.1  # reference.md §6.7: 1.694 B over 30 blocks
    assert next(model.parameters()).dtype == torch.float32 and not model.training


def test_random_wan_transformer_has_the_real_block_shapes():
    assert full_depth("wan2.1-1.3b") == 30 and full_depth("wan2.1-14b") == 40
    model = build_random_transformer("wan2.1-1.3b", num_layers=1)
    cfg = model.config
    assert (cfg.num_attention_heads, cfg.attention_head_dim, cfg.ffn_dim, cfg.text_dim) == (12, 128, 8960, 4096)
    block_params = sum(p.numel() for p in model.blocks[0].parameters())
    # 1.3B: about 1.42 B parameters in 30 blocks of width 1536 (self- and cross-attention, FFN 8960).
    assert round(block_params / 1e6, 1) == 46.4


def test_layer_count_is_checked():
    with pytest.raises(ConfigError, match="1 to 30"):
        transformer_config("cogvideox-2b", 31)
    with pytest.raises(ConfigError, match="unknown"):
        transformer_config("cogvideox-9b")


def test_precision_check_compares_a_bfloat16_model_with_its_float32_twin(bench, tmp_path, capsys):
    out = tmp_path / "precision.json"
    argv = ["--geometry", "cogvideox-5b", "--layers", "2", "--only", "precision", "--precision-frames", "9",
            "--precision-size", "64x96", "--precision-concepts", "3", "--device", "cpu", "--json", str(out)]
    assert bench.main(argv) == 0
    result = json.loads(out.read_text())["precision"]
    assert result["layers_read"] == [1] and result["latents"] == [1, 3, 16, 8, 12]
    assert result["cases"] == 48 * 4 * 3  # heads x (3 concepts + the padding slot) x latent frames, one layer
    # The float32 twin's QK logits need no rounding, so its two argmaxes are one: the log compares like with like.
    assert result["surrogate_agreement_fp32_native"] == 1.0
    for key in ("surrogate_agreement", "surrogate_agreement_native_bf16", "surrogate_agreement_fp32_inputs_rounded"):
        assert 0.5 < result[key] <= 1.0, key
    assert set(result["relative_map_error"]) == {"imap", "gramcol", "cross_attention", "concept_attention"}
    assert all(0 < error < 1 for error in result["relative_map_error"].values())
    assert "surrogate tokens agree in" in capsys.readouterr().out


def test_precision_check_reads_a_model_folder_on_toy_clips(bench, tiny_model_dir, tmp_path):
    out = tmp_path / "precision.json"
    argv = ["--model", str(tiny_model_dir), "--only", "precision", "--precision-clips", "2", "--device", "cpu",
            "--json", str(out)]
    assert bench.main(argv) == 0
    result = json.loads(out.read_text())["precision"]
    assert result["clips"] == 2 and result["surrogate_agreement_fp32_native"] == 1.0
    assert set(result["relative_map_error"]) == {"imap", "gramcol", "cross_attention", "concept_attention"}
