"""The web demo: `vidseg demo` with the tiny model, driven by headless Chromium (Selenium) and by gradio_client."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
import warnings
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("gradio", reason="the demo needs the vidseg[demo] extra")
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


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
                                   str(port), "--no-crf"], stdout=out, stderr=subprocess.STDOUT,
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


@pytest.mark.slow
def test_segment_api_with_gradio_client(demo_url, toy_video):
    from gradio_client import Client, handle_file

    client = Client(demo_url, verbose=False)
    assert list(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == ["/segment"]
    overlay, masks_zip = client.predict(handle_file(str(toy_video)), "circle, square", api_name="/segment")
    assert Path(overlay).suffix == ".mp4" and Path(overlay).stat().st_size > 0
    with zipfile.ZipFile(masks_zip) as archive:
        names = sorted(archive.namelist())
    assert names == [*(f"toy/{i:05d}.png" for i in range(9)), "toy/labels.json"]
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="no classes: type the names to segment"):
        client.predict(handle_file(str(toy_video)), " ", api_name="/segment")


@pytest.mark.slow
@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver")
def test_browser_uploads_segments_and_plays(demo_url, toy_video, tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="the browser test needs selenium")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1800",
                 "--autoplay-policy=no-user-gesture-required", "--mute-audio"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    try:
        wait = WebDriverWait(driver, 120)
        driver.get(demo_url)
        run = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "#run")))
        # Bad input: one line in the page, no traceback.
        run.click()
        toast = wait.until(ec.visibility_of_element_located((By.XPATH, "//*[contains(text(), 'no video')]")))
        assert "upload one first" in toast.text and "Traceback" not in driver.page_source
        driver.find_element(By.CSS_SELECTOR, "#video-in input[type=file]").send_keys(str(toy_video))
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#video-in video")))
        box = driver.find_element(By.CSS_SELECTOR, "#classes textarea, #classes input")
        box.send_keys("circle, square")
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
        zip_href = next(h for h in hrefs if h.endswith("toy_masks.zip"))
        (tmp_path / "masks.zip").write_bytes(urllib.request.urlopen(zip_href, timeout=30).read())
        with zipfile.ZipFile(tmp_path / "masks.zip") as archive:
            assert len([n for n in archive.namelist() if n.endswith(".png")]) == 9
        driver.save_screenshot(str(tmp_path / "demo.png"))
        assert (tmp_path / "demo.png").stat().st_size > 10_000
    finally:
        driver.quit()


@pytest.mark.parametrize("family", ["cogvideox", "wan"])
def test_the_map_dropdown_offers_what_the_backbone_gives(family, tiny_model_dir, tiny_wan_model_dir):
    import gradio as gr

    from vidseg.demo import DemoJobs, build_demo
    from vidseg.pipeline import VideoSegmenter

    folder = tiny_model_dir if family == "cogvideox" else tiny_wan_model_dir
    demo = build_demo(DemoJobs(VideoSegmenter.from_pretrained(str(folder))))
    maps = next(b for b in demo.blocks.values() if isinstance(b, gr.Dropdown) and b.label == "Map")
    offered = [value for _, value in maps.choices]
    expected = ["imap", "gramcol", "cross_attention"] + (["concept_attention"] if family == "cogvideox" else [])
    assert offered == expected
