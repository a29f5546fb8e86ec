from __future__ import annotations

import pytest

from vidseg.config import VidsegConfig, load_config, preset_names
from vidseg.errors import ConfigError


def test_presets_load_and_validate():
    assert {"cogvideox-2b", "cogvideox-5b", "tiny"} <= set(preset_names())
    for name in preset_names():
        load_config(name).validate()
    two_b, five_b = load_config("cogvideox-2b"), load_config("cogvideox-5b")
    assert two_b.maps.layers == VidsegConfig().maps.layers and len(two_b.maps.layers) == 17
    assert five_b.model.source == "THUDM/CogVideoX-5b" and len(five_b.maps.layers) == 21


def test_precedence_preset_then_model_folder_then_user_then_overrides(tmp_path):
    model_yaml = tmp_path / "vidseg.yaml"
    model_yaml.write_text("maps:\n  top_k_heads: 2\n  layers: [0, 1]\nvideo:\n  num_frames: 9\n")
    user_yaml = tmp_path / "run.yaml"
    user_yaml.write_text("maps:\n  top_k_heads: 3\n")
    cfg = load_config("cogvideox-2b", model_dir_config=model_yaml, user_config=user_yaml,
                      overrides=["video.sample_fps=0", "crf.enabled=false"])
    assert cfg.maps.top_k_heads == 3 and cfg.maps.layers == [0, 1] and cfg.video.num_frames == 9
    assert cfg.video.sample_fps == 0.0 and cfg.crf.enabled is False


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["maps.top_k_head=3"], "did you mean maps.top_k_heads"),
        (["mapz.layers=[1]"], "did you mean maps"),
        (["maps.layers=4"], "must be a list"),
        (["maps.top_k_heads=three"], "must be an integer"),
        (["crf.enabled=maybe"], "true or false"),
        (["nodot"], "section.key=value"),
    ],
)
def test_bad_overrides_name_the_problem(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config("cogvideox-2b", overrides=overrides)


@pytest.mark.parametrize(
    "field, value, message",
    [
        (("video", "num_frames"), 48, "8k\\+1"),
        (("video", "height"), 470, "multiples of 16"),
        (("inversion", "method"), "invert", "ddim, renoise"),
        (("inversion", "readout_index"), 50, "readout_index"),
        (("maps", "kind"), "attention", "imap, gramcol"),
    ],
)
def test_validate_rejects_bad_values(field, value, message):
    cfg = VidsegConfig()
    setattr(getattr(cfg, field[0]), field[1], value)
    with pytest.raises(ConfigError, match=message):
        cfg.validate()


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ConfigError, match="cogvideox-2b"):
        load_config("cogvideox-9b")


def test_renamed_keys_still_work_with_a_deprecation_line(caplog):
    with caplog.at_level("WARNING", logger="vidseg.config"):
        cfg = load_config("cogvideox-2b", overrides=["maps.map=gramcol", "model.model=some/model"])
    assert cfg.maps.kind == "gramcol" and cfg.model.source == "some/model"
    assert any("maps.map is now maps.kind" in r.message for r in caplog.records)
    assert any("model.model is now model.source" in r.message for r in caplog.records)


def test_from_pretrained_leaves_the_callers_config_alone(tiny_model_dir):
    from vidseg.pipeline import VideoSegmenter

    cfg = load_config(model_dir_config=tiny_model_dir / "vidseg.yaml")
    before = cfg.to_dict()
    segmenter = VideoSegmenter.from_pretrained(str(tiny_model_dir), config=cfg)
    assert cfg.to_dict() == before and segmenter.config.model.source == str(tiny_model_dir)


def test_from_pretrained_loads_a_model_the_way_the_cli_does(tiny_model_dir):
    from vidseg.cli.options import MODEL_SETTINGS, build_config, parameter_name
    from vidseg.pipeline import VideoSegmenter

    segmenter = VideoSegmenter.from_pretrained("toy")  # its preset and its folder's vidseg.yaml, as --model toy
    assert segmenter.config.maps.layers == [3, 4, 5] and segmenter.config.model.source == "toy"
    cli_settings = {parameter_name(name): None for name in MODEL_SETTINGS}
    cli_settings |= {"model_source": str(tiny_model_dir), "preset": None, "config_path": None, "overrides": []}
    from_cli = build_config(cli_settings)
    assert VideoSegmenter.from_pretrained(str(tiny_model_dir)).config.to_dict() == from_cli.to_dict()


def test_dict_overrides_take_dotted_and_nested_keys():
    cfg = load_config(overrides={"model.source": "toy", "maps.kind": "gramcol", "crf": {"enabled": False}})
    assert cfg.model.source == "toy" and cfg.maps.kind == "gramcol" and cfg.crf.enabled is False
    with pytest.raises(ConfigError, match="section.key"):
        load_config(overrides={"source": "toy"})
    with pytest.raises(ConfigError, match="unknown key maps.knd"):
        load_config(overrides={"maps.knd": "gramcol"})


def test_presets_hold_only_what_differs_from_the_defaults():
    import yaml
    from importlib import resources

    from vidseg.config import get_setting

    defaults = VidsegConfig()
    for name in preset_names():
        data = yaml.safe_load((resources.files("vidseg.configs") / f"{name}.yaml").read_text()) or {}
        same = [f"{section}.{key}" for section, values in data.items() for key, value in values.items()
                if get_setting(defaults, f"{section}.{key}") == value]
        assert not same, f"{name}.yaml repeats defaults: {same}"
