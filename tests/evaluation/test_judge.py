"""The MeViS LLM judge's inputs (grids, Batch API requests, the system prompt from a checkout) and its scores."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.mevis_data import judge_output_line as _line, write_judge_results as write_results
from vidseg.errors import ConfigError
from vidseg.evaluation.judge import (
    GRID_FRAMES, GRID_NAMES, LATENT_FRAMES, append_judge_requests, judge_grids, judge_request, judge_scores,
    minmax, parse_judge_scores, read_judge_prompt, write_judge_grids, write_judge_requests,
)

H, W = 20, 30  # frame size
h, w = 5, 6  # map size


def test_sampled_frames_and_their_latent_frames() -> None:
    assert GRID_FRAMES == tuple(np.linspace(0, 48, 12).astype(int))
    assert LATENT_FRAMES == tuple(np.linspace(0, 12, 12).astype(int)) == (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12)


def _frames() -> np.ndarray:
    """[49, H, W, 3]: frame t has value 2 * t + 60 (plus a texture), so every tile names its frame."""
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 40, size=(H, W, 3))
    return np.stack([texture + 2 * t + 60 for t in range(49)]).astype(np.uint8)


def _maps() -> np.ndarray:
    """[13, h, w]: latent frame f peaks at column f % w and has a distinct random texture."""
    rng = np.random.default_rng(1)
    maps = rng.normal(size=(13, h, w)).astype(np.float32)
    for f in range(13):
        maps[f, :, f % w] += 4.0
    return maps


def _bilinear(src: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Independent bilinear resize (pixel centres aligned, edges clamped), as cv2.INTER_LINEAR defines it."""
    def axis(n_out: int, n_in: int):
        pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        lo = np.floor(pos).astype(int)
        return lo, np.minimum(lo + 1, n_in - 1), pos - lo

    y0, y1, fy = axis(out_h, src.shape[0])
    x0, x1, fx = axis(out_w, src.shape[1])
    top = src[y0][:, x0] * (1 - fx) + src[y0][:, x1] * fx
    bottom = src[y1][:, x0] * (1 - fx) + src[y1][:, x1] * fx
    return top * (1 - fy[:, None]) + bottom * fy[:, None]


def _tile(grid: np.ndarray, k: int) -> np.ndarray:
    r, c = divmod(k, 4)
    return grid[r * H:(r + 1) * H, c * W:(c + 1) * W]


def test_grids_are_4_columns_by_3_rows_of_the_sampled_frames() -> None:
    frames = _frames()
    grids = judge_grids(frames, _maps())
    assert set(grids) == set(GRID_NAMES)
    for grid in grids.values():
        assert grid.shape == (3 * H, 4 * W, 3) and grid.dtype == np.uint8
    for k, t in enumerate(GRID_FRAMES):
        np.testing.assert_array_equal(_tile(grids["raw_grid"], k), frames[t])


@pytest.mark.parametrize("k", [0, 5, 11])
def test_overlay_darkens_exactly_the_pixels_below_the_mean_of_the_matched_latent_frame(k: int) -> None:
    frames, maps = _frames(), _maps()
    tile = _tile(judge_grids(frames, maps)["overlay_grid"], k)
    m = maps[LATENT_FRAMES[k]].astype(np.float64)
    ref = _bilinear((m - m.min()) / (m.max() - m.min()), H, W)
    frame = frames[GRID_FRAMES[k]]
    expected = np.where((ref < ref.mean())[..., None], frame // 2, frame)
    clear = np.abs(ref - ref.mean()) > 1e-4  # float rounding may only decide pixels at the mean itself
    np.testing.assert_array_equal(tile[clear], expected[clear])
    assert 0.2 < (ref < ref.mean()).mean() < 0.8  # both kinds of pixel are tested
    if k == 11:  # the last tile shows latent frame 12, not 11
        m11 = maps[11].astype(np.float64)
        ref11 = _bilinear((m11 - m11.min()) / (m11.max() - m11.min()), H, W)
        assert not np.array_equal(tile, np.where((ref11 < ref11.mean())[..., None], frame // 2, frame))


def test_heatmap_is_inferno_in_rgb_of_the_normalised_map() -> None:
    maps = np.zeros((13, h, w), np.float32)
    maps[:, 0, 0] = 5.0  # one hot corner per frame: the map max at the top-left pixel
    heat = judge_grids(_frames(), maps)["heatmap_grid"]
    top = cv2.applyColorMap(np.array([[255]], np.uint8), cv2.COLORMAP_INFERNO)[0, 0][::-1]  # BGR -> RGB
    bottom = cv2.applyColorMap(np.array([[0]], np.uint8), cv2.COLORMAP_INFERNO)[0, 0][::-1]
    assert top[0] > 200 and top[2] < 200  # inferno's top is yellow: much red, less blue (so RGB, not BGR)
    for k in range(12):
        tile = _tile(heat, k)
        np.testing.assert_array_equal(tile[0, 0], top)
        np.testing.assert_array_equal(tile[-1, -1], bottom)


def test_a_constant_map_normalises_to_zeros_and_darkens_nothing() -> None:
    frames = _frames()
    maps = np.full((13, h, w), 3.5, np.float32)
    assert not minmax(maps[0]).any()
    grids = judge_grids(frames, maps)
    np.testing.assert_array_equal(grids["overlay_grid"], grids["raw_grid"])
    zero = cv2.applyColorMap(np.array([[0]], np.uint8), cv2.COLORMAP_INFERNO)[0, 0][::-1]
    assert (grids["heatmap_grid"] == zero).all()


def test_tile_size_and_bad_shapes() -> None:
    grids = judge_grids(_frames(), _maps(), tile_size=(10, 12))
    assert grids["overlay_grid"].shape == (30, 48, 3)
    with pytest.raises(ConfigError, match="49"):
        judge_grids(_frames()[:48], _maps())
    with pytest.raises(ConfigError, match="13 latent"):
        judge_grids(_frames(), _maps()[:12])
    with pytest.raises(ConfigError, match="NaN"):
        judge_grids(_frames(), np.full((13, h, w), np.nan, np.float32))


def test_grids_are_written_as_quality_95_jpegs(tmp_path: Path) -> None:
    yy, xx = np.mgrid[:60, :120]
    smooth = np.stack([200 + 0 * xx, xx, yy], axis=-1).astype(np.uint8)  # red-dominant, smooth: JPEG keeps it
    paths = write_judge_grids(tmp_path, {"raw_grid": smooth, "heatmap_grid": smooth[::-1]})
    assert paths == {"raw_grid": tmp_path / "raw_grid.jpg", "heatmap_grid": tmp_path / "heatmap_grid.jpg"}
    back = cv2.cvtColor(cv2.imread(str(paths["raw_grid"])), cv2.COLOR_BGR2RGB)
    assert back.shape == smooth.shape
    assert np.abs(back.astype(int) - smooth).mean() < 1.5  # quality 95, and RGB order kept (red stays red)
    assert paths["raw_grid"].read_bytes().startswith(b"\xff\xd8")
    assert not list(tmp_path.glob(".*"))  # no temporary left
    with pytest.raises(ConfigError, match="uint8 RGB"):
        write_judge_grids(tmp_path, {"raw_grid": smooth[..., 0]})


def _images(tmp_path: Path) -> dict[str, Path]:
    images = {}
    for i, name in enumerate(GRID_NAMES):
        images[name] = tmp_path / f"{name}.jpg"
        images[name].write_bytes(b"\xff\xd8 fake jpeg " + bytes([i]))
    return images


def test_request_is_a_batch_chat_completion_with_three_images_in_order(tmp_path: Path) -> None:
    images = _images(tmp_path)
    request = judge_request("vidA_1::sel_imap_layers", "a dog walks", images, "FAKE SYSTEM PROMPT")
    assert (request["custom_id"], request["method"], request["url"]) == (
        "vidA_1::sel_imap_layers", "POST", "/v1/chat/completions")
    body = request["body"]
    assert (body["model"], body["temperature"]) == ("o3-pro", 0)
    system, user = body["messages"]
    assert system == {"role": "system", "content": "FAKE SYSTEM PROMPT"}
    assert user["role"] == "user" and user["content"][0] == {"type": "text", "text": "Prompt: a dog walks"}
    parts = user["content"][1:]
    assert [p["type"] for p in parts] == ["image_url"] * 3
    prefix = "data:image/jpeg;base64,"
    decoded = [base64.b64decode(p["image_url"]["url"].removeprefix(prefix)) for p in parts]
    assert all(p["image_url"]["url"].startswith(prefix) for p in parts)
    assert decoded == [images[n].read_bytes() for n in GRID_NAMES]
    json.dumps(request)  # serialisable as one JSONL line


def test_request_variants_and_errors(tmp_path: Path) -> None:
    images = _images(tmp_path)
    request = judge_request("c::k", "cap", images, "P", "o3", temperature=None, api="responses")
    assert request["url"] == "/v1/responses" and "temperature" not in request["body"]
    assert request["body"]["input"][1]["content"][0] == {"type": "input_text", "text": "Prompt: cap"}
    assert [p["type"] for p in request["body"]["input"][1]["content"][1:]] == ["input_image"] * 3
    with pytest.raises(ConfigError, match="exactly the images"):
        judge_request("c::k", "cap", {"raw_grid": images["raw_grid"]}, "P")
    images["heatmap_grid"].unlink()
    with pytest.raises(ConfigError, match="heatmap_grid.jpg"):
        judge_request("c::k", "cap", images, "P")


def test_append_replaces_requests_by_custom_id(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    assert append_judge_requests(path, [{"custom_id": "a::k", "v": 1}, {"custom_id": "b::k", "v": 1}]) == 2
    assert append_judge_requests(path, [{"custom_id": "b::k", "v": 2}, {"custom_id": "c::k", "v": 2}]) == 3
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["custom_id"], r["v"]) for r in lines] == [("a::k", 1), ("b::k", 2), ("c::k", 2)]
    with pytest.raises(ConfigError, match="share the custom_id"):
        write_judge_requests(path, [{"custom_id": "a::k"}, {"custom_id": "a::k"}])
    assert len(path.read_text().splitlines()) == 3  # the failed rewrite left the old file
    path.write_text("not json\n")
    with pytest.raises(ConfigError, match="line 1"):
        append_judge_requests(path, [{"custom_id": "a::k"}])


FAKE_EVAL = '''
import textwrap

SYSTEM_PROMPT = (
    "FAKE judge instructions for a test, not the real prompt. "
    "Score SL, TL, PR, SS and OBJ from 1 to 5."
)
system_msg = "short fake"
OTHER_TEXT = """{other}"""

def ask(client, user):
    return client.create(messages=[{{"role": "system", "content": "fake inline"}}, user])
'''


def test_system_prompt_is_read_from_a_checkout(tmp_path: Path) -> None:
    script = tmp_path / "IMAP" / "scripts" / "MeViS" / "eval_compressed.py"
    script.parent.mkdir(parents=True)
    script.write_text(FAKE_EVAL.format(other="x" * 500))  # a longer string, but not a system prompt
    expected = "FAKE judge instructions for a test, not the real prompt. Score SL, TL, PR, SS and OBJ from 1 to 5."
    assert read_judge_prompt(tmp_path / "IMAP") == expected
    assert read_judge_prompt(script) == expected


def test_prompt_dedent_and_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="holds eval_compressed.py"):
        read_judge_prompt(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        read_judge_prompt(tmp_path / "nope")
    script = tmp_path / "eval_compressed.py"
    script.write_text("PROMPT = 'not a system one'\n")
    with pytest.raises(ConfigError, match="found no system prompt"):
        read_judge_prompt(tmp_path)
    script.write_text("import textwrap\nJUDGE_SYSTEM = textwrap.dedent('''\n    FAKE line one\n    line two\n''')"
                      ".strip()\n")
    assert read_judge_prompt(tmp_path) == "FAKE line one\nline two"
    script.write_text("def broken(:\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        read_judge_prompt(tmp_path)


def test_score_formats_accepted() -> None:
    assert parse_judge_scores("<SL>4</SL><tl> 3 </tl><prompt_relevance>5</prompt_relevance><SS>2/5</SS>"
                              "<object-shape>1</object-shape>") == {"SL": 4, "TL": 3, "PR": 5, "SS": 2, "OBJ": 1}
    assert parse_judge_scores('<scores><score name="SL">2</score><score name=\'temporal localization\'>3</score>'
                              '<criterion id="PR">4.5</criterion><score name="sparsity">5</score>'
                              '<score name="OBJ">1</score></scores>') == {
        "SL": 2, "TL": 3, "PR": 4.5, "SS": 5, "OBJ": 1}
    # A criterion given twice counts once, its last value; out of range or absent is None.
    assert parse_judge_scores("e.g. <SL>1</SL> ... final: <SL>3</SL> <TL>7</TL> <PR>0</PR>") == {
        "SL": 3, "TL": None, "PR": None, "SS": None, "OBJ": None}
    assert parse_judge_scores("<SLX>4</SLX> <OBJECTS>2</OBJECTS>") == dict.fromkeys(["SL", "TL", "PR", "SS", "OBJ"])


def test_judge_scores_per_method_and_criterion(tmp_path: Path) -> None:
    scores = judge_scores(write_results(tmp_path / "out.jsonl"))
    imap, gramcol = scores.methods["sel_imap_layers"], scores.methods["imap_layers"]
    assert (imap.requests, imap.failed_requests) == (4, 1)
    assert {k: (c.mean, c.count, c.failed) for k, c in imap.criteria.items()} == {
        "SL": (3.0, 3, 1), "TL": (4.0, 3, 1), "PR": (4.0, 3, 1), "SS": (3.0, 3, 1), "OBJ": (4.0, 3, 1)}
    assert (gramcol.requests, gramcol.failed_requests) == (3, 1)  # the unparseable answer is not a failed request
    assert {k: (c.mean, c.count, c.failed) for k, c in gramcol.criteria.items()} == {
        "SL": (5.0, 1, 2), "TL": (None, 0, 3), "PR": (None, 0, 3), "SS": (None, 0, 3), "OBJ": (None, 0, 3)}
    assert scores.per_request["vidA_2::sel_imap_layers"] == {"SL": 2, "TL": 5, "PR": 4, "SS": 3, "OBJ": 5}


def test_a_later_line_for_the_same_request_replaces_the_earlier(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text(_line("a::k", status=500) + "\n" + _line("a::k", "<SL>2</SL>") + "\n")
    method = judge_scores(path).methods["k"]
    assert (method.requests, method.failed_requests, method.criteria["SL"].mean) == (1, 0, 2.0)


def test_responses_api_output_is_read_too(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    body = {"output": [{"type": "reasoning", "summary": []},
                       {"type": "message", "content": [{"type": "output_text", "text": "<SL>5</SL><OBJ>2</OBJ>"}]}]}
    path.write_text(json.dumps({"custom_id": "a::k", "response": {"status_code": 200, "body": body},
                                "error": None}) + "\n")
    scores = judge_scores(path).per_request["a::k"]
    assert (scores["SL"], scores["OBJ"], scores["TL"]) == (5, 2, None)


@pytest.mark.parametrize("content, words", [(None, "does not exist"), ("", "is empty"), ("\n\n", "is empty"),
                                            ("garbage\n", "line 1"), ('{"id": 3}\n', "line 1")])
def test_unusable_results_files_are_config_errors(tmp_path: Path, content, words) -> None:
    path = tmp_path / "out.jsonl"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=words):
        judge_scores(path)
