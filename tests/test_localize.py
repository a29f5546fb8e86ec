"""``vidseg localize`` end to end: the motion toy world, the plumbing oracle on verbs (maps right by construction,
planted bugs that must fail), the interval decision, and the command's files and errors."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from tests.conftest import assert_one_line_error, run_cli
from tests.oracle import OracleBackbone
from vidseg.config import load_config
from vidseg.evaluation.motion import score_localization, spatiotemporal_iou, temporal_iou
from vidseg.localize import decide_active, runs
from vidseg.pipeline import VideoSegmenter
from vidseg.toyworld import COLOURS, VERBS, render_motion_clip, write_toy_clip

# Floors for right-by-construction maps; the planted bugs below must fall under them. The decision's edges are a
# latent frame (4 frames) wide, and the first frame of each window is decided by the next frame's change.
TEMPORAL_FLOOR = 0.75
SPATIOTEMPORAL_FLOOR = 0.5
POINTING_FLOOR = 0.75  # a latent frame pools 4 frames, over which a fast shape moves up to 28 px


def test_motion_clips_follow_the_world_spec():
    for seed in range(30):
        clip = render_motion_clip(seed, num_frames=24, num_objects=1 + seed % 3)
        assert clip.verb_names and set(clip.verbs) <= set(VERBS)
        for o in clip.objects:
            assert o.verb in (None, *VERBS) and not (o.shape == "circle" and o.verb == "spinning")
            steps = np.array([o.steps(t) for t in range(24)])
            if o.verb is None:
                assert o.active is None and o.velocity == (0.0, 0.0) and o.spin == 0.0
                continue
            first, last = o.active
            assert 0.3 * 24 - 1 <= last - first + 1 <= 0.7 * 24 + 1
            # frozen before and after the interval, one step per frame inside it (its first frame included)
            assert (steps[:first] == 0).all() and (steps[last:] == last - first + 1).all()
            assert (np.diff(steps)[first - 1 if first else 0:last] == 1).all()
            if o.verb == "spinning":
                assert 0.15 <= abs(o.spin) <= 0.4 and o.velocity == (0.0, 0.0)
            else:
                assert 2 <= np.hypot(*o.velocity) <= 7 and o.spin == 0.0
            assert f"{o.colour} {o.shape} {o.verb}" in clip.caption
        for verb, truth in clip.verbs.items():
            assert np.array_equal(truth.any(axis=(1, 2)), clip.active_frames(verb))
        if len(clip.objects) == 1:  # nothing occludes it: the visible mask changes exactly in the interval
            o = clip.objects[0]
            mask = clip.truth(o.shape)
            moved = np.concatenate([[False], (mask[1:] != mask[:-1]).any(axis=(1, 2))])
            assert np.array_equal(moved, [o.performing(t) and t > 0 for t in range(24)])


def test_plain_clips_are_unchanged_by_the_motion_world():
    from vidseg.toyworld import render_clip

    clip = render_clip(3, num_frames=4)
    assert clip.verbs == {} and all(o.verb is None for o in clip.objects)
    assert clip.caption == "an orange star, a red triangle and a white circle"


def _distinct_motion_clip(seed: int, **kw):
    """The first motion clip from ``seed`` whose background never comes near an object's colour, whose objects
    never overlap (the oracle reads objects by colour and motion by mask changes) and whose verbs are on distinct
    objects."""
    while True:
        clip = render_motion_clip(seed, **kw)
        background = clip.frames[clip.labels == 0].astype(np.int16)
        far = all(np.abs(background - np.asarray(COLOURS[o.colour])).max(axis=1).min() > 60 for o in clip.objects)
        masks = [clip.truth(o.shape) for o in clip.objects]
        apart = all(not (a & b).any() for i, a in enumerate(masks) for b in masks[i + 1:])
        if far and apart and len(clip.objects) >= 2:
            return clip
        seed += 1


def _oracle_scores(tmp_path, clip, plant=None, **settings):
    path, _ = write_toy_clip(tmp_path / "clip.mp4", clip)
    config = load_config("toy", overrides=["export.workers=1", "probs.calibration=class", "probs.background=2.0",
                                           *(f"{k}={v}" for k, v in settings.items())])
    config.validate()
    oracle = OracleBackbone({o.shape: COLOURS[o.colour] for o in clip.objects}, plant=plant,
                            verbs={v: [COLOURS[o.colour] for o in clip.objects if o.verb == v] for v in clip.verbs})
    concepts = clip.classes + clip.verb_names
    localization = VideoSegmenter(oracle, config).localize_video(path, concepts)
    truth = {c: clip.truth(c) for c in concepts}
    return score_localization(localization, truth, config), localization


@pytest.fixture(scope="module")
def motion_clip():
    return _distinct_motion_clip(5, num_frames=24, num_objects=3)


@pytest.fixture(scope="module")
def right(motion_clip, tmp_path_factory):
    return _oracle_scores(tmp_path_factory.mktemp("right"), motion_clip)[0]


def test_oracle_localizes_verbs_in_space_and_time(motion_clip, right):
    for verb in motion_clip.verb_names:
        assert right[verb].temporal_iou >= TEMPORAL_FLOOR, right
        assert right[verb].spatiotemporal_iou >= SPATIOTEMPORAL_FLOOR, right
        assert right[verb].pointing >= POINTING_FLOOR
    for shape in motion_clip.classes:  # nouns are present throughout: every frame active
        assert right[shape].temporal_iou == 1.0 and right[shape].spatiotemporal_iou >= SPATIOTEMPORAL_FLOOR


@pytest.fixture(scope="module")
def early_clip():
    """One window (9 frames) whose verbs all end by frame 4: a map read a latent frame late, or a window's latent
    frames reversed, then puts the verb where it is not (a verb in the middle of a window would hide a reversal)."""
    seed = 35
    while True:
        clip = _distinct_motion_clip(seed, num_frames=9, num_objects=2)
        if all(o.active[1] <= 4 for o in clip.objects if o.verb):
            return clip
        seed += 1


@pytest.mark.parametrize("plant", [None, "latent-shift", "reverse"])
def test_planted_time_bugs_are_caught(early_clip, plant, tmp_path):
    """The right oracle passes the floors on this clip too; a map read one latent frame off, or a window's latent
    frames reversed, must fail them."""
    scores, _ = _oracle_scores(tmp_path, early_clip, plant=plant)
    for verb in early_clip.verb_names:
        if plant is None:
            assert scores[verb].temporal_iou >= TEMPORAL_FLOOR, scores
            assert scores[verb].spatiotemporal_iou >= SPATIOTEMPORAL_FLOOR, scores
        else:
            assert scores[verb].temporal_iou < TEMPORAL_FLOOR, scores
            assert scores[verb].spatiotemporal_iou < SPATIOTEMPORAL_FLOOR, scores


def test_decision_fills_gaps_and_drops_short_runs():
    times = np.arange(12) / 8.0
    strength = np.array([0.9, 0.9, 0.1, 0.9, 0.9, 0.9, 0.1, 0.1, 0.1, 0.9, 0.1, 0.1])
    assert runs(decide_active(strength, times, threshold=0.5)) == [(0, 1), (3, 5), (9, 9)]
    filled = decide_active(strength, times, threshold=0.5, max_gap_s=0.2)
    assert runs(filled) == [(0, 5), (9, 9)]  # a 1-frame gap (0.125 s) is filled, a 3-frame one (0.375 s) is not
    assert runs(decide_active(strength, times, threshold=0.5, max_gap_s=0.2, min_active_s=0.2)) == [(0, 5)]


def test_measures():
    a, b = np.array([1, 1, 0, 0], bool), np.array([0, 1, 1, 0], bool)
    assert temporal_iou(a, b) == pytest.approx(1 / 3) and temporal_iou(~a & ~b & False, a & False) == 1.0
    assert spatiotemporal_iou(a.reshape(1, 2, 2), b.reshape(1, 2, 2)) == pytest.approx(1 / 3)


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    clip = render_motion_clip(2, num_frames=24)
    video, _ = write_toy_clip(tmp / "toy.mp4", clip)
    concepts = ", ".join(clip.classes + clip.verb_names)
    result = run_cli("localize", video, "--concepts", concepts, "--model", "toy", "-o", tmp / "out", "-q",
                     "--workers", "1")
    return result, tmp / "out" / "toy", clip


def test_localize_command_writes_every_file(cli_run):
    result, folder, clip = cli_run
    assert result.exit_code == 0, result.output
    concepts = clip.classes + clip.verb_names
    assert sorted(p.name for p in (folder / "masks").iterdir()) == sorted(concepts)
    for concept in concepts:
        masks = sorted((folder / "masks" / concept).glob("*.png"))
        assert len(masks) == 24
        image = np.asarray(Image.open(masks[0]))
        assert image.shape == (128, 192) and set(np.unique(image)) <= {0, 255}
    rows = list(csv.reader((folder / "curves.csv").read_text().splitlines()))
    assert rows[0] == ["frame", "time_s", *concepts] and len(rows) == 25
    assert float(rows[3][1]) == pytest.approx(2 / 8.0)  # frame 2 at 8 fps
    assert (folder / "curves.png").stat().st_size > 0 and (folder / "saliency.mp4").stat().st_size > 0
    summary = json.loads((folder / "localize.json").read_text())
    assert [c["concept"] for c in summary["concepts"]] == concepts
    for c in summary["concepts"]:
        assert c["map_kind"] == "imap" and len(c["active_frames"]) == len(c["active_seconds"])
        # masks are empty exactly outside the active frames' ranges
        active = np.zeros(24, bool)
        for a, b in c["active_frames"]:
            active[a:b + 1] = True
        nonempty = np.array([np.asarray(Image.open(p)).any()
                             for p in sorted((folder / "masks" / c["folder"]).glob("*.png"))])
        assert not nonempty[~active].any()
    assert summary["settings"]["localize"]["threshold"] == 0.5


@pytest.mark.parametrize("concepts, message", [
    (" , dog", "blank"), ("dog, Dog", "twice"), ("a/b", "slashes"), ("big dog, big_dog", "share the mask folder"),
])
def test_bad_concepts_fail_in_one_line(concepts, message, tmp_path, video_factory):
    result = run_cli("localize", video_factory(), "--concepts", concepts, "--model", "toy", "-o", tmp_path / "out")
    assert_one_line_error(result, 2, message)
    assert not (tmp_path / "out").exists()


def test_mevis_batch_writes_the_official_layout_and_judge_inputs_then_resumes(tmp_path, tiny_model_dir):
    """``vidseg localize --mevis`` on a MeViS-shaped folder: vidseg's localize files and the official npy maps per
    clip, the judge's grids from those maps and one request per clip; a rerun redoes nothing."""
    from tests.mevis_data import NAMES, make_mevis
    from vidseg.evaluation.judge import judge_grids

    json_dir, video_dir = make_mevis(tmp_path)
    checkout = tmp_path / "IMAP" / "scripts"
    checkout.mkdir(parents=True)
    (checkout / "eval_compressed.py").write_text('SYSTEM_PROMPT = "A made-up judge prompt for this test."\n')
    args = ["localize", "--mevis", json_dir, "--videos", video_dir, "--model", tiny_model_dir, "-o", tmp_path / "out",
            "--judge-inputs", "--judge-prompt-from", tmp_path / "IMAP", "-q", "--workers", "1", "--no-crf"]
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    requests = [json.loads(line) for line in (tmp_path / "out" / "judge_requests.jsonl").read_text().splitlines()]
    assert [r["custom_id"] for r in requests] == [f"{n}::sel_imap_layers" for n in NAMES]
    for name in NAMES:
        folder = tmp_path / "out" / name
        summary = json.loads((folder / "localize.json").read_text())
        concepts = [c["concept"] for c in summary["concepts"]]
        for key in ("sel_imap_layers", "imap_layers"):
            maps = np.load(folder / "npy" / f"{key}.npy")
            assert maps.dtype == np.float32 and maps.shape[:2] == (len(concepts), 13), maps.shape
        assert all((folder / "masks" / c["folder"]).is_dir() for c in summary["concepts"])
        assert (folder / "curves.csv").is_file() and (folder / "overlay_grid.jpg").is_file()
    # The grids show the judged concept's map from the npy file (vidA_1: motion_idx -2 -> "walking").
    folder = tmp_path / "out" / "vidA_1"
    concepts = [c["concept"] for c in json.loads((folder / "localize.json").read_text())["concepts"]]
    row = concepts.index("walking")
    from vidseg.video.read import open_video

    with open_video(video_dir / "vidA_1.mp4") as reader:
        frames = reader.read(range(49))
    expected = judge_grids(frames, np.load(folder / "npy" / "sel_imap_layers.npy")[row])["heatmap_grid"]
    written = np.asarray(Image.open(folder / "heatmap_grid.jpg")).astype(int)
    assert written.shape == expected.shape and np.abs(written - expected).mean() < 3  # JPEG at quality 95

    again = run_cli(*args)
    assert again.exit_code == 0 and f"0 done, {len(NAMES)} skipped" in again.output, again.output


def test_mevis_needs_both_folders_and_the_prompt_source(tmp_path):
    result = run_cli("localize", "--mevis", tmp_path, "-o", tmp_path / "out")
    assert_one_line_error(result, 2, "--videos")
    result = run_cli("localize", "--mevis", tmp_path, "--videos", tmp_path, "--judge-inputs", "-o", tmp_path / "o")
    assert_one_line_error(result, 2, "--judge-prompt-from")


@pytest.mark.parametrize("family", ["cogvideox", "wan", "hunyuan"])
def test_localize_runs_on_a_real_h264_clip_with_every_tiny_backbone(family, tiny_model_dir, tiny_wan_model_dir,
                                                                    tiny_hunyuan_model_dir, tmp_path):
    """A camera clip (``../shared/data``, skipped without it; else a toy clip, also H.264) through both families'
    tiny models: every file is written (the maps are meaningless)."""
    from tests.conftest import SHARED, write_video
    from vidseg.video.read import open_video

    source = SHARED / "data" / "videos" / "05_default_juggle.mp4"
    if source.is_file():  # its first 2 s, small: the tiny models are for plumbing
        with open_video(source) as reader:
            frames = reader.read(range(0, 48, 3))
        video = write_video(tmp_path / "juggle.mp4", np.stack([np.asarray(Image.fromarray(f).resize((160, 90)))
                                                              for f in frames]), fps=8.0)
    else:
        video, _ = write_toy_clip(tmp_path / "juggle.mp4", render_motion_clip(0, num_frames=16))
    model = {"cogvideox": tiny_model_dir, "wan": tiny_wan_model_dir, "hunyuan": tiny_hunyuan_model_dir}[family]
    result = run_cli("localize", video, "--concepts", "person, juggling, ball", "--model", model, "-o",
                     tmp_path / "out", "-q", "--workers", "1")
    assert result.exit_code == 0, result.output
    folder = tmp_path / "out" / "juggle"
    assert {p.name for p in folder.iterdir()} == {"masks", "curves.csv", "curves.png", "saliency.mp4",
                                                 "localize.json"}
    assert sorted(p.name for p in (folder / "masks").iterdir()) == ["ball", "juggling", "person"]
    assert len(list((folder / "masks" / "juggling").glob("*.png"))) == 16


def test_a_wan_prompt_lacking_the_verb_fails_in_one_line(tiny_wan_model_dir, video_factory, tmp_path):
    result = run_cli("localize", video_factory(), "--concepts", "dog, running", "--model", tiny_wan_model_dir,
                     "--prompt", "a dog on the grass", "-o", tmp_path / "out")
    assert_one_line_error(result, 2, "running", "not in the prompt")
    assert not (tmp_path / "out").exists()
