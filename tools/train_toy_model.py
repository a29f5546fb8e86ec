"""Train a toy-world model: a small CogVideoX meant to segment the toy world, for ``vidseg predict --model DIR``.

The model is the real diffusers ``CogVideoXTransformer3DModel`` (trained), with a frozen
``AutoencoderKLCogVideoX`` whose encoder is set to keep each 2 x 2-pixel quadrant's colour
(``vidseg.models.tiny.colour_keeping_encoder``; its decoder is random) and a frozen random T5 encoder, all built by
``vidseg.models.cogvideox.parts.build_tiny_pipeline`` at ``TOY_SPEC``'s shape, and it is saved in diffusers layout to ``--out`` (with ``configs/toy.yaml`` as its
``vidseg.yaml``). Training data: a pool of 9-frame toy-world clips (``vidseg.toyworld``, seeds from ``TRAIN_SEED0``)
and a pool of single frames (seeds from ``FRAME_SEED0``; evaluation uses seeds below both), encoded once by the
frozen VAE through the same functions ``vidseg predict`` uses. Three steps in four are single-frame batches: a
frame has a third of a clip's tokens, so the shapes are seen about three times as often per second of CPU.

Loss = v-prediction MSE (the diffusion objective, CogVideoX-2B's DDIM schedule) + an **auxiliary grounding loss**
up to ``AUX_MAX_T``: ``GroundingReader`` on the read-out's own quantities in the map layers, computed through
vidseg's concept stream (``vidseg.models.cogvideox.capture.concept_stream_attention`` with a training reader), for every
head, plus ``TokenProbe``, a training-only linear classifier of every token's label from the video states of a
few blocks (not saved), which gives every token a signal to learn the shapes from.

So the toy model is *trained to ground its words*: it tests vidseg's plumbing and read-out on maps that mean
something; it is no evidence for the paper's claim that grounding emerges without such a loss.

Reproducible: everything is seeded and single-process; ``--threads`` fixes torch's thread count (results match
bit for bit only at the same thread count and torch build). ``--resume`` continues from the training state saved
beside ``--out`` (optimizer, schedule, probe, random generators, step) and gives the same weights as a run that
was never stopped, so a long CPU run can be spread over several sittings.

    python tools/train_toy_model.py --out toy-model/ --pool-cache ~/.cache/vidseg [--resume]
    vidseg predict toy.mp4 --classes circle square --model toy-model/

The shipped ``--model toy`` (``vidseg/weights/toy``) is this script's run with ``--steps 6000 --decay-steps 2000``
(defaults otherwise; ~65 min of steps at 0.66 s/step plus ~7 min building the pools on 2 CPU cores, 2026-12-05):
validation token mIoU 0.559 at step 6,000, and mean IoU 0.562 through the library pipeline on
``tools/toy_bench.py``'s 24 held-out clips. The README says what the runs measured.

Verbs (``--init DIR --motion-p P``): a fine-tune from a finished noun model on motion windows as well, with the
encoder's motion channel. Tried three times (docs/toy-world.md); none localizes verbs in time, so none is shipped.
The last: ``--init vidseg/weights/toy --motion-p 0.6 --steps 1500 --decay-steps 1500 --lr 5e-4 --pool 400
--frame-pool 800 --motion-pool 1200``, scored at step 1,000.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vidseg.config import load_config  # noqa: E402
from vidseg.inversion import invert_ddim  # noqa: E402
from vidseg.maps import LayerTensors  # noqa: E402
from vidseg.models.cogvideox.backbone import encode_frames, predict_velocity, t5_embeddings, token_grid  # noqa: E402
from vidseg.models.cogvideox.capture import concept_stream_attention, read_concept_maps  # noqa: E402
from vidseg.models.cogvideox.parts import build_tiny_pipeline  # noqa: E402
from vidseg.models.text import default_prompt  # noqa: E402
from vidseg.models.tiny import TOY_SPEC, save_small_pipeline  # noqa: E402
from vidseg.toyworld import SHAPES, VERBS, render_clip, render_motion_clip  # noqa: E402
from vidseg.video.sample import fit_frames  # noqa: E402

TRAIN_SEED0 = 1_000_000  # training clips use seeds TRAIN_SEED0 + i; evaluation uses seeds below it
FRAME_SEED0 = 2_000_000  # single training frames use seeds FRAME_SEED0 + i
MOTION_SEED0 = 3_000_000  # motion training clips use motion seeds MOTION_SEED0 + i
VAL_SEED0 = 500_000  # validation clips (tools/toy_bench.py scores seeds 0..N-1, so model choice never sees them)
MOTION_CLIP_FRAMES = 24  # motion training windows are cut from clips this long, so a window may hold a verb's
                         # start, its end, all of it or none of it
WARMUP_STEPS = 100
AUX_MAX_T = 400  # the grounding losses apply up to this timestep (configs/toy.yaml reads out below it)
COUNT_P = [0.2, 0.4, 0.4]  # objects per training batch: identity is learnt where a distractor is
FRAME_P = 0.75  # share of steps on single frames (a third of a clip's tokens), where shapes are learnt cheaply
PROBE_BLOCKS = (1, 2, 3, 4, 5)  # blocks whose video states feed the training-only token classifier
DECISION_WEIGHTS = ("iou", "balanced")  # how the read-out's token decisions weigh tokens (GroundingReader)
IOU_OBJECT_WEIGHT = 2.0  # "iou": an object token weighs two background tokens (threshold p > 1/3)


class GroundingReader:
    """Receives the map layers' per-head tensors from the concept stream and turns them into the grounding loss.

    Three terms per head, each aimed at one step of the read-out (method.md §6-§7):

    * pointing: per latent frame, a softmax over patches of concept key . video query must put its mass on the
      concept's object (the padding slot: on the background), so the read-out's argmax surrogate lands there;
    * Gram: with a straight-through hard argmax anchor, a softmax over slots of each token's Gram column entries
      (``<o_p, o_anchor(s)>``) must pick the token's own slot (cross-entropy, decision weights below), and each
      concept's share of that softmax must overlap its object (soft IoU, which counts every background token).
      Not on the z-score: with one concept the z-score over slots is +-sqrt(n0) whatever the margin, so it gives
      no gradient; the Gram margin does, and the z-score is an increasing affine map of the Gram entries per
      token, so the same slot wins it;
    * identity: a softmax over slots of each token's query . concept keys must pick the token's own slot, a
      per-token signal that tells a circle from a star everywhere, not only at the argmax.

    Tokens count when one label covers at least half of them. ``balanced_w``: within a clip the background's tokens
    weigh half and the objects' the other half (alike per object); with labels weighed alike a 4 % object and the
    90 % background counted the same, and the model learnt to over-claim foreground. Balanced weights still make a
    small object's token weigh ~20 background tokens, so the decision they train claims background wherever a shape
    is even slightly likely, which IoU punishes: ``decision_w`` (``"iou"``) weighs every token as it comes, an
    object token as ``IOU_OBJECT_WEIGHT`` background ones, so a calibrated decision claims a token for a shape
    where p > 1/3, near the IoU optimum for IoUs around 0.5. The feature probe keeps the balanced weights, which
    give the shapes a strong signal.

    ``absent_to_null``: in the latent frames where a slot's concept is absent (a verb not being performed), its
    pointing target is the padding slot's (the background), so the read-out's z-score over slots, which compares a
    slot with the padding, drops there instead of staying high on the object.

    Args:
        targets: ``[B, slots, F, P]`` how much of each token each slot's object covers (last slot: background).
        weight: ``[B]`` per-clip weight of the loss (0 where the timestep is too noisy).
        grid: ``(F, h, w)`` of the video tokens.
        decision: ``"iou"`` or ``"balanced"``: the weights of the Gram and identity cross-entropies.
    """

    def __init__(self, targets: torch.Tensor, weight: torch.Tensor, grid: tuple[int, int, int],
                 decision: str = "iou", absent_to_null: bool = False):
        self.targets, self.weight, self.grid = targets, weight, grid
        self.absent_to_null = absent_to_null
        cover, label = targets.max(dim=1)  # [B, F, P]
        one_hot = F.one_hot(label, targets.shape[1]).movedim(-1, 1) * (cover >= 0.5)[:, None]
        one_hot = one_hot.float()  # [B, S, F, P]; float, or the weights below round to integers
        per_label = one_hot.sum((-1, -2), keepdim=True)
        objects_present = (per_label[:, :-1] > 0).sum(1, keepdim=True).clamp_min(1)  # [B, 1, 1, 1]
        label_w = torch.cat([0.5 / objects_present.expand(-1, targets.shape[1] - 1, -1, -1),
                             torch.full_like(per_label[:, -1:], 0.5)], dim=1)
        balanced_w = (one_hot * label_w / per_label.clamp_min(1)).sum(1) * weight[:, None, None]  # [B, F, P]
        self.label, self.balanced_w = label, balanced_w / balanced_w.sum().clamp_min(1e-6)
        if decision == "balanced":
            self.decision_w = self.balanced_w
        else:
            frequency_w = one_hot[:, :-1].sum(1) * IOU_OBJECT_WEIGHT + one_hot[:, -1]
            frequency_w = frequency_w * weight[:, None, None]
            self.decision_w = frequency_w / frequency_w.sum().clamp_min(1e-6)
        self.losses: list[torch.Tensor] = []
        self.hits: list[torch.Tensor] = []
        self.token_hits: list[torch.Tensor] = []

    def add_layer(self, layer: LayerTensors) -> None:
        out_video, query_video, concept_keys = layer.video_outputs, layer.video_queries, layer.concept_keys
        F_, h, w = self.grid
        B, H, _, d = out_video.shape
        o = out_video.unflatten(2, (F_, h * w))  # [B, H, F, P, d]
        q = query_video.unflatten(2, (F_, h * w))
        logits = torch.einsum("bhsd,bhfpd->bhsfp", concept_keys, q) / math.sqrt(d)
        soft = logits.softmax(dim=-1)
        target = self.targets[:, None]  # [B, 1, S, F, P]
        present = (target.sum(-1) > 0.5).float()  # [B, 1, S, F]: the object is in this latent frame
        aim = target
        if self.absent_to_null:  # where the concept is absent, its key points where the padding slot's does
            aim = torch.where(present[..., None] > 0, target, target[:, :, -1:])
            present_or_null = torch.maximum(present, (aim.sum(-1) > 0.5).float())
        else:
            present_or_null = present
        mass = (soft * aim).sum(-1).clamp_min(1e-6)
        frame_weight = present_or_null * self.weight[:, None, None, None]
        pointing_loss = -(mass.log() * frame_weight).sum() / frame_weight.sum().clamp_min(1) / H
        # Straight-through hard argmax: the forward uses the read-out's anchor, the backward the softmax's.
        hard = F.one_hot(logits.argmax(-1), logits.shape[-1]).to(soft)
        choice = hard + soft - soft.detach()
        anchors = torch.einsum("bhsfp,bhfpd->bhsfd", choice, o)
        columns = torch.einsum("bhfpd,bhsfd->bhsfp", o, anchors) / math.sqrt(d)  # [B, H, S, F, P]
        label = self.label[:, None].expand(B, H, F_, h * w)
        gram_loss = (F.cross_entropy(columns.transpose(1, 2), label, reduction="none") * self.decision_w[:, None]).sum() / H
        # Soft IoU of each concept's slot with its object: a small object needs the background right almost
        # everywhere, which the label-balanced cross-entropy alone does not ask for.
        share = columns.softmax(dim=2)[:, :, :-1]  # [B, H, C, F, P]
        inside = self.targets[:, None, :-1]
        overlap = (share * inside).sum((-1, -2))
        union = (share + inside - share * inside).sum((-1, -2)).clamp_min(1e-6)
        in_clip = (inside.sum((-1, -2)) > 0.5).float() * self.weight[:, None, None]
        gram_loss = gram_loss + ((1 - overlap / union) * in_clip).sum() / in_clip.sum().clamp_min(1)
        identity_loss = (F.cross_entropy(logits.transpose(1, 2), label, reduction="none") * self.decision_w[:, None]).sum() / H
        self.losses.append(pointing_loss + gram_loss + identity_loss)
        hit = (torch.gather(target.expand_as(logits), -1, logits.argmax(-1, keepdim=True))[..., 0] > 0.5).float()
        concept_present = present[:, :, :-1].expand_as(hit[:, :, :-1])
        self.hits.append((hit[:, :, :-1] * concept_present).sum() / concept_present.sum().clamp_min(1))
        self.token_hits.append(((columns.argmax(2) == label).float() * self.balanced_w[:, None]).sum() / H)

    def loss(self) -> torch.Tensor:
        return torch.stack(self.losses).mean()

    def pointing(self) -> float:
        """Share of (head, concept, frame) whose argmax token lies on the concept's object (chance: its area)."""
        return float(torch.stack(self.hits).mean())

    def token_accuracy(self) -> float:
        """Label-balanced share of tokens whose Gram column is largest at their own slot (chance: 1 / slots)."""
        return float(torch.stack(self.token_hits).mean())


class SlotGroups:
    """Hands each reader the map layers' tensors restricted to its slots: nouns and verbs overlap (a sliding square
    is both), so each group is its own decision among its slots and the padding slot."""

    def __init__(self, groups: list[tuple[GroundingReader, list[int]]]):
        self.groups = groups

    def add_layer(self, layer: LayerTensors) -> None:
        for reader, slots in self.groups:
            reader.add_layer(LayerTensors(layer.video_outputs, layer.video_queries, layer.concept_keys[:, :, slots]))


def token_coverage(labels: np.ndarray, grid: tuple[int, int, int], num_labels: int = 1 + len(SHAPES)) -> np.ndarray:
    """``[F, P, num_labels]`` share of each token covered by each label, over the frames each latent frame covers.

    Latent frame 0 is video frame 0; latent frame k >= 1 covers frames 4k-3 .. 4k (the causal VAE).
    """
    F_, h, w = grid
    T, H, W = labels.shape
    onehot = np.eye(num_labels, dtype=np.float32)[labels]  # [T, H, W, K]
    cells = onehot.reshape(T, h, H // h, w, W // w, -1).mean(axis=(2, 4))  # [T, h, w, K]
    groups = [[0]] + [list(range(4 * k - 3, 4 * k + 1)) for k in range(1, F_)]
    return np.stack([cells[g].mean(axis=0).reshape(h * w, -1) for g in groups])


def build_pool(pipeline, count: int, num_frames: int, seed0: int, log) -> dict:
    """Render and encode ``count`` training clips of ``num_frames`` frames (1, 2 and 3 objects in turn)."""
    spec = TOY_SPEC
    latents, coverage, objects, captions = [], [], [], []
    start = time.time()
    for i in range(count):
        clip = render_clip(seed0 + i, num_frames=num_frames, height=spec.height, width=spec.width,
                           num_objects=i % 3 + 1)
        pixels, _ = fit_frames(clip.frames, spec.height, spec.width)
        encoded = encode_frames(pipeline.vae, pixels)  # [1, F, C, h, w]
        grid = token_grid(pipeline.transformer.config, encoded)
        latents.append(encoded[0])
        coverage.append(token_coverage(clip.labels, grid))
        objects.append([SHAPES.index(s) for s in clip.classes])
        captions.append(f"A video of {clip.caption}.")
        if (i + 1) % 500 == 0:
            log(f"pool: {i + 1}/{count} clips of {num_frames} frames ({time.time() - start:.0f} s)")
    return {"latents": torch.stack(latents), "coverage": torch.from_numpy(np.stack(coverage)),
            "objects": objects, "captions": captions, "grid": grid}


def verb_labels(clip, frames: slice) -> np.ndarray:
    """``[T, H, W]`` uint8: 0 where nothing performs a verb, 1 + index into ``VERBS`` where an object performs it."""
    labels = np.zeros(clip.labels[frames].shape, dtype=np.uint8)
    for verb, truth in clip.verbs.items():
        labels[truth[frames]] = VERBS.index(verb) + 1
    return labels


def build_motion_pool(pipeline, count: int, num_frames: int, seed0: int, log) -> dict:
    """Render and encode ``count`` windows of ``num_frames`` frames cut from motion clips of ``MOTION_CLIP_FRAMES``
    (1, 2 and 3 objects in turn), with the noun and the verb coverage of every token."""
    spec = TOY_SPEC
    latents, coverage, verb_coverage, objects, verbs, captions = [], [], [], [], [], []
    start = time.time()
    for i in range(count):
        clip = render_motion_clip(seed0 + i, num_frames=MOTION_CLIP_FRAMES, height=spec.height, width=spec.width,
                                  num_objects=i % 3 + 1)
        offset = (7 * i) % (MOTION_CLIP_FRAMES - num_frames + 1)
        window = slice(offset, offset + num_frames)
        encoded = encode_frames(pipeline.vae, fit_frames(clip.frames[window], spec.height, spec.width)[0])
        grid = token_grid(pipeline.transformer.config, encoded)
        latents.append(encoded[0])
        coverage.append(token_coverage(clip.labels[window], grid))
        verb_coverage.append(token_coverage(verb_labels(clip, window), grid, 1 + len(VERBS)))
        objects.append([SHAPES.index(s) for s in clip.classes])
        verbs.append([VERBS.index(v) for v in clip.verb_names])
        captions.append(f"A video of {clip.caption}.")
        if (i + 1) % 500 == 0:
            log(f"pool: {i + 1}/{count} motion windows ({time.time() - start:.0f} s)")
    return {"latents": torch.stack(latents), "coverage": torch.from_numpy(np.stack(coverage)),
            "verb_coverage": torch.from_numpy(np.stack(verb_coverage)), "objects": objects, "verbs": verbs,
            "captions": captions, "grid": grid}


def load_or_build_pool(pipeline, count: int, num_frames: int, seed0: int, cache_dir: Path | None, seed: int,
                       log, motion: bool = False) -> dict:
    """The encoded pool is a pure function of (seeds, size, the VAE's weights): cached so a rerun starts at once,
    under a name with a fingerprint of the VAE's weights and scaling factor."""
    digest = hashlib.sha256(str(pipeline.vae.config.scaling_factor).encode())
    for tensor in pipeline.vae.encoder.state_dict().values():
        digest.update(tensor.float().numpy().tobytes())
    name = f"toy-{'motion-' if motion else ''}pool-{seed}-{count}x{num_frames}-{digest.hexdigest()[:10]}.pt"
    cache = cache_dir / name if cache_dir else None
    if cache is not None and cache.is_file():
        log(f"pool: {count} {'motion windows' if motion else 'clips'} of {num_frames} frames from {cache}")
        return torch.load(cache)
    build = build_motion_pool if motion else build_pool
    pool = build(pipeline, count, num_frames, seed0, log)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save(pool, cache)
    return pool


@torch.no_grad()
def validate(pipeline, clips: list, config, encode) -> dict:
    """What the training losses are meant to buy, measured the library's way on held-out clips: DDIM inversion and
    the IMAP read-out of ``config`` (the toy preset), each token labelled with the class whose map is largest where
    it is positive, else background. Returns the token-level mean IoU (per clip over its shapes, then over clips),
    each shape's IoU, the share of background tokens claimed by a class and the share of object tokens labelled
    right. The trainer's own token accuracy weighs the background like the objects, so it cannot see false
    positives on the background, which is what IoU on small objects punishes most.

    ``clips``: (latents ``[1, F, C, h, w]``, classes, token labels ``[F, P]`` with 0 background and i the i-th
    class).
    """
    transformer = pipeline.transformer
    was_training = transformer.training
    transformer.eval()
    per_clip, per_class, claimed, recalled = [], {s: [] for s in SHAPES}, [], []
    for latents, classes, truth in clips:
        z = token_maps(pipeline, latents, classes, config, encode)
        predicted = torch.where(z.max(0).values > 0, z.argmax(0) + 1, 0).numpy()
        ious = []
        for i, name in enumerate(classes, start=1):
            inside, chosen = truth == i, predicted == i
            ious.append(float((inside & chosen).sum() / max((inside | chosen).sum(), 1)))
            per_class[name].append(ious[-1])
        per_clip.append(np.mean(ious))
        claimed.append(float((predicted[truth == 0] > 0).mean()))
        recalled.append(float((predicted[truth > 0] == truth[truth > 0]).mean()))
    transformer.train(was_training)
    return {"val_token_miou": float(np.mean(per_clip)),
            "val_per_class": {s: round(float(np.mean(v)), 4) for s, v in per_class.items() if v},
            "val_background_claimed": float(np.mean(claimed)), "val_objects_right": float(np.mean(recalled))}


def token_maps(pipeline, latents: torch.Tensor, concepts: list[str], config, encode) -> torch.Tensor:
    """The read-out of ``config`` (DDIM inversion, then the maps) on one window: ``[C, F, P]``."""
    transformer, inv, maps = pipeline.transformer, config.inversion, config.maps
    device = next(transformer.parameters()).device
    prompt, concept_embeds = (x.to(device) for x in encode(default_prompt(concepts), concepts))
    noisy, t = invert_ddim(lambda x, step: predict_velocity(transformer, x, step, prompt), pipeline.scheduler,
                           latents.to(device), num_steps=inv.num_steps, readout_index=inv.readout_index)
    return read_concept_maps(transformer, noisy, t, prompt, concept_embeds, kinds=(maps.kind,), layers=maps.layers,
                             top_k_heads=maps.top_k_heads, concept_slots=maps.concept_slots)[maps.kind].flatten(2)


@torch.no_grad()
def validate_motion(pipeline, windows: list, config, encode) -> dict:
    """Per verb, the token IoU over held-out motion windows of where its map is positive against where it is
    performed (the tokens it covers most of), read with every noun and verb of the clip as concepts."""
    transformer = pipeline.transformer
    was_training = transformer.training
    transformer.eval()
    inter, union = {v: 0.0 for v in VERBS}, {v: 0.0 for v in VERBS}
    for latents, classes, verbs, truth in windows:
        z = token_maps(pipeline, latents, classes + verbs, config, encode)
        for i, verb in enumerate(verbs):
            inside, chosen = truth == VERBS.index(verb) + 1, (z[len(classes) + i] > 0).cpu().numpy()
            inter[verb] += float((inside & chosen).sum())
            union[verb] += float((inside | chosen).sum())
    transformer.train(was_training)
    return {f"val_{v}_token_iou": round(inter[v] / union[v], 4) for v in VERBS if union[v]}


def motion_validation_windows(pipeline, count: int) -> list:
    """``count`` held-out motion windows for ``validate_motion``: latents, nouns, verbs and token verb labels."""
    spec, windows = TOY_SPEC, []
    for seed in range(VAL_SEED0, VAL_SEED0 + count):
        clip = render_motion_clip(seed, num_frames=MOTION_CLIP_FRAMES, height=spec.height, width=spec.width)
        offset = seed % (MOTION_CLIP_FRAMES - spec.num_frames + 1)
        window = slice(offset, offset + spec.num_frames)
        latents = encode_frames(pipeline.vae, fit_frames(clip.frames[window], spec.height, spec.width)[0])
        coverage = token_coverage(verb_labels(clip, window), token_grid(pipeline.transformer.config, latents),
                                  1 + len(VERBS))
        windows.append((latents, clip.classes, clip.verb_names, coverage.argmax(-1)))
    return windows


def validation_clips(pipeline, count: int) -> list:
    """``count`` held-out 9-frame clips for ``validate``: latents, classes and token labels (the label covering
    most of each token)."""
    spec, clips = TOY_SPEC, []
    for seed in range(VAL_SEED0, VAL_SEED0 + count):
        clip = render_clip(seed, num_frames=spec.num_frames, height=spec.height, width=spec.width)
        latents = encode_frames(pipeline.vae, fit_frames(clip.frames, spec.height, spec.width)[0])
        coverage = token_coverage(clip.labels, token_grid(pipeline.transformer.config, latents))
        columns = [0] + [SHAPES.index(s) + 1 for s in clip.classes]  # background, then the clip's classes
        clips.append((latents, clip.classes, coverage[:, :, columns].argmax(-1)))
    return clips


class TokenProbe(torch.nn.Module):
    """Training-only linear classifier of each video token's label (background or a shape) from the video states of
    ``PROBE_BLOCKS``: a dense signal on every token that teaches the blocks to recognise the shapes much faster
    than the read-out's losses alone. Not saved with the model."""

    def __init__(self, transformer, num_labels: int):
        super().__init__()
        dim = transformer.config.num_attention_heads * transformer.config.attention_head_dim
        self.heads = torch.nn.ModuleList(torch.nn.Linear(dim, num_labels) for _ in PROBE_BLOCKS)
        self.states: dict[int, torch.Tensor] = {}
        for block in PROBE_BLOCKS:  # for the whole training run: the hooks are never removed
            transformer.transformer_blocks[block].register_forward_hook(self._keep(block))

    def _keep(self, block: int):
        def hook(module, args, output):
            self.states[block] = output[0]  # CogVideoX blocks return (video states, text states)
        return hook

    def loss(self, labels: torch.Tensor, token_w: torch.Tensor) -> tuple[torch.Tensor, float]:
        """Weighted cross-entropy over ``labels [B, tokens]`` (with ``token_w [B, tokens]`` summing to 1), and the
        last block's weighted accuracy."""
        losses, accuracy = [], 0.0
        for head, block in zip(self.heads, PROBE_BLOCKS):
            logits = head(self.states[block])  # [B, tokens, labels]
            losses.append((F.cross_entropy(logits.transpose(1, 2), labels, reduction="none") * token_w).sum())
            accuracy = float(((logits.argmax(-1) == labels).float() * token_w).sum())
        return torch.stack(losses).mean(), accuracy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("toy-model"))
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--pool", type=int, default=1500, help="training clips (9 frames)")
    parser.add_argument("--frame-pool", type=int, default=2500, help="single training frames")
    parser.add_argument("--batch", type=int, default=8, help="clips per clip step")
    parser.add_argument("--frame-batch", type=int, default=32, help="frames per single-frame step")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--decay-steps", type=int, default=0, help="decay the rate linearly to 0 over the last N "
                                                                   "steps (0: constant after the warm-up)")
    parser.add_argument("--aux-weight", type=float, default=1.0)
    parser.add_argument("--caption-dropout", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu (the reproducible reference) or cuda (minutes "
                                                        "instead of hours; not bit-identical to the CPU run)")
    parser.add_argument("--log", type=Path, default=None, help="JSON lines of the training curve")
    parser.add_argument("--save-every", type=int, default=250, help="save the model and the training state every N "
                                                                   "steps (and at the end)")
    parser.add_argument("--pool-cache", type=Path, default=None, help="folder to keep the encoded pools in")
    parser.add_argument("--keep-checkpoints", action="store_true", help="also keep OUT-stepN folders")
    parser.add_argument("--resume", action="store_true", help="continue from OUT's saved training state")
    parser.add_argument("--decision-weights", choices=DECISION_WEIGHTS, default="iou",
                        help="token weights of the read-out's decision losses (GroundingReader)")
    parser.add_argument("--val-clips", type=int, default=8, help="held-out clips scored through the read-out at "
                                                                  "every save (0: none)")
    parser.add_argument("--init", type=Path, default=None, help="start from this model folder's transformer (e.g. a "
                                                                "finished noun run, to add the verbs)")
    parser.add_argument("--motion-p", type=float, default=0.0, help="share of steps on motion windows (nouns and "
                                                                    "verbs as concepts); 0: the noun-only recipe")
    parser.add_argument("--motion-pool", type=int, default=1500, help="motion training windows (9 frames)")
    parser.add_argument("--absent-p", type=float, default=0.0, help="share of noun steps that also ask for shapes "
                                                                    "the clips do not hold, whose keys learn to point "
                                                                    "where the padding slot's do; 0: never")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    state_file = args.out.with_name(args.out.name + ".train-state.pt")
    state = torch.load(state_file, weights_only=False) if args.resume and state_file.is_file() else None
    if state is not None and args.log is not None and args.log.is_file():
        # The steps after the last save run again: drop their records, so the curve has each step once.
        kept = [line for line in args.log.read_text().splitlines() if json.loads(line)["step"] <= state["step"]]
        args.log.write_text("".join(line + "\n" for line in kept))
    log_file = args.log.open("a" if state is not None else "w") if args.log else None

    def log(message: str, **record) -> None:
        print(message, flush=True)
        if log_file and record:
            log_file.write(json.dumps(record) + "\n")
            log_file.flush()

    # Verbs need to see motion: the encoder also keeps each cell's change from frame to frame (colour_keeping_encoder).
    spec = dataclasses.replace(TOY_SPEC, vae_encoder="colour-motion") if args.motion_p > 0 else TOY_SPEC
    pipeline = build_tiny_pipeline(spec, seed=args.seed)
    vae, transformer, scheduler = pipeline.vae.eval(), pipeline.transformer, pipeline.scheduler
    vae.requires_grad_(False)
    pipeline.text_encoder.requires_grad_(False).eval()
    layers = [3, 4, 5]  # configs/toy.yaml maps.layers: three blocks see the video before the first map
    text_len = spec.text_len

    with torch.no_grad():
        # Unit-variance latents: the scaling factor from the raw latents of a few clips (as CogVideoX's was set).
        vae.register_to_config(scaling_factor=1.0)
        raw = torch.cat([encode_frames(vae, fit_frames(render_clip(seed, num_frames=spec.num_frames,
                         height=spec.height, width=spec.width).frames, spec.height, spec.width)[0])
                         for seed in range(TRAIN_SEED0 - 64, TRAIN_SEED0 - 32)])
        vae.register_to_config(scaling_factor=float(1.0 / raw.std()))
        log(f"VAE scaling factor {vae.config.scaling_factor:.5f}")
        pools = {"clip": load_or_build_pool(pipeline, args.pool, spec.num_frames, TRAIN_SEED0, args.pool_cache,
                                            args.seed, log),
                 "frame": load_or_build_pool(pipeline, args.frame_pool, 1, FRAME_SEED0, args.pool_cache,
                                             args.seed, log)}
        if args.motion_p > 0:
            pools["motion"] = load_or_build_pool(pipeline, args.motion_pool, spec.num_frames, MOTION_SEED0,
                                                 args.pool_cache, args.seed, log, motion=True)

        def encode(prompt: str, classes: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
            return t5_embeddings(pipeline.tokenizer, pipeline.text_encoder, prompt, classes, text_len=text_len)

        # [4, D] each shape name's first token (then, for motion runs, each verb's)
        _, concept_table = encode("", list(SHAPES) + (list(VERBS) if args.motion_p > 0 else []))
        empty = encode("", [])[0][0]
        prompts = {}  # (colour caption, vidseg's default prompt) per distinct caption
        for pool in pools.values():
            for i, (caption, objs) in enumerate(zip(pool["captions"], pool["objects"])):
                if caption not in prompts:
                    concepts = [SHAPES[o] for o in objs] + [VERBS[v] for v in pool.get("verbs", [[]] * (i + 1))[i]]
                    prompts[caption] = (encode(caption, [])[0][0], encode(default_prompt(concepts), [])[0][0])
        val_clips = validation_clips(pipeline, args.val_clips)
        val_motion = motion_validation_windows(pipeline, args.val_clips) if args.motion_p > 0 else []
    preset = load_config(spec.preset)
    # Clips of a batch share their number of objects (and of verbs), so their concept slots stack.
    by_count = {kind: {} for kind in pools}
    for kind, pool in pools.items():
        for i, objs in enumerate(pool["objects"]):
            key = (len(objs), len(pool["verbs"][i])) if kind == "motion" else len(objs)
            by_count[kind].setdefault(key, []).append(i)

    device = torch.device(args.device)
    alphas = scheduler.alphas_cumprod.float()
    transformer.to(device).train()
    if args.init is not None:
        from safetensors.torch import load_file

        transformer.load_state_dict(load_file(args.init / "transformer" / "diffusion_pytorch_model.safetensors"))
        log(f"started from {args.init}'s transformer")
    probe = TokenProbe(transformer, 1 + len(SHAPES)).to(device)
    trained = [*transformer.parameters(), *probe.heads.parameters()]
    motion_probe = TokenProbe(transformer, 1 + len(VERBS)).to(device) if args.motion_p > 0 else None
    if motion_probe is not None:
        trained += list(motion_probe.heads.parameters())
    optimizer = torch.optim.AdamW(trained, lr=args.lr, weight_decay=0.01)
    # Warm-up, then constant until the last --decay-steps: before those the model after N steps does not depend on
    # --steps, so a constant-rate run can be stopped, resumed with a decay added, and still be reproduced by one
    # run of the final arguments.
    def rate(s: int) -> float:
        decay = min(1.0, (args.steps - s) / args.decay_steps) if args.decay_steps else 1.0
        return min(1.0, (s + 1) / WARMUP_STEPS) * decay

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, rate)
    first, elapsed0 = 1, 0.0
    if state is not None:
        transformer.load_state_dict(state["transformer"])
        probe.heads.load_state_dict(state["probe"])
        if motion_probe is not None:
            motion_probe.heads.load_state_dict(state["motion_probe"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        first, elapsed0 = state["step"] + 1, state["seconds"]
        log(f"resumed from {state_file} at step {state['step']}")
    start = time.time()
    for step in range(first, args.steps + 1):
        motion = args.motion_p > 0 and rng.random() < args.motion_p  # no draw at all for the noun-only recipe
        kind = "motion" if motion else "frame" if rng.random() < FRAME_P else "clip"
        pool, size = pools[kind], args.frame_batch if kind == "frame" else args.batch
        grid = tuple(pool["grid"])
        if motion:  # the (objects, verbs) of a random window, then a batch of windows alike
            pick = int(rng.integers(len(pool["objects"])))
            key = (len(pool["objects"][pick]), len(pool["verbs"][pick]))
            count = key[0]
        else:
            key = count = int(rng.choice([1, 2, 3], p=COUNT_P))
        batch = rng.choice(by_count[kind][key], size=size, replace=len(by_count[kind][key]) < size)
        x0 = pool["latents"][batch]  # [B, F, C, h, w]
        t = np.where(rng.random(size) < 0.5, rng.integers(0, 1000, size), rng.integers(0, AUX_MAX_T + 1, size))
        t = torch.from_numpy(t).long()
        a = alphas[t].view(-1, 1, 1, 1, 1)
        noise = torch.from_numpy(rng.standard_normal(x0.shape).astype(np.float32))
        noisy = (a.sqrt() * x0 + (1 - a).sqrt() * noise).to(device)
        target_v = (a.sqrt() * noise - (1 - a).sqrt() * x0).to(device)
        # Captions: the colour caption, the default prompt vidseg builds from class names, or none (dropout).
        prompt = []
        for i in batch:
            u = rng.random()
            caption, default = prompts[pool["captions"][int(i)]]
            prompt.append(empty if u < args.caption_dropout else (caption if u < 0.5 + args.caption_dropout / 2
                                                                  else default))
        prompt = torch.stack(prompt).to(device)
        # Concept slots: the clip's shapes in a random order, then the padding slot (background).
        order = [rng.permutation(pool["objects"][int(i)]) for i in batch]
        if not motion and args.absent_p > 0 and rng.random() < args.absent_p:
            # Ask for shapes the clip does not hold as well (a fixed vocabulary): their coverage is zero, so with
            # absent_to_null their keys learn to point where the padding slot's do.
            extra = int(rng.integers(1, len(SHAPES) - count + 1))
            order = [rng.permutation(np.concatenate([o, rng.choice(np.setdiff1d(np.arange(len(SHAPES)), o), extra,
                                                                   replace=False)])) for o in order]
        concepts = torch.stack([concept_table[torch.as_tensor(o)] for o in order]).to(device)  # [B, C, D]
        cov = pool["coverage"][batch]  # [B, F, P, 1 + shapes]
        targets = torch.stack([torch.cat([cov[b, :, :, torch.as_tensor(o) + 1], cov[b, :, :, :1]], dim=-1)
                               for b, o in enumerate(order)]).permute(0, 3, 1, 2)  # [B, C + 1, F, P]
        aux_weight = (t <= AUX_MAX_T).float().to(device)
        reader = GroundingReader(targets.to(device), aux_weight, grid, args.decision_weights,
                                 absent_to_null=args.absent_p > 0)
        stream_reader, verb_reader = reader, None
        if motion:  # slots: the nouns, then the verbs (each batch in its own random order), then the padding slot
            verb_order = [rng.permutation(pool["verbs"][int(i)]) for i in batch]
            verb_concepts = torch.stack([concept_table[len(SHAPES) + torch.as_tensor(v)] for v in verb_order])
            concepts = torch.cat([concepts, verb_concepts.to(device)], dim=1)
            vcov = pool["verb_coverage"][batch]  # [B, F, P, 1 + verbs]
            verb_targets = torch.stack([torch.cat([vcov[b, :, :, torch.as_tensor(v) + 1], vcov[b, :, :, :1]], dim=-1)
                                        for b, v in enumerate(verb_order)]).permute(0, 3, 1, 2)
            # A verb is absent from the frames it is not performed in: there its key must look like the padding
            # slot's, or the z-score over slots keeps it high on its object throughout (absent = null).
            verb_reader = GroundingReader(verb_targets.to(device), aux_weight, grid, args.decision_weights,
                                          absent_to_null=True)
            nouns, verbs = count, len(verb_order[0])
            stream_reader = SlotGroups([(reader, [*range(nouns), nouns + verbs]),
                                        (verb_reader, [*range(nouns, nouns + verbs), nouns + verbs])])
        with concept_stream_attention(transformer, concepts, grid, layers=layers, top_k_heads=1,
                                      reader=stream_reader):
            # Per-clip timesteps, so the transformer is called directly (the 2B-like toy model has no RoPE).
            v = transformer(hidden_states=noisy, encoder_hidden_states=prompt, timestep=t.to(device),
                            return_dict=False)[0]
        v_loss = F.mse_loss(v, target_v)
        # The probe's labels: every shape, the background 0; weighed like the read-out's tokens.
        probe_labels = cov.argmax(-1).flatten(1).to(device)  # [B, F * P]
        probe_loss, probe_accuracy = probe.loss(probe_labels, reader.balanced_w.flatten(1))
        aux = reader.loss() + probe_loss
        if verb_reader is not None:
            verb_probe_loss, _ = motion_probe.loss(vcov.argmax(-1).flatten(1).to(device),
                                                   verb_reader.balanced_w.flatten(1))
            aux = aux + verb_reader.loss() + verb_probe_loss
        loss = v_loss + args.aux_weight * aux
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(transformer.parameters(), 1.0)
        if torch.isfinite(norm):
            optimizer.step()
        else:  # never let one degenerate batch poison the weights
            log(f"step {step}: non-finite gradient, skipped")
        schedule.step()
        seconds = elapsed0 + time.time() - start
        if step % 25 == 0 or step == first:
            log(f"step {step}/{args.steps} {kind:5}  v {v_loss.item():.4f}  aux {aux.item():.4f}  "
                f"pointing {reader.pointing():.3f}  tokens {reader.token_accuracy():.3f}  "
                f"probe {probe_accuracy:.3f}"
                + (f"  verb pointing {verb_reader.pointing():.3f}" if verb_reader is not None else "")
                + f"  {seconds / step:.2f} s/step",
                step=step, kind=kind, v_loss=v_loss.item(), aux=aux.item(), pointing=reader.pointing(),
                token_accuracy=reader.token_accuracy(), probe_accuracy=probe_accuracy, count=count, seconds=seconds)
        if step % args.save_every == 0 or step == args.steps:
            transformer.eval()
            save_small_pipeline(pipeline, args.out, spec.preset)
            if args.keep_checkpoints:
                save_small_pipeline(pipeline, args.out.with_name(f"{args.out.name}-step{step}"), spec.preset)
            transformer.train()
            torch.save({"transformer": transformer.state_dict(), "probe": probe.heads.state_dict(),
                        "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                        "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(), "step": step,
                        "seconds": seconds,
                        **({"motion_probe": motion_probe.heads.state_dict()} if motion_probe is not None else {})},
                       state_file.with_suffix(".tmp"))
            state_file.with_suffix(".tmp").replace(state_file)
            if val_clips:
                val = validate(pipeline, val_clips, preset, encode)
                log(f"step {step}: held-out token mIoU {val['val_token_miou']:.3f} through the read-out "
                    f"({', '.join(f'{k} {v:.2f}' for k, v in val['val_per_class'].items())}); background claimed "
                    f"{val['val_background_claimed']:.3f}, object tokens right {val['val_objects_right']:.3f}",
                    step=step, **val)
            if val_motion:
                val = validate_motion(pipeline, val_motion, preset, encode)
                log(f"step {step}: held-out verb token IoU " + ", ".join(f"{k} {v:.3f}" for k, v in val.items()),
                    step=step, **val)
            log(f"saved {args.out} at step {step}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
