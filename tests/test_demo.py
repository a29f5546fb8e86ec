"""The web demo: `vidseg demo` with the tiny model, driven by headless Chromium (Selenium) and by gradio_client; its
limits (queue, length, age, upload size) and sign-in."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import warnings
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("gradio", reason="the demo needs the vidseg[demo] extra")
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
AUTH = ("ann", "s3cret:pw")  # a colon inside the password: everything after the first one
MAX_SECONDS = 3.0  # the test server's limit: the 9-frame toy clip (1.1 s) passes, the 40-frame one (5 s) does not


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo_url(tiny_model_dir, tmp_path_factory):
    """A real `vidseg demo` server in its own process, stopped after the module's tests."""
    port = _free_port()
    log = tmp_path_factory.mktemp("demo") / "server.log"
    with log.open("w") as out:
        server = subprocess.Popen([shutil.which("vidseg"), "demo", "--model", str(tiny_model_dir), "--port",
                                   str(port), "--no-crf", "--auth", ":".join(AUTH), "--max-upload-mb", "0.5",
                                   "--max-seconds", str(MAX_SECONDS)], stdout=out, stderr=subprocess.STDOUT,
                                  env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"the demo server did not start:\n{log.read_text()}")
            time.sleep(0.5)
    yield url
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:  # never leave a stuck server spinning on the CI machine's cores
        server.kill()
        server.wait(timeout=30)
        warnings.warn("the demo server ignored SIGTERM for 30 s and was killed", stacklevel=1)


@pytest.fixture
def toy_video(tmp_path) -> Path:
    from vidseg.toyworld import render_clip, write_toy_clip

    path, _ = write_toy_clip(tmp_path / "toy.mp4", render_clip(3, num_frames=9, height=128, width=192))
    return path


@pytest.fixture
def long_video(tmp_path) -> Path:
    """5 s at 8 fps: longer than the test server's MAX_SECONDS."""
    from vidseg.toyworld import render_clip, write_toy_clip

    path, _ = write_toy_clip(tmp_path / "long.mp4", render_clip(4, num_frames=40, height=128, width=192))
    return path


@pytest.mark.slow
def test_segment_api_with_gradio_client(demo_url, toy_video, long_video, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    with pytest.raises(ValueError, match="Could not login"):
        Client(demo_url, auth=(AUTH[0], "wrong"), verbose=False)
    client = Client(demo_url, auth=AUTH, verbose=False)
    assert list(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == ["/segment"]
    overlay, masks_zip = client.predict(handle_file(str(toy_video)), "circle, square", api_name="/segment")
    assert Path(overlay).suffix == ".mp4" and Path(overlay).stat().st_size > 0
    with zipfile.ZipFile(masks_zip) as archive:
        names = sorted(archive.namelist())
    assert names == [*(f"toy/{i:05d}.png" for i in range(9)), "toy/labels.json"]

    with pytest.raises(AppError, match="no classes: type the names to segment"):
        client.predict(handle_file(str(toy_video)), " ", api_name="/segment")
    # Too long: refused in one line naming the upload; the same clip cut by start / end is segmented.
    with pytest.raises(AppError, match=r"^long\.mp4 is 5\.0 s long; this demo segments at most 3\.0 s per job: set "
                                       r"Start and End"):
        client.predict(handle_file(str(long_video)), "circle", api_name="/segment")
    _, masks_zip = client.predict(handle_file(str(long_video)), "circle", "1", "0:02.5", api_name="/segment")
    with zipfile.ZipFile(masks_zip) as archive:
        assert len([n for n in archive.namelist() if n.endswith(".png")]) == 12  # frames 8..19 at 8 fps
    # Not a video: the visitor reads the upload's name, never the server's temporary folder.
    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video")
    with pytest.raises(AppError) as error:
        client.predict(handle_file(str(notes)), "circle", api_name="/segment")
    assert str(error.value).startswith("notes.mp4 is not a readable video") and "/" not in str(error.value)
    # Over the upload limit (0.5 MB): refused before it is sent, from the limit the server publishes.
    big = tmp_path / "big.mp4"
    big.write_bytes(toy_video.read_bytes() + bytes(600_000))
    with pytest.raises(ValueError, match="exceeds the maximum file size of 524288 bytes"):
        client.predict(handle_file(str(big)), "circle", api_name="/segment")


@pytest.mark.slow
@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver")
def test_browser_signs_in_cuts_a_long_upload_segments_and_plays(demo_url, long_video, tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="the browser test needs selenium")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from vidseg.demo import EXAMPLE_SEEDS
    from vidseg.toyworld import render_clip

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1800",
                 "--autoplay-policy=no-user-gesture-required", "--mute-audio"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    try:
        wait = WebDriverWait(driver, 120)
        driver.get(demo_url)
        # Sign in (the server was started with --auth).
        wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "input[type=password]")))
        driver.find_element(By.CSS_SELECTOR, "input[type=text]").send_keys(AUTH[0])
        driver.find_element(By.CSS_SELECTOR, "input[type=password]").send_keys(AUTH[1])
        driver.find_element(By.XPATH, "//button[contains(., 'Login')]").click()
        run = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "#run")))
        # Bad input: one line in the page, no traceback.
        run.click()
        toast = wait.until(ec.visibility_of_element_located((By.XPATH, "//*[contains(text(), 'no video')]")))
        assert "upload one first" in toast.text and "Traceback" not in driver.page_source
        # An example toy clip fills the video and its classes: Segment runs at once.
        example = render_clip(EXAMPLE_SEEDS[0]).classes
        driver.find_element(By.CSS_SELECTOR, "#examples [data-testid=dataset-cell-0-1]").click()
        box = driver.find_element(By.CSS_SELECTOR, "#classes textarea, #classes input")
        wait.until(lambda d: box.get_attribute("value") == ", ".join(example))
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#video-in video")))
        run.click()
        wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "#status"), f"Segmented: {', '.join(example)}"))
        driver.find_element(By.CSS_SELECTOR, "#video-in button[aria-label=Clear]").click()
        driver.find_element(By.CSS_SELECTOR, "#video-in input[type=file]").send_keys(str(long_video))
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#video-in video")))
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(Keys.DELETE, "circle, square")
        # Longer than the server's limit: refused in one line naming the upload, then cut in the page.
        run.click()
        toast = wait.until(ec.visibility_of_element_located((By.XPATH, "//*[contains(text(), 'long.mp4 is 5.0 s')]")))
        assert "set Start and End" in toast.text and "/tmp" not in toast.text
        driver.find_element(By.CSS_SELECTOR, "#start textarea, #start input").send_keys("1")
        driver.find_element(By.CSS_SELECTOR, "#end textarea, #end input").send_keys("0:02.1")
        run.click()
        wait.until(lambda d: d.execute_script(
            "const v = document.querySelector('#overlay video'); return v && v.readyState >= 2 && v.currentTime > 0"))
        wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "#status"), "Segmented: circle, square"))
        summary = driver.find_element(By.CSS_SELECTOR, "#summary").text
        assert "circle" in summary and "square" in summary
        assert driver.find_elements(By.CSS_SELECTOR, "#heatmaps video")
        # Download the masks as the page offers them.
        hrefs = [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "#downloads a[href]")]
        assert any(h.endswith("saliency.npz") for h in hrefs), hrefs
        zip_href = next(h for h in hrefs if h.endswith("long_masks.zip"))
        with pytest.raises(urllib.error.HTTPError, match="401"):  # the files, too, need the sign-in
            urllib.request.urlopen(zip_href, timeout=30)
        cookies = "; ".join(f"{c['name']}={c['value']}" for c in driver.get_cookies())  # the signed-in session
        request = urllib.request.Request(zip_href, headers={"Cookie": cookies})
        (tmp_path / "masks.zip").write_bytes(urllib.request.urlopen(request, timeout=30).read())
        with zipfile.ZipFile(tmp_path / "masks.zip") as archive:
            assert len([n for n in archive.namelist() if n.endswith(".png")]) == 9  # frames 8..16 at 8 fps
        driver.save_screenshot(str(tmp_path / "demo.png"))
        assert (tmp_path / "demo.png").stat().st_size > 10_000
    finally:
        driver.quit()


@pytest.mark.parametrize("family", ["cogvideox", "wan", "hunyuan"])
def test_the_map_dropdown_offers_what_the_backbone_gives(family, tiny_model_dir, tiny_wan_model_dir,
                                                         tiny_hunyuan_model_dir):
    import gradio as gr

    from vidseg.demo import DemoJobs, build_demo
    from vidseg.pipeline import VideoSegmenter

    folder = {"cogvideox": tiny_model_dir, "wan": tiny_wan_model_dir, "hunyuan": tiny_hunyuan_model_dir}[family]
    demo = build_demo(DemoJobs(VideoSegmenter.from_pretrained(str(folder))))
    maps = next(b for b in demo.blocks.values() if isinstance(b, gr.Dropdown) and b.label == "Map")
    offered = [value for _, value in maps.choices]
    # A concept stream (CogVideoX, HunyuanVideo) also gives ConceptAttention; Wan's cross-attention does not.
    expected = ["imap", "gramcol", "cross_attention"] + (["concept_attention"] if family != "wan" else [])
    assert offered == expected


@pytest.fixture
def tiny_segmenter(tiny_model_dir):
    from vidseg.pipeline import VideoSegmenter

    segmenter = VideoSegmenter.from_pretrained(str(tiny_model_dir))
    segmenter.config.crf.enabled, segmenter.config.export.workers = False, 1
    return segmenter


def test_a_job_beyond_the_queue_is_told_the_demo_is_busy(tiny_segmenter, toy_video, tmp_path, monkeypatch):
    from vidseg.demo import DemoBusyError, DemoJobs, DemoLimits
    from vidseg.pipeline import VideoSegmenter

    running, release = threading.Event(), threading.Event()
    original = VideoSegmenter.compute_saliency

    def held(self, *args, **kwargs):  # the first job holds the model until the test lets it go
        running.set()
        assert release.wait(60)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(VideoSegmenter, "compute_saliency", held)
    jobs = DemoJobs(tiny_segmenter, tmp_path / "jobs", DemoLimits(max_waiting=1))
    waited: list[str] = []

    class Stages:  # records the stages a waiting job shows
        def start(self, stage, total=None):
            waited.append(stage)

        def lane(self):
            return self

        advance = finish = lambda self, *a: None

    results: dict[str, object] = {}

    def job(name, progress=None):
        try:
            results[name] = jobs.segment(toy_video, "circle", progress=progress)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            results[name] = exc

    first = threading.Thread(target=job, args=("first",))
    first.start()
    assert running.wait(60)
    second = threading.Thread(target=job, args=("second", Stages()))
    second.start()
    deadline = time.monotonic() + 30
    while "waiting for 1 job ahead" not in waited and time.monotonic() < deadline:
        time.sleep(0.05)
    assert waited[:1] == ["waiting for 1 job ahead"]
    with pytest.raises(DemoBusyError, match="^the demo is busy: one job is running and 1 waiting"):
        jobs.segment(toy_video, "circle")
    release.set()
    first.join(120)
    second.join(120)
    assert all(isinstance(results[name], dict) for name in ("first", "second")), results
    jobs.segment(toy_video, "circle")  # free again
    assert sorted(p.name for p in (tmp_path / "jobs").glob("job*")) == ["job00001", "job00002", "job00003"]


def test_old_jobs_are_removed_by_age_and_by_count(tiny_segmenter, tmp_path):
    from vidseg.demo import DemoJobs, DemoLimits

    jobs = DemoJobs(tiny_segmenter, tmp_path, DemoLimits(keep_minutes=30, jobs_kept=3))
    now = time.time()
    for i, age_min in enumerate([90, 40, 5, 4, 3, 2], start=1):  # oldest first, as jobs are numbered
        folder = tmp_path / f"job{i:05d}"
        (folder / "clip").mkdir(parents=True)
        os.utime(folder, (now - age_min * 60, now - age_min * 60))
    (tmp_path / "examples").mkdir()
    jobs.forget_old_jobs()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["examples", "job00004", "job00005", "job00006"]


def test_the_example_clips_are_toy_clips_with_their_shapes(tiny_segmenter, tmp_path):
    from vidseg.demo import DemoJobs
    from vidseg.toyworld import render_clip
    from vidseg.video.read import open_video

    examples = DemoJobs(tiny_segmenter, tmp_path).example_clips(seeds=(5, 6))
    for (video, classes), seed in zip(examples, (5, 6)):
        clip = render_clip(seed)
        assert classes == ", ".join(dict.fromkeys(clip.classes))
        with open_video(video) as reader:
            assert reader.info.num_frames == len(clip.frames)


def test_auth_from_pairs_and_files(tmp_path):
    from vidseg.demo import parse_auth
    from vidseg.errors import ConfigError

    users = tmp_path / "users.txt"
    users.write_text("# who may sign in\nann:one\n\n  bob:two:three\n")
    assert parse_auth(["eve:pw", str(users)]) == [("eve", "pw"), ("ann", "one"), ("bob", "two:three")]
    with pytest.raises(ConfigError, match="give user:password"):
        parse_auth(["nocolon"])
    users.write_text("ann\n")
    with pytest.raises(ConfigError, match="users.txt line 1: expected user:password"):
        parse_auth([str(users)])


def test_bad_limits_and_an_open_server_without_auth_are_reported(tiny_segmenter, tmp_path, caplog):
    from vidseg.demo import DemoJobs, DemoLimits, launch_demo
    from vidseg.errors import ConfigError

    with pytest.raises(ConfigError, match="must be positive"):
        DemoJobs(tiny_segmenter, tmp_path, DemoLimits(max_seconds=0))
    demo = launch_demo(tiny_segmenter, host="0.0.0.0", port=_free_port(), root=tmp_path, block=False)
    try:
        assert "serving on 0.0.0.0 with no --auth" in caplog.text
    finally:
        demo.close()


def test_job_files_and_uploads_are_removed_after_keep_minutes(tiny_segmenter, tmp_path):
    from gradio_client import Client, handle_file

    from vidseg.demo import DemoLimits, launch_demo
    from vidseg.toyworld import render_clip, write_toy_clip

    # A clip of its own: Gradio's cache is shared by every server of the test run (keyed by content).
    video, _ = write_toy_clip(tmp_path / "kept.mp4", render_clip(11, num_frames=9))

    port = _free_port()
    demo = launch_demo(tiny_segmenter, port=port, root=tmp_path / "jobs", limits=DemoLimits(keep_minutes=0.05),
                       block=False)  # 3 s, looked for every second
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        client.predict(handle_file(str(video)), "circle", api_name="/segment")
        uploads = [p for p in Path(demo.GRADIO_CACHE).glob("*/kept.mp4")]
        assert uploads and (tmp_path / "jobs" / "job00001").is_dir()
        deadline = time.monotonic() + 30
        while (any(p.exists() for p in uploads) or (tmp_path / "jobs" / "job00001").exists()) and \
                time.monotonic() < deadline:
            time.sleep(0.5)
        assert not any(p.exists() for p in uploads)
        assert sorted(p.name for p in (tmp_path / "jobs").iterdir()) == ["examples"]
    finally:
        demo.close()
