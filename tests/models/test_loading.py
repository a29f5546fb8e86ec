"""Model loading (local folders, hub ids offline, errors), T5 text encoding and the tiny offline model."""

from __future__ import annotations

import json
import shutil
import socket
import time
from importlib import resources

import pytest
import torch

from vidseg.errors import ConfigError, ModelLoadError
from vidseg.models import hub as hub_module
from vidseg.models.cogvideox.backbone import CONCEPT_MAX_TOKENS
from vidseg.models.hub import load_model
from vidseg.models.text import default_prompt
from vidseg.models.tiny import make_tiny_model


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_model(str(tiny_model_dir))


def test_tiny_model_layout(tiny_model_dir):
    for part in ("model_index.json", "scheduler/scheduler_config.json", "tokenizer/tokenizer.json",
                 "text_encoder/config.json", "text_encoder/model.safetensors", "transformer/config.json",
                 "transformer/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors"):
        assert (tiny_model_dir / part).is_file(), part
    size = sum(f.stat().st_size for f in tiny_model_dir.rglob("*") if f.is_file())
    assert size < 2_000_000
    shipped = (resources.files("vidseg.configs") / "tiny.yaml").read_text()
    assert (tiny_model_dir / "vidseg.yaml").read_text() == shipped
    index = json.loads((tiny_model_dir / "model_index.json").read_text())
    assert index["scheduler"] == ["diffusers", "CogVideoXDDIMScheduler"]
    assert index["transformer"] == ["diffusers", "CogVideoXTransformer3DModel"]


def test_tiny_model_is_reproducible_and_overwrites(tmp_path):
    first = make_tiny_model(tmp_path / "a", seed=3)
    second = make_tiny_model(tmp_path / "b", seed=3)
    weights = "transformer/diffusion_pytorch_model.safetensors"
    assert (first / weights).read_bytes() == (second / weights).read_bytes()
    (first / "stale.txt").write_text("left over")
    make_tiny_model(first, seed=4)
    assert not (first / "stale.txt").exists()
    assert (first / weights).read_bytes() != (second / weights).read_bytes()


def test_load_tiny_model(tiny, tiny_model_dir):
    assert tiny.device == torch.device("cpu") and tiny.dtype == torch.float32
    assert tiny.preset_path == tiny_model_dir / "vidseg.yaml"
    assert type(tiny.scheduler).__name__ == "CogVideoXDDIMScheduler"
    assert tiny.scheduler.config.snr_shift_scale == 3.0 and tiny.scheduler.config.prediction_type == "v_prediction"
    assert tiny.transformer_config["max_text_seq_length"] == 16
    transformer, vae = tiny.transformer, tiny.vae
    assert type(transformer).__name__ == "CogVideoXTransformer3DModel" and not transformer.training
    assert not transformer.config.use_rotary_positional_embeddings
    assert transformer.dtype == torch.float32 and vae.dtype == torch.float32
    assert vae.use_tiling and vae.config.scaling_factor == pytest.approx(1.15258426)
    assert tiny.transformer is transformer  # loaded once


def test_weights_load_lazily(tiny_model_dir):
    model = load_model(str(tiny_model_dir))
    assert model._transformer is None and model._vae is None and model._text_encoder is None
    model.encode_text("A video of a dog.", ["dog"])
    assert model._transformer is None and model._text_encoder is not None


def test_load_rope_variant(tiny_rope_model_dir):
    model = load_model(str(tiny_rope_model_dir), dtype="bf16")
    assert type(model.scheduler).__name__ == "CogVideoXDPMScheduler"
    assert model.scheduler.config.snr_shift_scale == 1.0
    assert model.transformer.config.use_rotary_positional_embeddings
    assert model.transformer.dtype == torch.bfloat16
    assert model.vae.config.scaling_factor == pytest.approx(0.7)


def test_encode_text_shapes_and_first_tokens(tiny):
    text = tiny.encode_text("A video of a person and a dog.", ["person", "dog", "light pole"])
    prompt_embeds, concept_embeds = text.prompt_embeds, text.concepts
    assert prompt_embeds.shape == (1, 16, 32) and concept_embeds.shape == (3, 32)
    assert prompt_embeds.dtype == concept_embeds.dtype == torch.float32
    # Each class is encoded on its own: its embedding ignores the prompt and the other classes.
    alone = tiny.encode_text("Something else entirely.", ["dog"]).concepts
    torch.testing.assert_close(alone[0], concept_embeds[1])
    # Only the first token is kept: "light pole" is the first token of "light pole" encoded on its own.
    tokenizer, encoder = tiny._load_text_encoder()
    ids = tokenizer(["light pole"], padding="max_length", max_length=CONCEPT_MAX_TOKENS, return_tensors="pt").input_ids
    with torch.no_grad():
        expected = encoder(ids)[0][0, 0].float()
    torch.testing.assert_close(concept_embeds[2], expected)
    assert not torch.allclose(concept_embeds[0], concept_embeds[1])
    assert tiny.encode_text("A video.", []).concepts.shape == (0, 32)


def test_tiny_tokenizer_gives_distinct_first_tokens(tiny):
    tokenizer, _ = tiny._load_text_encoder()
    names = ["person", "dog", "door", "cat", "car", "sky", "tree", "grass", "road", "wall", "light pole",
             "handrail or fence", "Microwave oven", "zebra"]
    first = [tokenizer(n).input_ids[0] for n in names]
    assert len(set(first)) == len(names)
    assert tokenizer.unk_token_id not in first
    assert tokenizer("juggling walking").input_ids[-1] == tokenizer.eos_token_id


def test_long_prompt_is_truncated_with_a_warning(tiny, caplog):
    with caplog.at_level("WARNING", logger="vidseg.models.cogvideox.backbone"):
        prompt_embeds = tiny.encode_text("A video of " + "a dog and " * 20 + "a cat.", ["dog"]).prompt_embeds
    assert prompt_embeds.shape == (1, 16, 32)
    assert "only the first 16 are used" in caplog.text


def test_release_text_encoder_and_reload(tiny_model_dir):
    model = load_model(str(tiny_model_dir))
    before = model.encode_text("A video of a dog.", ["dog"]).prompt_embeds
    model.release_text_encoder()
    assert model._text_encoder is None
    model.release_text_encoder()  # twice is fine
    after = model.encode_text("A video of a dog.", ["dog"]).prompt_embeds
    assert model._text_encoder is not None
    torch.testing.assert_close(before, after)


def test_default_prompt():
    assert default_prompt(["person"]) == "A video of a person."
    assert default_prompt(["person", "dog"]) == "A video of a person and a dog."
    assert default_prompt(["apple", "handrail_or_fence", "sky"]) == "A video of an apple, a handrail or fence and a sky."
    assert default_prompt([]) == "A video."


def test_hub_id_fails_fast_offline():
    start = time.perf_counter()
    with pytest.raises(ModelLoadError) as info:
        load_model("THUDM/CogVideoX-2b")
    assert time.perf_counter() - start < 5
    message = str(info.value)
    assert "\n" not in message and "THUDM/CogVideoX-2b" in message
    assert "--model PATH" in message and "--model toy" in message


def test_hub_id_fails_fast_when_the_network_hangs(monkeypatch):
    # Not flagged offline, and a connection attempt that never returns: the probe gives up after its timeout.
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub_module, "HUB_TIMEOUT_S", 0.3)

    def never_connects(*args, **kwargs):
        time.sleep(5)  # well past the probe's timeout; then fail like a real timeout would
        raise OSError("timed out")

    monkeypatch.setattr(socket, "create_connection", never_connects)
    start = time.perf_counter()
    with pytest.raises(ModelLoadError, match="cannot be reached"):
        load_model("some-org/some-model")
    assert time.perf_counter() - start < 3


@pytest.mark.parametrize("case", ["file", "empty folder", "no text encoder weights", "not a name"])
def test_bad_model_paths(tmp_path, tiny_model_dir, case):
    if case == "file":
        target = tmp_path / "weights.bin"
        target.write_bytes(b"x")
        expected = "is a file"
    elif case == "empty folder":
        target = tmp_path
        expected = "lacks transformer/, vae/, scheduler/, tokenizer/, text_encoder/"
    elif case == "no text encoder weights":
        target = tmp_path / "model"
        shutil.copytree(tiny_model_dir, target)
        (target / "text_encoder" / "model.safetensors").unlink()
        expected = "lacks text_encoder/ weights"
    else:
        target = "not a model name"
        expected = "neither a local folder nor a hub id"
    with pytest.raises(ModelLoadError, match=expected) as info:
        load_model(str(target))
    assert "--model PATH" in str(info.value) and "\n" not in str(info.value)


def test_not_a_cogvideox_folder(tmp_path, tiny_model_dir):
    target = tmp_path / "model"
    shutil.copytree(tiny_model_dir, target)
    config_path = target / "transformer" / "config.json"
    config = json.loads(config_path.read_text())
    config["_class_name"] = "UNet2DConditionModel"
    config_path.write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="not a CogVideoX model"):
        load_model(str(target))


def test_corrupt_weights_fail_on_first_use(tmp_path, tiny_model_dir):
    target = tmp_path / "model"
    shutil.copytree(tiny_model_dir, target)
    (target / "transformer" / "diffusion_pytorch_model.safetensors").write_bytes(b"not safetensors")
    model = load_model(str(target))
    with pytest.raises(ModelLoadError, match="cannot load the transformer"):
        model.transformer


def test_dtype_and_device_errors(tiny_model_dir, monkeypatch):
    with pytest.raises(ConfigError, match="bfloat16, float16 or float32"):
        load_model(str(tiny_model_dir), dtype="int8")
    with pytest.raises(ConfigError, match="not a torch device"):
        load_model(str(tiny_model_dir), device="gpu please")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a GPU machine checks the hint too
    with pytest.raises(ConfigError, match="--device cpu"):
        load_model(str(tiny_model_dir), device="cuda")


def test_offload_on_cpu_is_a_logged_no_op(tiny_model_dir, caplog):
    with caplog.at_level("INFO", logger="vidseg.models.hub"):
        model = load_model(str(tiny_model_dir), device="cpu", offload=True)
    assert "offload only applies on a CUDA device" in caplog.text
    assert next(model.transformer.parameters()).device == torch.device("cpu")


def test_hub_cache_hit_is_used(tmp_path, tiny_model_dir, monkeypatch):
    # A complete snapshot in the hub cache loads without any network access.
    import huggingface_hub

    snapshot = tmp_path / "snapshot"
    shutil.copytree(tiny_model_dir, snapshot)
    calls = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs.get("local_files_only")))
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    model = load_model("tiny-org/tiny-cogvideox")
    assert model.folder == snapshot and calls == [("tiny-org/tiny-cogvideox", True)]
    assert model.source == "tiny-org/tiny-cogvideox"


def _colour_r2(vae, detail: bool = False) -> float:
    """How much of each 4 x 4-pixel cell's mean colour a linear read of the cell's latent explains (worst channel),
    over the latent frames of a toy clip (frame 0, then frames 1-4 and 5-8 as the causal VAE groups them).
    ``detail``: instead, how much of the detail inside the cell: each 2 x 2-pixel quadrant's mean colour less the
    cell's."""
    from vidseg.models.cogvideox.backbone import encode_frames
    from vidseg.toyworld import render_clip
    from vidseg.video.sample import fit_frames

    clip = render_clip(7, num_frames=9, height=128, width=192)
    pixels, _ = fit_frames(clip.frames, 128, 192)
    latents = encode_frames(vae, pixels)[0]  # [3, C, 32, 48]
    groups = [pixels[:1], pixels[1:5], pixels[5:9]]
    quadrants = torch.cat([  # [cells, 4 quadrants, 3]
        torch.nn.functional.pixel_unshuffle(torch.nn.functional.avg_pool2d(g.float(), 2).mean(0), 2)
        .unflatten(0, (3, 4)).flatten(2).permute(2, 1, 0) for g in groups])
    cell = quadrants.mean(1)
    colour = (quadrants - cell[:, None]).flatten(1) if detail else cell
    features = torch.cat([latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1]),
                          torch.ones(len(colour), 1)], dim=1).double()
    fit = features @ torch.linalg.lstsq(features, colour.double(), driver="gelsd").solution  # rank-deficient: 0 channels
    r2 = 1 - (fit - colour).square().sum(0) / (colour - colour.mean(0)).square().sum(0)
    return float(r2.min())


def test_toy_vae_keeps_colour_locally_where_a_random_one_scrambles_it():
    from dataclasses import replace

    from vidseg.models.cogvideox.parts import build_tiny_pipeline
    from vidseg.models.tiny import TOY_SPEC

    toy, random = build_tiny_pipeline(TOY_SPEC).vae, build_tiny_pipeline(replace(TOY_SPEC, vae_encoder="random")).vae
    assert _colour_r2(toy) > 0.9 and _colour_r2(random) < 0.5
    # Finer than the cell: each 2 x 2-pixel quadrant's colour, so a shape's outline is seen at twice the resolution.
    assert _colour_r2(toy, detail=True) > 0.9 and _colour_r2(random, detail=True) < 0.5
