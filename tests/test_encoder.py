"""The encoder: loading by directory, outputs, fingerprints, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidseek import ModelError
from vidseek.models import FrameEncoder


@pytest.fixture(scope="module")
def encoder(tiny_clip_dir):
    return FrameEncoder.load(tiny_clip_dir, device="cpu")


def test_outputs_are_normalised_and_shaped(encoder):
    info = encoder.info
    assert (info.kind, info.embed_dim, info.image_size, info.grid) == ("clip", 64, 64, (8, 8))
    frames = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    out = encoder.encode_frames(frames)
    assert out.embeddings.shape == (3, 64) and out.patches.shape == (3, 8, 8, info.vision_width)
    np.testing.assert_allclose(np.linalg.norm(out.embeddings, axis=1), 1.0, atol=1e-5)
    text = encoder.encode_text(["a red circle moves left", "x"])
    assert text.shape == (2, 64)
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)
    # an image of another size is resized the way ingest resizes frames
    big = np.zeros((90, 160, 3), np.uint8)
    assert encoder.encode_images([big]).shape == (1, 64)
    with pytest.raises(ValueError):
        encoder.encode_frames(np.zeros((1, 32, 32, 3), np.uint8))


def test_fingerprint_is_stable_and_weight_sensitive(tiny_clip_dir, trained_encoder_dir, encoder):
    assert FrameEncoder.load(tiny_clip_dir, device="cpu").info.fingerprint == encoder.info.fingerprint
    assert FrameEncoder.load(trained_encoder_dir, device="cpu").info.fingerprint != encoder.info.fingerprint
    # the same weights loaded in float16 (as on a GPU) are the same encoder
    half = FrameEncoder.load(tiny_clip_dir, device="cpu", dtype=torch.float16)
    assert half.info.fingerprint == encoder.info.fingerprint


def test_unloadable_model_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="hub is unreachable|could not load"):
        FrameEncoder.load("no-such-org/no-such-model", device="cpu")
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ModelError):
        FrameEncoder.load(tmp_path, device="cpu")


def test_siglip_checkpoints_load_and_encode(tmp_path):
    """SigLIP has no class token and no attention mask for text: both paths are exercised."""
    from transformers import SiglipConfig, SiglipModel

    from vidseek.models.tiny import write_char_tokenizer

    config = SiglipConfig(
        text_config=dict(vocab_size=514, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=24, pad_token_id=513,
                         bos_token_id=512, eos_token_id=513),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64,
                           num_hidden_layers=1, num_attention_heads=2))
    SiglipModel(config).save_pretrained(tmp_path)
    write_char_tokenizer(tmp_path, max_length=24)
    encoder = FrameEncoder.load(tmp_path, device="cpu")
    assert encoder.info.kind == "siglip" and encoder.info.grid == (4, 4)
    out = encoder.encode_frames(np.zeros((2, 32, 32, 3), np.uint8))
    assert out.embeddings.shape == (2, 32) and out.patches.shape == (2, 4, 4, 32)
    assert encoder.encode_text(["a red circle"]).shape == (1, 32)
    encoder.quantize_text()  # SigLIP's text projection (its head) sits inside the text tower
    assert encoder.encode_text(["a red circle"]).shape == (1, 32)


def test_int8_text_encoding_changes_text_only(tiny_clip_dir):
    """quantize_text swaps the text tower's linear layers for int8 ones: text embeddings
    stay close, images and the fingerprint (which archives check) do not change at all."""
    fp32 = FrameEncoder.load(tiny_clip_dir, device="cpu")
    int8 = FrameEncoder.load(tiny_clip_dir, device="cpu")
    int8.quantize_text()
    int8.quantize_text()  # a second call is a no-op
    assert int8.text_int8 and not fp32.text_int8
    assert int8.info.fingerprint == fp32.info.fingerprint
    frames = np.random.default_rng(1).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    np.testing.assert_array_equal(int8.encode_frames(frames).embeddings,
                                  fp32.encode_frames(frames).embeddings)
    texts = ["a red circle moves left", "a big blue square appears", "x"]
    a, b = int8.encode_text(texts), fp32.encode_text(texts)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert (a * b).sum(1).min() > 0.98
    assert not np.array_equal(a, b)  # really quantised
    half = FrameEncoder.load(tiny_clip_dir, device="cpu", dtype=torch.float16)
    with pytest.raises(ModelError, match="float32"):
        half.quantize_text()
