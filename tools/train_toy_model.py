"""Train a toy-world model: a small CogVideoX meant to segment the toy world, for ``vidseg predict --model DIR``.

The model is the real diffusers ``CogVideoXTransformer3DModel`` (trained), with a frozen random
``AutoencoderKLCogVideoX`` and a frozen random T5 encoder, all built by ``vidseg.models.tiny.build_small_pipeline``
at ``TOY_SPEC``'s shape, and it is saved in diffusers layout to ``--out`` (with ``configs/toy.yaml`` as its
``vidseg.yaml``). Training data is a pool of toy-world clips (``vidseg.toyworld``, seeds from ``TRAIN_SEED0`` on; evaluation
uses other seeds), encoded once by the frozen VAE through the same functions ``vidseg predict`` uses.

Loss = v-prediction MSE (the diffusion objective, CogVideoX-2B's DDIM schedule) + an **auxiliary grounding loss**
on the read-out's own quantities in the map layers, computed through vidseg's concept stream
(``vidseg.imap.processor.concept_stream_attention`` with a training reader), for every head:

* surrogate: per latent frame, a softmax over patches of concept key . video query must put its mass on the
  concept's object (the padding slot: on the background), so the read-out's argmax lands there;
* Gram column: with a straight-through hard argmax anchor, the slot-z-scored Gram column (as the read-out
  computes it) must be positive on the concept's tokens and negative elsewhere (balanced logistic loss).

So the toy model is *trained to ground its words*: it tests vidseg's plumbing and read-out on maps that mean
something; it is no evidence for the paper's claim that grounding emerges without such a loss.

Reproducible: everything is seeded and single-process; ``--threads`` fixes torch's thread count (results match
bit for bit only at the same thread count and torch build). On the 2-core CPU: see ``--help`` defaults and the
README for the time it took.

    python tools/train_toy_model.py --out toy-model/ --pool-cache ~/.cache/vidseg
    vidseg predict toy.mp4 --classes circle square --model toy-model/

Status: on the 2-core CPU this does not yet give a model that segments; the README says what 1,000 steps of
this recipe measured and what to try next.
"""

from __future__ import annotations

import argparse
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

from vidseg.imap.processor import concept_stream_attention  # noqa: E402
from vidseg.inversion import encode_frames  # noqa: E402
from vidseg.models.load import default_prompt, t5_embeddings  # noqa: E402
from vidseg.models.tiny import TOY_SPEC, build_small_pipeline, save_small_pipeline  # noqa: E402
from vidseg.toyworld import SHAPES, render_clip  # noqa: E402
from vidseg.video.sample import fit_frames  # noqa: E402

TRAIN_SEED0 = 1_000_000  # training clips use seeds TRAIN_SEED0 + i; evaluation uses seeds below it
WARMUP_STEPS = 100
AUX_MAX_T = 700
COUNT_P = [0.2, 0.4, 0.4]  # objects per training batch  # the grounding loss applies up to this timestep (the read-out is at t = 399)


class GroundingReader:
    """Receives the map layers' per-head tensors from the concept stream and turns them into the grounding loss.

    Three terms per head, each aimed at one step of the read-out (method.md §6-§7):

    * pointing: per latent frame, a softmax over patches of concept key . video query must put its mass on the
      concept's object (the padding slot: on the background), so the read-out's argmax surrogate lands there;
    * Gram: with a straight-through hard argmax anchor, a softmax over slots of each token's Gram column entries
      (``<o_p, o_anchor(s)>``) must pick the token's own slot (cross-entropy, labels weighted alike), and each
      concept's share of that softmax must overlap its object (soft IoU, which counts every background token). Not on the z-score: with one concept the z-score
      over slots is +-sqrt(n0) whatever the margin, so it gives no gradient; the Gram margin does, and the z-score
      is an increasing affine map of the Gram entries per token, so the same slot wins it;
    * identity: a softmax over slots of each token's query . concept keys must pick the token's own slot, a
      per-token signal that tells a circle from a star everywhere, not only at the argmax.

    Tokens count when one label covers at least half of them; labels weigh alike within a clip.

    Args:
        targets: ``[B, slots, F, P]`` how much of each token each slot's object covers (last slot: background).
        weight: ``[B]`` per-clip weight of the loss (0 where the timestep is too noisy).
        grid: ``(F, h, w)`` of the video tokens.
    """

    def __init__(self, targets: torch.Tensor, weight: torch.Tensor, grid: tuple[int, int, int]):
        self.targets, self.weight, self.grid = targets, weight, grid
        cover, label = targets.max(dim=1)  # [B, F, P]
        one_hot = F.one_hot(label, targets.shape[1]).movedim(-1, 1) * (cover >= 0.5)[:, None]  # [B, S, F, P]
        per_label = one_hot.sum((-1, -2), keepdim=True)
        # Each present label weighs 1 per clip, spread over its tokens; then clips by their loss weight.
        token_w = (one_hot / per_label.clamp_min(1)).sum(1) * weight[:, None, None]  # [B, F, P]
        self.label, self.token_w = label, token_w / token_w.sum().clamp_min(1e-6)
        self.losses: list[torch.Tensor] = []
        self.hits: list[torch.Tensor] = []
        self.token_hits: list[torch.Tensor] = []

    def add_layer(self, out_video: torch.Tensor, query_video: torch.Tensor, concept_keys: torch.Tensor) -> None:
        F_, h, w = self.grid
        B, H, _, d = out_video.shape
        o = out_video.unflatten(2, (F_, h * w))  # [B, H, F, P, d]
        q = query_video.unflatten(2, (F_, h * w))
        logits = torch.einsum("bhsd,bhfpd->bhsfp", concept_keys, q) / math.sqrt(d)
        soft = logits.softmax(dim=-1)
        target = self.targets[:, None]  # [B, 1, S, F, P]
        present = (target.sum(-1) > 0.5).float()  # [B, 1, S, F]: the object is in this latent frame
        mass = (soft * target).sum(-1).clamp_min(1e-6)
        frame_weight = present * self.weight[:, None, None, None]
        pointing_loss = -(mass.log() * frame_weight).sum() / frame_weight.sum().clamp_min(1) / H
        # Straight-through hard argmax: the forward uses the read-out's anchor, the backward the softmax's.
        hard = F.one_hot(logits.argmax(-1), logits.shape[-1]).to(soft)
        choice = hard + soft - soft.detach()
        anchors = torch.einsum("bhsfp,bhfpd->bhsfd", choice, o)
        columns = torch.einsum("bhfpd,bhsfd->bhsfp", o, anchors) / math.sqrt(d)  # [B, H, S, F, P]
        label = self.label[:, None].expand(B, H, F_, h * w)
        gram_loss = (F.cross_entropy(columns.transpose(1, 2), label, reduction="none") * self.token_w[:, None]).sum() / H
        # Soft IoU of each concept's slot with its object: a small object needs the background right almost
        # everywhere, which the label-balanced cross-entropy alone does not ask for.
        share = columns.softmax(dim=2)[:, :, :-1]  # [B, H, C, F, P]
        inside = self.targets[:, None, :-1]
        overlap = (share * inside).sum((-1, -2))
        union = (share + inside - share * inside).sum((-1, -2)).clamp_min(1e-6)
        in_clip = (inside.sum((-1, -2)) > 0.5).float() * self.weight[:, None, None]
        gram_loss = gram_loss + ((1 - overlap / union) * in_clip).sum() / in_clip.sum().clamp_min(1)
        identity_loss = (F.cross_entropy(logits.transpose(1, 2), label, reduction="none") * self.token_w[:, None]).sum() / H
        self.losses.append(pointing_loss + gram_loss + identity_loss)
        hit = (torch.gather(target.expand_as(logits), -1, logits.argmax(-1, keepdim=True))[..., 0] > 0.5).float()
        concept_present = present[:, :, :-1].expand_as(hit[:, :, :-1])
        self.hits.append((hit[:, :, :-1] * concept_present).sum() / concept_present.sum().clamp_min(1))
        self.token_hits.append(((columns.argmax(2) == label).float() * self.token_w[:, None]).sum() / H)

    def loss(self) -> torch.Tensor:
        return torch.stack(self.losses).mean()

    def pointing(self) -> float:
        """Share of (head, concept, frame) whose argmax token lies on the concept's object (chance: its area)."""
        return float(torch.stack(self.hits).mean())

    def token_accuracy(self) -> float:
        """Label-balanced share of tokens whose Gram column is largest at their own slot (chance: 1 / slots)."""
        return float(torch.stack(self.token_hits).mean())


def token_coverage(labels: np.ndarray, grid: tuple[int, int, int]) -> np.ndarray:
    """``[F, P, 1 + shapes]`` share of each token covered by each label, over the frames each latent frame covers.

    Latent frame 0 is video frame 0; latent frame k >= 1 covers frames 4k-3 .. 4k (the causal VAE).
    """
    F_, h, w = grid
    T, H, W = labels.shape
    onehot = np.eye(1 + len(SHAPES), dtype=np.float32)[labels]  # [T, H, W, K]
    cells = onehot.reshape(T, h, H // h, w, W // w, -1).mean(axis=(2, 4))  # [T, h, w, K]
    groups = [[0]] + [list(range(4 * k - 3, 4 * k + 1)) for k in range(1, F_)]
    return np.stack([cells[g].mean(axis=0).reshape(h * w, -1) for g in groups])


def build_pool(pipeline, count: int, grid, log) -> dict:
    """Render and encode ``count`` training clips (1, 2 and 3 objects in turn)."""
    spec = TOY_SPEC
    latents, coverage, objects, captions = [], [], [], []
    start = time.time()
    for i in range(count):
        clip = render_clip(TRAIN_SEED0 + i, num_frames=spec.num_frames, height=spec.height, width=spec.width,
                           num_objects=i % 3 + 1)
        pixels, _ = fit_frames(clip.frames, spec.height, spec.width)
        latents.append(encode_frames(pipeline.vae, pixels)[0])  # [F, C, h, w]
        coverage.append(token_coverage(clip.labels, grid))
        objects.append([SHAPES.index(s) for s in clip.classes])
        captions.append(f"A video of {clip.caption}.")
        if (i + 1) % 500 == 0:
            log(f"pool: {i + 1}/{count} clips ({time.time() - start:.0f} s)")
    return {"latents": torch.stack(latents), "coverage": torch.from_numpy(np.stack(coverage)),
            "objects": objects, "captions": captions}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("toy-model"))
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--pool", type=int, default=1500, help="training clips")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--aux-weight", type=float, default=1.0)
    parser.add_argument("--caption-dropout", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu (the reproducible reference) or cuda (minutes "
                                                        "instead of hours; not bit-identical to the CPU run)")
    parser.add_argument("--log", type=Path, default=None, help="JSON lines of the training curve")
    parser.add_argument("--save-every", type=int, default=250, help="save the model every N steps (and at the end)")
    parser.add_argument("--pool-cache", type=Path, default=None, help="folder to keep the encoded pool in")
    parser.add_argument("--keep-checkpoints", action="store_true", help="also keep OUT-stepN folders")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    log_file = args.log.open("w") if args.log else None

    def log(message: str, **record) -> None:
        print(message, flush=True)
        if log_file and record:
            log_file.write(json.dumps(record) + "\n")
            log_file.flush()

    spec = TOY_SPEC
    pipeline = build_small_pipeline(spec, seed=args.seed)
    vae, transformer, scheduler = pipeline.vae.eval(), pipeline.transformer, pipeline.scheduler
    vae.requires_grad_(False)
    pipeline.text_encoder.requires_grad_(False).eval()
    scale = spec.spatial_compression
    grid = (1 + (spec.num_frames - 1) // 4, spec.height // scale // 2, spec.width // scale // 2)
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
        # The pool is a pure function of (seed, size, the VAE's weights): cache it so a rerun starts at once.
        cache = args.pool_cache / f"toy-pool-{args.seed}-{args.pool}.pt" if args.pool_cache else None
        if cache is not None and cache.is_file():
            pool = torch.load(cache)
            log(f"pool: {args.pool} clips from {cache}")
        else:
            pool = build_pool(pipeline, args.pool, grid, log)
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                torch.save(pool, cache)

        def encode(prompt: str, classes: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
            return t5_embeddings(pipeline.tokenizer, pipeline.text_encoder, prompt, classes, text_len=text_len)

        _, concept_table = encode("", list(SHAPES))  # [4, D]: each shape name's first token
        empty = encode("", [])[0][0]
        captions = {}
        for i, objs in enumerate(pool["objects"]):
            names = [SHAPES[o] for o in objs]
            captions[i] = (encode(pool["captions"][i], [])[0][0], encode(default_prompt(names), [])[0][0])

    by_count = {n: [i for i, objs in enumerate(pool["objects"]) if len(objs) == n] for n in (1, 2, 3)}
    device = torch.device(args.device)
    alphas = scheduler.alphas_cumprod.float()
    transformer.to(device).train()
    optimizer = torch.optim.AdamW(transformer.parameters(), lr=args.lr, weight_decay=0.01)
    # Warm-up, then constant: the model after N steps does not depend on --steps, so a checkpoint saved at step N
    # is what `--steps N` reproduces.
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / WARMUP_STEPS))
    start = time.time()
    for step in range(1, args.steps + 1):
        count = int(rng.choice([1, 2, 3], p=COUNT_P))  # identity is learnt where a distractor is
        batch = rng.choice(by_count[count], size=args.batch, replace=len(by_count[count]) < args.batch)
        x0 = pool["latents"][batch]  # [B, F, C, h, w]
        t = np.where(rng.random(args.batch) < 0.5, rng.integers(0, 1000, args.batch),
                     rng.integers(100, AUX_MAX_T + 1, args.batch))
        t = torch.from_numpy(t).long()
        a = alphas[t].view(-1, 1, 1, 1, 1)
        noise = torch.from_numpy(rng.standard_normal(x0.shape).astype(np.float32))
        noisy = (a.sqrt() * x0 + (1 - a).sqrt() * noise).to(device)
        target_v = (a.sqrt() * noise - (1 - a).sqrt() * x0).to(device)
        # Captions: the colour caption, the default prompt vidseg builds from class names, or none (dropout).
        prompt = []
        for i in batch:
            u = rng.random()
            prompt.append(empty if u < args.caption_dropout else captions[int(i)][int(u < 0.5 + args.caption_dropout / 2)])
        prompt = torch.stack(prompt).to(device)
        # Concept slots: the clip's shapes in a random order, then the padding slot (background).
        order = [rng.permutation(pool["objects"][int(i)]) for i in batch]
        concepts = torch.stack([concept_table[torch.as_tensor(o)] for o in order]).to(device)  # [B, C, D]
        cov = pool["coverage"][batch]  # [B, F, P, 1 + shapes]
        targets = torch.stack([torch.cat([cov[b, :, :, torch.as_tensor(o) + 1], cov[b, :, :, :1]], dim=-1)
                               for b, o in enumerate(order)]).permute(0, 3, 1, 2)  # [B, C + 1, F, P]
        reader = GroundingReader(targets.to(device), (t <= AUX_MAX_T).float().to(device), grid)
        with concept_stream_attention(transformer, concepts, grid, layers=layers, top_k=1, reader=reader):
            # Per-clip timesteps, so the transformer is called directly (the 2B-like toy model has no RoPE).
            v = transformer(hidden_states=noisy, encoder_hidden_states=prompt, timestep=t.to(device),
                            return_dict=False)[0]
        v_loss = F.mse_loss(v, target_v)
        aux = reader.loss()
        loss = v_loss + args.aux_weight * aux
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(transformer.parameters(), 1.0)
        if torch.isfinite(norm):
            optimizer.step()
        else:  # never let one degenerate batch poison the weights
            log(f"step {step}: non-finite gradient, skipped")
        schedule.step()
        if step % 25 == 0 or step == 1:
            elapsed = time.time() - start
            log(f"step {step}/{args.steps}  v {v_loss.item():.4f}  aux {aux.item():.4f}  "
                f"pointing {reader.pointing():.3f}  tokens {reader.token_accuracy():.3f}  {elapsed / step:.2f} s/step",
                step=step, v_loss=v_loss.item(), aux=aux.item(), pointing=reader.pointing(),
                token_accuracy=reader.token_accuracy(), count=count, seconds=elapsed)
        if step % args.save_every == 0 or step == args.steps:
            transformer.eval()
            save_small_pipeline(pipeline, args.out, spec.preset)
            if args.keep_checkpoints:
                save_small_pipeline(pipeline, args.out.with_name(f"{args.out.name}-step{step}"), spec.preset)
            transformer.train()
            log(f"saved {args.out} at step {step}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
