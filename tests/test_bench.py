"""Smoke test of tools/bench.py on the tiny model (no timing assertions) and of the real-shape random models."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from vidseg.errors import ConfigError
from vidseg.models.geometry import build_random_transformer, full_depth, transformer_config

BENCH = Path(__file__).resolve().parents[1] / "tools" / "bench.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("vidseg_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_tiny_bench_reports_every_stage_and_the_overhead(bench, video_factory, tmp_path, capsys):
    video = video_factory("clip.mp4", num_frames=40, height=64, width=96)
    out = tmp_path / "bench.json"
    argv = ["--video", str(video), "--repeats", "1", "--memory", "in-process", "--device", "cpu", "--json", str(out)]
    assert bench.main(argv) == 0

    report = json.loads(out.read_text())
    names = [s["name"] for s in report["stages"]]
    assert names[0].startswith("text") and names[1] == "load transformer + VAE"
    assert names[2:4] == ["decode", "VAE encode"]
    assert names[4:8] == [f"inversion step {i}/4" for i in range(1, 5)]  # tiny preset: 10 steps, read-out index 6
    assert names[8:] == ["maps (IMAP forward)", "saliency -> probabilities", "refine", "export"]
    for stage in report["stages"]:
        assert stage["seconds"] >= 0 and stage["peak_rss_mb"] > 0 and stage["peak_cuda_mb"] is None

    overhead = report["overhead"]
    assert overhead["layers_read"] == [0, 1] and overhead["latents"] == [1, 3, 4, 8, 12]
    for variant in ("stock", "imap"):
        assert len(overhead[variant]["seconds"]) == 1
        memory = overhead[variant]["memory"]
        assert memory["peak_rss_mb"] >= memory["baseline_rss_mb"] > 0
    assert {"time_ratio_wall", "time_ratio_cpu", "memory_ratio", "memory_increase_ratio"} <= overhead.keys()
    assert overhead["within_limit"] is None  # only the real geometries are judged
    parts = overhead["imap_breakdown"]["parts"]
    assert parts["concept stream + read-out"]["calls"] == 2 and parts["maps()"]["calls"] == 1
    printed = capsys.readouterr().out
    assert "| maps (IMAP forward) |" in printed and "IMAP / stock time: x" in printed


def test_forward_memory_child_measures_one_forward(bench, tmp_path):
    setup = bench.resolve_setup(bench.parse_args(["--measure-forward", "imap", "--device", "cpu"]))
    result = bench.measure_one_forward(setup, "imap", tmp_path)
    assert result["peak_rss_mb"] >= result["baseline_rss_mb"] > 0 and result["seconds"] > 0


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


def test_layer_count_is_checked():
    with pytest.raises(ConfigError, match="1 to 30"):
        transformer_config("cogvideox-2b", 31)
    with pytest.raises(ConfigError, match="unknown"):
        transformer_config("cogvideox-9b")
