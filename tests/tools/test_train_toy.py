"""The toy-model trainer's loss weights (tools/train_toy_model.py): the background must count, or the model learns
to claim every token as object."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch

from tests.conftest import REPO

TRAINER = REPO / "tools" / "train_toy_model.py"


@pytest.fixture(scope="module")
def trainer():
    spec = importlib.util.spec_from_file_location("vidseg_train_toy", TRAINER)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_background_and_objects_weigh_half_each(trainer):
    # Two clips of 1 latent frame, 10 tokens: clip 0 has one object on 1 token, clip 1 two objects on 2 and 3.
    targets = torch.zeros(2, 3, 1, 10)  # [B, slots (2 concepts + background), F, P]
    targets[0, 0, 0, :1] = 1
    targets[0, 2, 0, 1:] = 1
    targets[1, 0, 0, :2] = 1
    targets[1, 1, 0, 2:5] = 1
    targets[1, 2, 0, 5:] = 1
    reader = trainer.GroundingReader(targets, torch.ones(2), (1, 2, 5))
    w = reader.balanced_w[:, 0]  # [B, P], summing to 1 over the batch
    assert torch.isclose(w.sum(), torch.tensor(1.0))
    background = reader.label[:, 0] == 2
    assert torch.allclose(w[background].sum(), torch.tensor(0.5))
    assert torch.isclose(w[0, :1].sum(), torch.tensor(0.25))  # clip 0's only object: half of its clip
    assert torch.isclose(w[1, :2].sum(), w[1, 2:5].sum())  # clip 1's objects alike, whatever their area
    assert torch.isclose(w[1, :2].sum(), torch.tensor(0.125))


def test_a_clip_past_the_grounding_timestep_carries_no_weight(trainer):
    targets = torch.zeros(2, 2, 1, 4)
    targets[:, 0, 0, :1] = 1
    targets[:, 1, 0, 1:] = 1
    reader = trainer.GroundingReader(targets, torch.tensor([1.0, 0.0]), (1, 2, 2))
    for w in (reader.balanced_w, reader.decision_w):
        assert w[1].sum() == 0 and torch.isclose(w[0].sum(), torch.tensor(1.0))


def test_iou_decision_weights_count_tokens_as_they_come_objects_twice(trainer):
    # One clip, 10 tokens: an object on 1 token, another on 3, the background on 6.
    targets = torch.zeros(1, 3, 1, 10)
    targets[0, 0, 0, :1] = 1
    targets[0, 1, 0, 1:4] = 1
    targets[0, 2, 0, 4:] = 1
    reader = trainer.GroundingReader(targets, torch.ones(1), (1, 2, 5), decision="iou")
    w = reader.decision_w[0, 0]
    assert torch.isclose(w.sum(), torch.tensor(1.0))
    assert torch.allclose(w[:4], 2 * w[4])  # every object token weighs two background tokens
    assert torch.allclose(w[4:], w[4])  # whatever the object's area: no per-label normalisation
    balanced = trainer.GroundingReader(targets, torch.ones(1), (1, 2, 5), decision="balanced")
    assert torch.equal(balanced.decision_w, balanced.balanced_w)
    assert torch.isclose(balanced.decision_w[0, 0, :1].sum(), balanced.decision_w[0, 0, 1:4].sum())
