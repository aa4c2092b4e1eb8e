"""The ssl feature set with a small, randomly initialised wav2vec 2.0 encoder built here
(no weights are downloaded, ever)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchaudio.models as tam

from learner.features import ExtractorUnavailable, describe, get_extractor
from learner.models import ClipFeatures, TrainingRun
from learner.services import features, predict, training

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

CONFIG = {
    "extractor_mode": "group_norm",
    "extractor_conv_layer_config": [[32, 10, 5], [32, 3, 2], [32, 3, 2], [32, 2, 2]],
    "extractor_conv_bias": False,
    "encoder_embed_dim": 24,
    "encoder_projection_dropout": 0.0,
    "encoder_pos_conv_kernel": 16,
    "encoder_pos_conv_groups": 4,
    "encoder_num_layers": 3,
    "encoder_num_heads": 2,
    "encoder_attention_dropout": 0.0,
    "encoder_ff_interm_features": 48,
    "encoder_ff_interm_dropout": 0.0,
    "encoder_dropout": 0.0,
    "encoder_layer_norm_first": False,
    "encoder_layer_drop": 0.0,
    "aux_num_out": None,
}


def save_random_encoder(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    model = tam.wav2vec2_model(
        **{
            **CONFIG,
            "extractor_conv_layer_config": [
                tuple(layer) for layer in CONFIG["extractor_conv_layer_config"]
            ],
        }
    )
    torch.save({"arch": "wav2vec2_model", "config": CONFIG, "state_dict": model.state_dict()}, path)
    return path


@pytest.fixture
def checkpoint(tmp_path, settings) -> Path:
    path = save_random_encoder(tmp_path / "tiny-wav2vec2.pt", seed=0)
    settings.EMOLOOP_SSL_CHECKPOINT = str(path)
    return path


def test_the_ssl_set_pools_every_layer_of_the_configured_checkpoint(checkpoint):
    ex = get_extractor("ssl", features.conf.extractor_options())

    assert ex.dim == 3 * 24  # three layers of width 24, each mean-pooled
    assert ex.version.startswith("1-wav2vec2_model-")
    vector = ex.extract(torch.randn(40000).numpy() * 0.1)
    assert vector.shape == (72,)
    available = {row["name"]: row for row in describe(features.conf.extractor_options())}
    assert available["ssl"]["available"]


def test_a_broken_checkpoint_is_reported_not_loaded(tmp_path, settings):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    settings.EMOLOOP_SSL_CHECKPOINT = str(bad)
    with pytest.raises(ExtractorUnavailable, match="cannot read the SSL checkpoint"):
        features.extractor("ssl")


def test_a_project_trains_and_predicts_on_ssl_features(
    checkpoint, project, annotator, kit, tmp_path, settings
):
    clips = kit.clips(project, ["03", "08", "09", "10"], per_emotion=2)
    kit.label(clips, annotator)
    kit.fast(project, feature_set="ssl")

    run, _ = training.open_run(project, trigger=TrainingRun.Trigger.COMMAND)
    run = training.run_training(run.pk)

    assert run.status == TrainingRun.Status.SUCCEEDED, run.reason
    version = run.model_version
    assert version.extractor == "ssl"
    assert ClipFeatures.objects.filter(extractor="ssl").count() == len(clips)
    assert predict.predict_clips(project, clips[:1])[0].feature_set == "ssl"

    # Another checkpoint is another extractor version: the cache recomputes, and the model
    # trained on the old weights refuses to mix them.
    settings.EMOLOOP_SSL_CHECKPOINT = str(save_random_encoder(tmp_path / "other.pt", seed=1))
    assert features.compute([c.pk for c in clips], "ssl") == len(clips)
    with pytest.raises(predict.FeatureMismatch, match="retrain"):
        predict.predict_clips(project, clips[:1])
