"""Offline material: ``vidseg make-tiny-model`` (a random-weight model of any family) and ``vidseg make-toy-clip``
(a toy-world clip with its true masks, for the shipped toy model)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from vidseg.cli._app import app, handle_errors
from vidseg.cli.progress import console
from vidseg.registry import BACKBONES


@app.command("make-tiny-model")
@handle_errors
def make_tiny_model_command(
    directory: Path = typer.Argument(..., help="Folder to write the model into (diffusers layout).", show_default=False),
    family: str = typer.Option(BACKBONES.names()[0], "--family", help=f"The model family: {BACKBONES.choices()}."),
    rope: bool = typer.Option(False, "--rope", help="A CogVideoX-5B-like variant (RoPE, DPM scheduler)."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
) -> None:
    """Write a tiny random-weight model (a few hundred KB) that --model DIR loads like the real ones.

    Its masks are meaningless: it exists to try the pipeline and run the tests without downloading weights.
    """
    from vidseg.models.tiny import make_tiny_model

    path = make_tiny_model(directory, family=family, rope=rope)
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    console.print(f"[green]wrote[/] tiny random-weight {BACKBONES.load(family).display_name} model to "
                  f"{path} ({size / 1e6:.1f} MB); use it with --model {path}", highlight=False)


@app.command("make-toy-clip")
@handle_errors
def make_toy_clip_command(
    path: Path = typer.Argument(..., help="Video file to write (mp4).", show_default=False),
    seed: int = typer.Option(0, "--seed", help="Which clip of the toy world (tools/train_toy_model.py trains on seeds "
                                               "from 1,000,000 on, so smaller seeds are held out)."),
    frames: int = typer.Option(24, "--frames", help="Number of frames (8 per second)."),
    size: str = typer.Option("192x128", "--size", help="Frame size WIDTHxHEIGHT in pixels."),
    objects: Optional[int] = typer.Option(None, "--objects", help="Number of shapes, 1-3. Default: drawn from the seed."),
    motion: bool = typer.Option(False, "--motion", help="Shapes that slide or spin on cue (each a verb or none, "
                                                        "during 30-70 % of the clip), with the verbs' truth."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
) -> None:
    """Write a toy-world clip (moving circles, squares, triangles, stars) and its true label maps.

    PATH gets the video; PATH's stem + _masks/ gets one single-channel PNG per frame (0 background, 1 circle,
    2 square, 3 triangle, 4 star). Segment it with the shipped toy model: vidseg predict PATH --classes <shapes>
    --model toy. With --motion, PATH's stem + _motion/ also gets each verb's true masks (<verb>/00000.png, 0 / 255)
    and motion.json; localize it with vidseg localize PATH --concepts <shapes, verbs> --model toy
    """
    from vidseg.errors import ConfigError
    from vidseg.toyworld import render_clip, render_motion_clip, write_toy_clip

    try:
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--size {size!r} is not WIDTHxHEIGHT, e.g. 192x128") from None
    if width < 16 or height < 16 or frames < 1:
        raise ConfigError(f"a toy clip needs at least 1 frame of 16 x 16 pixels, not {frames} x {width}x{height}")
    if objects is not None and not 1 <= objects <= 3:
        raise ConfigError(f"--objects is {objects}; a toy clip holds 1 to 3 shapes")
    if path.exists() and path.is_dir():
        raise ConfigError(f"{path} is a folder; give the video file to write, e.g. toy.mp4")
    render = render_motion_clip if motion else render_clip
    clip = render(seed, num_frames=frames, height=height, width=width, num_objects=objects)
    video, masks = write_toy_clip(path, clip)
    truth = f" and {video.with_name(video.stem + '_motion')}/" if clip.verbs else ""
    console.print(f"[green]wrote[/] {video} ({frames} frames, {width}x{height}: {clip.caption}), {masks}/{truth}",
                  highlight=False)
    if clip.verbs:
        console.print(f"localize it with: vidseg localize {video} --concepts \"{', '.join(clip.classes + clip.verb_names)}\" "
                      f"--model toy", highlight=False)
    else:
        console.print(f"segment it with: vidseg predict {video} --classes {' '.join(clip.classes)} --model toy",
                      highlight=False)


@app.command("make-toy-dataset")
@handle_errors
def make_toy_dataset_command(
    root: Path = typer.Argument(..., help="Folder to write the VSPW-layout tree into.", show_default=False),
    videos: int = typer.Option(8, "--videos", help="Number of clips."),
    first_seed: int = typer.Option(600_000, "--first-seed", help="Seed of the first clip (the next ones follow)."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
) -> None:
    """Write toy-world clips as a labeled VSPW-layout tree: data/toy<seed>/origin/ and mask/, classes.txt (the four
    shapes, the vocabulary) and val.txt. Fit the toy model to it with vidseg calibrate ROOT --classes-file
    ROOT/classes.txt --model toy --set video.frame_folder_fps=8 -o toy-calibrated.yaml"""
    from vidseg.errors import ConfigError
    from vidseg.toyworld import write_toy_dataset

    if videos < 1:
        raise ConfigError(f"--videos is {videos}; give at least 1")
    if root.exists():
        raise ConfigError(f"{root} exists; give a new folder for the dataset")
    write_toy_dataset(root, range(first_seed, first_seed + videos))
    console.print(f"[green]wrote[/] {videos} toy clips to {root} (24 frames at 8 fps, 192x128); calibrate on it: "
                  f"vidseg calibrate {root} --classes-file {root / 'classes.txt'} --model toy --set "
                  f"video.frame_folder_fps=8 -o toy-calibrated.yaml", highlight=False)
