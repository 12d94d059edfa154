"""The one torch path from raw fields to probabilities and embeddings, and its three callers."""

import numpy as np
import pytest
import torch

from appliance.fieldsets import from_split, read_raw
from tests.conftest import CHANNELS, LABELS, MEAN, SIZE, STD, write_split
from training.evaluate import torch_classifier
from training.model import MCNN, MCNNConfig
from training.predict import load_predictor
from training.run import load_run, model_card, save_run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """An untrained run of the three LABELS at 128x128 and the five fields its split.csv lists."""
    run = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    save_run(
        run,
        MCNN(MCNNConfig(height=SIZE[0], width=SIZE[1], num_classes=len(LABELS))),
        {
            "run_id": "tiny",
            "labels": list(LABELS),
            "channels": list(CHANNELS),
            "normalization": {"mean": list(MEAN), "std": list(STD)},
        },
    )
    write_split(run)
    return run


def test_raw_fields_are_normalised_by_the_card_then_classified(tiny_run):
    predictor, info = load_predictor(tiny_run)
    model, _ = load_run(tiny_run)
    card = model_card(info)
    raw = read_raw(from_split(tiny_run)[:3], card.size)
    probabilities, embedding = predictor.predict(raw)
    with torch.no_grad():
        x = torch.from_numpy(
            (raw.astype(np.float32) - np.array(card.normalization.mean, np.float32)[:, None, None])
            / np.array(card.normalization.std, np.float32)[:, None, None]
        )
        features = model.forward_features(x)
        expected = torch.softmax(model.forward_head(features), dim=1)
    np.testing.assert_allclose(probabilities, expected.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(embedding, features.numpy(), rtol=0, atol=1e-5)
    assert probabilities.shape == (3, len(card.labels)) and embedding.shape == (3, model.config.hidden)
    assert not predictor.training


def test_evaluate_and_the_eager_baseline_answer_as_the_predictor(tiny_run):
    from export.eager import eager_predictor

    predictor, _ = load_predictor(tiny_run)
    raw = read_raw(from_split(tiny_run), predictor.card.size)
    reference = predictor.predict(raw)[0]
    classify, labels, size, _ = torch_classifier(tiny_run)
    eager, card = eager_predictor(tiny_run)
    assert (labels, size) == (card.labels, card.size) == (predictor.card.labels, predictor.card.size)
    np.testing.assert_array_equal(classify(raw)[0], reference)
    np.testing.assert_array_equal(eager(raw), reference)
