"""The MeViS LLM judge (method.md §14): the three image grids it sees, its Batch API requests, and its scores.

The official script (``eval_compressed.py`` of the IMAP repository) is not available to vidseg, so nothing here is
checked pixel for pixel against it. What §14 states is followed exactly: 12 frames sampled at ``GRID_FRAMES`` of a
49-frame clip, each matched to latent map frame ``LATENT_FRAMES`` (integer linspace over the 13 latent frames); the
raw frames; an overlay where each map frame is min–max normalised, bilinearly resized to the frame, and thresholded
at its mean, pixels below the mean darkened by half; the normalised map alone through the inferno colormap; the
caption as the prompt; o3-pro at temperature 0; five criteria scored 1–5 and returned as XML.

Our choices where §14 is silent (each could differ from the official script):

* tiles in 4 columns × 3 rows, in time order row by row, no gaps, borders or titles, each at the frame's size (or
  ``tile_size``);
* the mean threshold is the mean of the resized map; a constant map normalises to all zeros (nothing darkened);
* resizing with ``cv2.INTER_LINEAR`` (maps; frames with ``cv2.INTER_AREA`` when ``tile_size`` shrinks them);
* "darkened by half" = ``pixel // 2`` per channel;
* the heatmap is OpenCV's inferno (``cv2.COLORMAP_INFERNO``) of ``round(255 * map)``, not matplotlib's;
* JPEG quality 95 (OpenCV's encoder).

The judge's system prompt is not shipped with vidseg: ``read_judge_prompt`` reads it from the user's checkout of the
IMAP repository.
"""

from __future__ import annotations

import ast
import base64
import json
import math
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vidseg.errors import ConfigError, OutputError
from vidseg.files import write_bytes_atomic

NUM_CLIP_FRAMES = 49
NUM_LATENT_FRAMES = 13
GRID_FRAMES = (0, 4, 8, 13, 17, 21, 26, 30, 34, 39, 43, 48)  # np.linspace(0, 48, 12).astype(int)
# The latent map frame shown with each sampled frame: 0..10 and 12 (latent frame 11 is never shown).
LATENT_FRAMES = tuple(int(i) for i in np.linspace(0, NUM_LATENT_FRAMES - 1, len(GRID_FRAMES)).astype(int))
GRID_COLUMNS, GRID_ROWS = 4, 3
GRID_NAMES = ("raw_grid", "overlay_grid", "heatmap_grid")  # also the order the judge sees them in
JPEG_QUALITY = 95

CRITERIA = {
    "SL": "spatial localization",
    "TL": "temporal localization",
    "PR": "prompt relevance",
    "SS": "sparseness",
    "OBJ": "object shape",
}


# --------------------------------------------------------------------------------------------------------- grids


def judge_grids(frames: np.ndarray, saliency: Any, *, tile_size: tuple[int, int] | None = None
                ) -> dict[str, np.ndarray]:
    """The three grids the judge sees, from a 49-frame clip and its 13-frame map of one concept.

    Args:
        frames: the clip, uint8 RGB ``[49, H, W, 3]``.
        saliency: one concept's map ``[13, h, w]`` (numpy or torch, any float dtype).
        tile_size: ``(height, width)`` of each tile; None keeps the frame size ``(H, W)``.

    Returns:
        ``raw_grid``, ``overlay_grid``, ``heatmap_grid``: uint8 RGB ``[3 * H, 4 * W, 3]`` each (module docstring).
    """
    frames = np.asarray(frames)
    maps = _as_float_maps(saliency)
    if frames.ndim != 4 or frames.shape[0] != NUM_CLIP_FRAMES or frames.shape[-1] != 3:
        raise ConfigError(f"the judge grids need the clip's {NUM_CLIP_FRAMES} RGB frames [49, H, W, 3], got shape "
                          f"{tuple(frames.shape)}")
    if maps.shape[0] != NUM_LATENT_FRAMES:
        raise ConfigError(f"the judge grids need a map of {NUM_LATENT_FRAMES} latent frames [13, h, w], got shape "
                          f"{tuple(maps.shape)}")
    return sampled_grids(frames[list(GRID_FRAMES)], maps[list(LATENT_FRAMES)], tile_size=tile_size)


def sampled_grids(samples: np.ndarray, maps: Any, *, tile_size: tuple[int, int] | None = None
                  ) -> dict[str, np.ndarray]:
    """``judge_grids`` from the 12 frames already sampled: ``samples`` uint8 ``[12, H, W, 3]`` (frames
    ``GRID_FRAMES``) and ``maps`` ``[12, h, w]`` (latent frames ``LATENT_FRAMES``)."""
    import cv2

    samples = np.asarray(samples)
    maps = _as_float_maps(maps)
    count = GRID_COLUMNS * GRID_ROWS
    if samples.dtype != np.uint8 or samples.ndim != 4 or samples.shape[0] != count or samples.shape[-1] != 3:
        raise ConfigError(f"expected {count} uint8 RGB frames [12, H, W, 3], got {samples.dtype} "
                          f"{tuple(samples.shape)}")
    if maps.shape[0] != count:
        raise ConfigError(f"expected {count} map frames [12, h, w], got shape {tuple(maps.shape)}")
    height, width = tile_size if tile_size is not None else samples.shape[1:3]
    if height < 1 or width < 1:
        raise ConfigError(f"tile_size must be positive (height, width), got {tile_size}")
    raw, overlay, heat = [], [], []
    for frame, map_frame in zip(samples, maps):
        if frame.shape[:2] != (height, width):
            frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
        norm = cv2.resize(minmax(map_frame), (width, height), interpolation=cv2.INTER_LINEAR)
        below = norm < norm.mean()
        dark = frame.copy()
        dark[below] = frame[below] // 2
        u8 = np.clip(np.rint(norm * 255.0), 0, 255).astype(np.uint8)
        colour = cv2.cvtColor(cv2.applyColorMap(u8, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)
        raw.append(frame)
        overlay.append(dark)
        heat.append(colour)
    return {"raw_grid": tile_grid(raw), "overlay_grid": tile_grid(overlay), "heatmap_grid": tile_grid(heat)}


def tile_grid(tiles: list[np.ndarray], columns: int = GRID_COLUMNS) -> np.ndarray:
    """Tiles ``[H, W, 3]`` (all one size) laid row by row, ``columns`` per row, no gaps: ``[rows * H, columns * W,
    3]``. Tile k sits at row ``k // columns``, column ``k % columns``."""
    rows = math.ceil(len(tiles) / columns)
    height, width = tiles[0].shape[:2]
    grid = np.zeros((rows * height, columns * width, 3), dtype=tiles[0].dtype)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, columns)
        grid[r * height:(r + 1) * height, c * width:(c + 1) * width] = tile
    return grid


def minmax(map_frame: np.ndarray) -> np.ndarray:
    """One map frame scaled to [0, 1] (float32); a constant frame gives zeros rather than a division by zero."""
    map_frame = np.asarray(map_frame, dtype=np.float32)
    low, high = float(map_frame.min()), float(map_frame.max())
    if not high > low:
        return np.zeros_like(map_frame)
    return ((map_frame - low) / (high - low)).astype(np.float32)


def _as_float_maps(maps: Any) -> np.ndarray:
    if hasattr(maps, "detach"):  # torch tensor
        maps = maps.detach().float().cpu().numpy()
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim != 3:
        raise ConfigError(f"a concept's map must be [frames, h, w], got shape {tuple(maps.shape)}")
    if not np.isfinite(maps).all():
        raise ConfigError("the concept's map holds NaN or infinite values; the judge grids need finite maps")
    return maps


def write_judge_grids(out_dir: str | Path, grids: Mapping[str, np.ndarray]) -> dict[str, Path]:
    """Write each grid as ``out_dir/<name>.jpg`` (JPEG quality 95, atomically); returns name -> path."""
    import cv2

    out_dir = Path(out_dir)
    paths = {}
    for name, grid in grids.items():
        grid = np.asarray(grid)
        if grid.dtype != np.uint8 or grid.ndim != 3 or grid.shape[-1] != 3:
            raise ConfigError(f"grid {name} must be uint8 RGB [H, W, 3], got {grid.dtype} {tuple(grid.shape)}")
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise OutputError(f"could not encode {name} as JPEG")
        paths[name] = write_bytes_atomic(out_dir / f"{name}.jpg", data.tobytes())
    return paths


# ------------------------------------------------------------------------------------------------------ requests


def judge_request(custom_id: str, caption: str, images: Mapping[str, str | Path], system_prompt: str,
                  model: str = "o3-pro", *, temperature: float | None = 0, api: str = "chat") -> dict[str, Any]:
    """One OpenAI Batch API request line asking the judge to score a clip's grids.

    Args:
        custom_id: ``<clip name>::<map key>``, e.g. ``0a1b2c3d4e_1::sel_imap_layers`` (``judge_scores`` groups by
            the part after ``::``).
        caption: the clip's caption; the user message starts with ``Prompt: <caption>``.
        images: ``raw_grid``, ``overlay_grid``, ``heatmap_grid`` -> JPEG file; sent in that order as base64 data
            URLs.
        system_prompt: the judge's instructions (``read_judge_prompt``).
        temperature: 0 as in §14; None leaves the field out (OpenAI's reasoning models reject other values than
            their default).
        api: ``chat`` (``/v1/chat/completions``, ``messages``) or ``responses`` (``/v1/responses``, ``input``:
            the endpoint OpenAI serves o3-pro on).
    """
    if api not in ("chat", "responses"):
        raise ConfigError(f"api must be chat or responses, not {api!r}")
    if set(images) != set(GRID_NAMES):
        raise ConfigError(f"the judge needs exactly the images {', '.join(GRID_NAMES)}; got {', '.join(images)}")
    urls = []
    for name in GRID_NAMES:
        path = Path(images[name])
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read the judge image {path}: {exc.strerror}") from None
        urls.append("data:image/jpeg;base64," + base64.b64encode(data).decode("ascii"))
    text = f"Prompt: {caption}"
    body: dict[str, Any] = {"model": model}
    if temperature is not None:
        body["temperature"] = temperature
    if api == "chat":
        user = [{"type": "text", "text": text}] + [{"type": "image_url", "image_url": {"url": u}} for u in urls]
        body["messages"] = [{"role": "system", "content": system_prompt}, {"role": "user", "content": user}]
        url = "/v1/chat/completions"
    else:
        user = [{"type": "input_text", "text": text}] + [{"type": "input_image", "image_url": u} for u in urls]
        body["input"] = [{"role": "system", "content": system_prompt}, {"role": "user", "content": user}]
        url = "/v1/responses"
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body}


def write_judge_requests(jsonl_path: str | Path, requests: Iterable[Mapping[str, Any]]) -> int:
    """Replace ``jsonl_path`` with ``requests``, one JSON object per line, atomically (streamed: a request with
    its three images is a few MB, so they are never all held at once). A ``custom_id`` given twice is an error.
    Returns the number of lines."""
    seen: set[str] = set()

    def lines() -> Iterator[str]:
        for request in requests:
            custom_id = _custom_id(request)
            if custom_id in seen:
                raise ConfigError(f"two judge requests share the custom_id {custom_id!r}")
            seen.add(custom_id)
            yield json.dumps(request, ensure_ascii=False)

    return _write_lines_atomic(Path(jsonl_path), lines())


def append_judge_requests(jsonl_path: str | Path, requests: Iterable[Mapping[str, Any]]) -> int:
    """Add ``requests`` to the JSONL file, keyed by ``custom_id``: a request whose id is already in the file
    replaces the old line (so a resumed run never duplicates a clip). The file is rewritten atomically; returns
    the number of lines it now holds."""
    jsonl_path = Path(jsonl_path)
    new = {_custom_id(r): r for r in requests}

    def lines() -> Iterator[str]:
        for number, line in _read_lines(jsonl_path):
            try:
                custom_id = json.loads(line)["custom_id"]
            except (ValueError, KeyError, TypeError):
                raise ConfigError(f"line {number} of {jsonl_path} is not a judge request; remove the file or pass "
                                  f"another") from None
            if custom_id not in new:
                yield line
        for request in new.values():
            yield json.dumps(request, ensure_ascii=False)

    return _write_lines_atomic(jsonl_path, lines())


def _custom_id(request: Mapping[str, Any]) -> str:
    custom_id = request.get("custom_id") if isinstance(request, Mapping) else None
    if not isinstance(custom_id, str) or not custom_id:
        raise ConfigError("a judge request needs a non-empty custom_id string")
    return custom_id


def _read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Non-blank lines (1-based numbers) of a text file; a missing file has none."""
    try:
        with path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if line.strip():
                    yield number, line.rstrip("\n")
    except FileNotFoundError:
        return
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None


def _write_lines_atomic(path: Path, lines: Iterable[str]) -> int:
    """Stream ``lines`` into a temporary sibling, then rename it onto ``path`` (readers see the old file or the
    complete new one). ``files.write_bytes_atomic`` needs the whole content in memory; this does not."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror}; choose a writable output folder") from None
    count = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for line in lines:
                f.write(line + "\n")
                count += 1
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count


# ------------------------------------------------------------------------------------------------- system prompt

_PROMPT_NAME = re.compile(r"system", re.IGNORECASE)  # SYSTEM_PROMPT, system_prompt, SYSTEM_MSG, ...


def read_judge_prompt(checkout_dir: str | Path) -> str:
    """The judge's system prompt, read from a checkout of the official IMAP repository.

    ``eval_compressed.py`` is looked for anywhere under ``checkout_dir`` (the folder itself may also be given as
    the file) and parsed with ``ast`` (never run). Candidates are string constants (implicit and ``+``
    concatenations, ``textwrap.dedent(...)`` and ``.strip()`` included) assigned to a variable, attribute or
    keyword argument whose name contains "system" (case-insensitive: ``SYSTEM_PROMPT``, ``system_prompt``, ...),
    and the ``content`` of a ``{"role": "system", ...}`` dict literal; the longest wins.
    """
    root = Path(checkout_dir)
    if root.is_file() and root.name == "eval_compressed.py":
        scripts = [root]
    elif root.is_dir():
        scripts = sorted(root.rglob("eval_compressed.py"))
    else:
        raise ConfigError(f"{root} does not exist; pass the folder of your IMAP checkout that holds "
                          f"eval_compressed.py")
    if not scripts:
        raise ConfigError(f"no eval_compressed.py under {root}; pass the folder of your IMAP checkout that holds "
                          f"eval_compressed.py")
    candidates: list[str] = []
    for script in scripts:
        try:
            tree = ast.parse(script.read_text(encoding="utf-8"), filename=str(script))
        except (OSError, UnicodeDecodeError, SyntaxError) as exc:
            raise ConfigError(f"cannot parse {script}: {exc}; pass a checkout with an intact eval_compressed.py") \
                from None
        candidates.extend(_prompt_candidates(tree))
    candidates = [c for c in candidates if c.strip()]
    if not candidates:
        raise ConfigError(f"found no system prompt in {', '.join(map(str, scripts[:2]))}; pass the folder of your "
                          f"IMAP checkout that holds the judge's eval_compressed.py")
    return max(candidates, key=len)


def _prompt_candidates(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(_PROMPT_NAME.search(_target_name(t)) for t in targets):
                text = _fold_string(node.value)
                if text is not None:
                    yield text
        elif isinstance(node, ast.keyword) and node.arg and _PROMPT_NAME.search(node.arg):
            text = _fold_string(node.value)
            if text is not None:
                yield text
        elif isinstance(node, ast.Dict):
            items = {_fold_string(k): v for k, v in zip(node.keys, node.values) if k is not None}
            if "role" in items and _fold_string(items["role"]) == "system" and "content" in items:
                text = _fold_string(items["content"])
                if text is not None:
                    yield text


def _target_name(target: ast.AST) -> str:
    if isinstance(target, ast.Name):
        return target.id
    if isinstance(target, ast.Attribute):
        return target.attr
    return ""


def _fold_string(node: ast.AST | None) -> str | None:
    """The value of a string expression built from constants only, else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _fold_string(node.left), _fold_string(node.right)
        return left + right if left is not None and right is not None else None
    if isinstance(node, ast.Call) and not node.keywords:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name == "dedent" and len(node.args) == 1:
            import textwrap

            inner = _fold_string(node.args[0])
            return textwrap.dedent(inner) if inner is not None else None
        if name in ("strip", "lstrip", "rstrip") and not node.args and isinstance(func, ast.Attribute):
            inner = _fold_string(func.value)
            return getattr(inner, name)() if inner is not None else None
    return None


# -------------------------------------------------------------------------------------------------------- scores

_NUMBER = r"([0-9]+(?:\.[0-9]+)?)(?:\s*/\s*5)?"
_ALIASES = {
    "SL": r"sl|spatial[ _-]?locali[sz]ation",
    "TL": r"tl|temporal[ _-]?locali[sz]ation",
    "PR": r"pr|prompt[ _-]?relevance",
    "SS": r"ss|sparseness|sparsity",
    "OBJ": r"obj|object[ _-]?shape",
}
_WRAPPERS = r"score|criterion|item|metric"
_SCORE_PATTERNS = {
    key: (
        # <SL>4</SL>, <sl> 4 </sl>, <spatial_localization>4</spatial_localization>, <SL>4/5</SL>
        re.compile(rf"<\s*(?:{alias})\s*>\s*{_NUMBER}\s*<\s*/\s*(?:{alias})\s*>", re.IGNORECASE),
        # <score name="SL">4</score>, <criterion id='spatial localization'>4</criterion>
        re.compile(rf"<\s*(?:{_WRAPPERS})\b[^>]*?\b(?:name|id|key|type|criterion)\s*=\s*[\"']?\s*(?:{alias})\s*"
                   rf"[\"']?[^>]*>\s*{_NUMBER}\s*<\s*/\s*(?:{_WRAPPERS})\s*>", re.IGNORECASE),
    )
    for key, alias in _ALIASES.items()
}


def parse_judge_scores(content: str) -> dict[str, float | None]:
    """The five scores in a judge's answer; None for a criterion that is absent or outside 1–5.

    Accepted, case-insensitively, for each criterion (SL shown): ``<SL>4</SL>``, ``<spatial_localization>4
    </spatial_localization>`` (also ``-``, a space or nothing between the words, and "localisation"), and
    ``<score name="SL">4</score>`` (wrapper ``score``/``criterion``/``item``/``metric``, attribute
    ``name``/``id``/``key``/``type``/``criterion``, quoted or not, either name of the criterion). A value may be
    written ``4/5`` and may have decimals. Long names: TL ``temporal_localization``, PR ``prompt_relevance``, SS
    ``sparseness`` or ``sparsity``, OBJ ``object_shape``. When a criterion is given several times the last one
    counts (answers put their final scores last).
    """
    scores: dict[str, float | None] = {}
    for key, patterns in _SCORE_PATTERNS.items():
        found = [(m.start(), m.group(1)) for p in patterns for m in p.finditer(content)]
        value = float(max(found)[1]) if found else None
        scores[key] = value if value is not None and 1.0 <= value <= 5.0 else None
    return scores


@dataclass
class CriterionStats:
    """One criterion over one method's requests: ``mean`` of the scores parsed (None without any), ``count``
    parsed, ``failed`` not parsed (request failed, criterion missing or outside 1–5)."""

    mean: float | None
    count: int
    failed: int


@dataclass
class MethodScores:
    """The judge's scores of one method (map key): ``requests`` answered lines, ``failed_requests`` among them
    with an error, a non-200 status or no answer text; ``criteria`` in ``CRITERIA`` order."""

    method: str
    requests: int
    failed_requests: int
    criteria: dict[str, CriterionStats]


@dataclass
class JudgeScores:
    """Every method's scores from one batch output file; ``per_request`` holds each custom_id's five scores
    (None where not parsed)."""

    source: Path
    methods: dict[str, MethodScores]
    per_request: dict[str, dict[str, float | None]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"source": str(self.source), "methods": {k: asdict(v) for k, v in self.methods.items()},
                "per_request": self.per_request}


def judge_scores(results_jsonl: str | Path) -> JudgeScores:
    """Score table of an OpenAI Batch **output** file (one line per request: ``{"id", "custom_id", "response":
    {"status_code", "body"}, "error"}``), grouped by method: the part of ``custom_id`` after ``::``.

    The answer text is ``body.choices[0].message.content`` (chat completions) or the ``output_text`` items of
    ``body.output`` (responses API). A line with an error, a status other than 200 or no text fails all five
    criteria; an answer missing a criterion fails that criterion (``parse_judge_scores``). A custom_id that
    appears again (a retried batch appended) is counted once, from its last line. A line that is not a JSON
    object with a custom_id is a ``ConfigError``: the file is not a batch output.
    """
    path = Path(results_jsonl)
    if not path.is_file():
        raise ConfigError(f"judge results file {path} does not exist; pass the batch output .jsonl")
    per_request: dict[str, dict[str, float | None]] = {}
    failed: dict[str, bool] = {}
    for number, line in _read_lines(path):
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict) or not isinstance(record.get("custom_id"), str):
            raise ConfigError(f"line {number} of {path} is not a batch output record (a JSON object with a "
                              f"custom_id); pass the OpenAI batch output .jsonl")
        custom_id = record["custom_id"]
        content = _answer_text(record)
        per_request.pop(custom_id, None)  # a later line replaces the earlier one, and goes last
        failed[custom_id] = content is None
        per_request[custom_id] = parse_judge_scores(content) if content is not None else dict.fromkeys(CRITERIA)
    if not per_request:
        raise ConfigError(f"judge results file {path} is empty; pass the OpenAI batch output .jsonl")
    groups: dict[str, list[str]] = {}
    for custom_id in per_request:
        groups.setdefault(method_of(custom_id), []).append(custom_id)
    methods = {}
    for method, ids in groups.items():
        criteria = {}
        for key in CRITERIA:
            values = [per_request[i][key] for i in ids if per_request[i][key] is not None]
            criteria[key] = CriterionStats(sum(values) / len(values) if values else None, len(values),
                                           len(ids) - len(values))
        methods[method] = MethodScores(method, len(ids), sum(failed[i] for i in ids), criteria)
    return JudgeScores(path, methods, per_request)


def method_of(custom_id: str) -> str:
    """``<clip>::<key>`` -> ``<key>``; an id without ``::`` belongs to the method ``""``."""
    return custom_id.partition("::")[2]


def _answer_text(record: Mapping[str, Any]) -> str | None:
    """The judge's answer text of one output line, or None for a failed request."""
    response = record.get("response")
    if record.get("error") or not isinstance(response, dict) or response.get("status_code") != 200:
        return None
    body = response.get("body")
    if not isinstance(body, dict):
        return None
    texts: list[str] = []
    choices = body.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        content = (choices[0].get("message") or {}).get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):  # content parts
            texts.extend(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    for item in body.get("output") or []:  # responses API
        if isinstance(item, dict) and isinstance(item.get("content"), list):
            texts.extend(p["text"] for p in item["content"]
                         if isinstance(p, dict) and p.get("type") == "output_text" and isinstance(p.get("text"), str))
    text = "\n".join(texts)
    return text if text.strip() else None


def format_judge_table(scores: JudgeScores) -> str:
    """A markdown table: one row per method, each criterion as ``mean (scored/requests)``."""
    head = ["method", "requests", "failed", *CRITERIA]
    rows = [head, ["---"] * len(head)]
    for method in sorted(scores.methods):
        m = scores.methods[method]
        cells = [f"{c.mean:.2f} ({c.count}/{m.requests})" if c.mean is not None else f"- (0/{m.requests})"
                 for c in m.criteria.values()]
        rows.append([method or "(no key)", str(m.requests), str(m.failed_requests), *cells])
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)
