"""The image tower's precision (issue 15): fp32, bf16 autocast or int8 linear layers keep the
embeddings of real frames close to fp32's, and an archive records the precision it was built
with and refuses another one (it never mixes embeddings of two precisions silently). The
default, ``auto``, takes an existing archive's precision, else on a CPU bf16 where it has
AMX/AVX-512 BF16 and int8 elsewhere, and fp32 on a GPU."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from typer.testing import CliRunner

from vidseek import Archive, ConfigError, IngestConfig, ModelError
from vidseek.cli import app
from vidseek.indexer import FrameSampler, read_frame
from vidseek.indexer.ingest import archive_config, check_settings
from vidseek.models import FrameEncoder
from vidseek.models.encoder import cpu_has_native_bf16, default_image_precision

# what precision auto gives on this machine's CPU: bf16 where it computes bf16 in hardware
CPU_AUTO = default_image_precision("cpu")


@pytest.fixture(scope="module")
def real_frames(media, tiny_clip_dir):
    side = FrameEncoder.load(tiny_clip_dir, device="cpu").info.image_size
    frames = [b.pixels for name in ("bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4")
              for b in FrameSampler(media / name, fps=1.0, size=(side, side))]
    return np.concatenate(frames)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("precision, floor", [("bf16", 0.999), ("int8", 0.99), ("onnx-int8", 0.99)])
def test_reduced_precision_embeddings_stay_close_to_fp32(tiny_clip_dir, real_frames, precision, floor):
    fp32 = FrameEncoder.load(tiny_clip_dir, device="cpu")
    fast = FrameEncoder.load(tiny_clip_dir, device="cpu")
    fast.set_image_precision(precision)
    fast.set_image_precision(precision)  # a second call is a no-op
    assert fast.image_precision == precision and fp32.image_precision == "fp32"
    assert fast.info.fingerprint == fp32.info.fingerprint  # the archive records precision apart
    want, got = fp32.encode_frames(real_frames), fast.encode_frames(real_frames)
    assert len(real_frames) >= 20
    assert cosines(got.embeddings, want.embeddings).min() >= floor
    assert not np.array_equal(got.embeddings, want.embeddings)  # really computed otherwise
    np.testing.assert_allclose(np.linalg.norm(got.embeddings, axis=1), 1.0, atol=1e-5)
    assert got.embeddings.dtype == got.patches.dtype == np.float32
    patch_cos = cosines(got.patches.reshape(-1, got.patches.shape[-1]),
                        want.patches.reshape(-1, want.patches.shape[-1]))
    assert np.median(patch_cos) >= floor  # the dense tokens stored for grounding, too


def test_int8_is_one_way_and_unknown_precisions_are_refused(tiny_clip_dir):
    encoder = FrameEncoder.load(tiny_clip_dir, device="cpu")
    with pytest.raises(ModelError, match="fp32, bf16, int8"):
        encoder.set_image_precision("fp16")
    encoder.set_image_precision("bf16")
    encoder.set_image_precision("fp32")  # autocast only: back to fp32 freely
    encoder.set_image_precision("int8")
    with pytest.raises(ModelError, match="already quantised to int8"):
        encoder.set_image_precision("fp32")
    with pytest.raises(ConfigError, match="precision must be one of auto, fp32, bf16, int8"):
        IngestConfig(precision="fp16")


def test_onnx_tower_is_exported_once_and_needs_its_extra(tiny_clip_dir, real_frames, tmp_path, monkeypatch):
    """onnx-int8 exports and quantises the tower once per model, atomically, into the cache
    folder; a later encoder loads that file without exporting; without ONNX Runtime the
    error names the extra to install."""
    import sys

    import torch

    monkeypatch.setenv("VIDSEEK_CACHE_DIR", str(tmp_path / "cache"))
    first = FrameEncoder.load(tiny_clip_dir, device="cpu")
    first.set_image_precision("onnx-int8")
    [exported] = (tmp_path / "cache" / "onnx").glob("*/image-int8.onnx")
    assert [p.name for p in exported.parent.iterdir()] == ["image-int8.onnx"]  # no leftovers
    want = first.encode_frames(real_frames[:7]).embeddings

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(torch.onnx, "export", no_export)
    again = FrameEncoder.load(tiny_clip_dir, device="cpu")
    again.set_image_precision("onnx-int8")
    np.testing.assert_allclose(again.encode_frames(real_frames[:7]).embeddings, want, atol=1e-6)
    again.set_image_precision("fp32")  # the torch model is untouched: back to fp32 freely
    monkeypatch.undo()  # the exporter again, and the cache folder: damage the cached file
    monkeypatch.setenv("VIDSEEK_CACHE_DIR", str(tmp_path / "cache"))
    exported.write_bytes(exported.read_bytes()[:1000])  # as if a disk filled up mid-copy
    healed = FrameEncoder.load(tiny_clip_dir, device="cpu")
    healed.set_image_precision("onnx-int8")  # exported again, not a traceback mid-ingest
    np.testing.assert_allclose(healed.encode_frames(real_frames[:7]).embeddings, want, atol=1e-6)

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if the extra were missing
    monkeypatch.setenv("VIDSEEK_CACHE_DIR", str(tmp_path / "other"))
    with pytest.raises(ModelError, match=r"pip install 'vidseek\[onnx\]'"):
        FrameEncoder.load(tiny_clip_dir, device="cpu").set_image_precision("onnx-int8")


def test_an_onnx_int8_archive_records_it(tmp_path, trained_encoder_dir, media):
    root = tmp_path / "a"
    with Archive.open(root, model=trained_encoder_dir, device="cpu", config=IngestConfig(precision="onnx-int8")) as arch:
        arch.ingest([media / "bikes.mp4", media / "carphone_pristine.mp4"])
        assert arch.manifest["ingest"]["precision"] == "onnx-int8"
    with Archive.open(root, device="cpu") as arch:  # reopened: the archive's own, found by image
        assert arch.config.precision == "onnx-int8"
        for name in ("bikes.mp4", "carphone_pristine.mp4"):
            [hit] = arch.search(image=read_frame(media / name, 2.0), top_k=1)
            assert hit.video == name and abs(hit.peak - 2.0) <= 1.0
        assert arch.encoder.image_precision == "onnx-int8"  # the query images too
    with pytest.raises(ConfigError, match="precision onnx-int8 \\(given int8\\)"):
        Archive.open(root, config=IngestConfig(precision="int8"))


def test_a_query_image_falls_back_where_the_archives_precision_cannot_run(tmp_path, tiny_clip_dir,
                                                                         media, monkeypatch, caplog):
    """An onnx-int8 archive searched where the onnx extra is missing: image queries are
    embedded in the encoder's own precision, with a warning, rather than failing."""
    import sys

    root = tmp_path / "a"
    with Archive.open(root, model=tiny_clip_dir, device="cpu", config=IngestConfig(precision="onnx-int8")) as arch:
        arch.ingest([media / "carphone_pristine.mp4"])
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails: the extra is missing
    with Archive.open(root, device="cpu") as arch, caplog.at_level(logging.WARNING, "vidseek.archive"):
        for _ in range(2):  # tried and warned once, not on every query
            [hit] = arch.search(image=read_frame(media / "carphone_pristine.mp4", 2.0), top_k=1)
            assert abs(hit.peak - 2.0) <= 1.0 and arch.encoder.image_precision == "fp32"
    assert caplog.text.count("not the archive's onnx-int8") == 1 and "vidseek[onnx]" in caplog.text


def test_archive_records_its_precision_and_refuses_another(tmp_path, tiny_clip_dir, media):
    root = tmp_path / "a"
    with Archive.open(root, model=tiny_clip_dir, device="cpu", config=IngestConfig(precision="int8")) as arch:
        arch.ingest([media / "carphone_pristine.mp4"])
        assert arch.manifest["ingest"]["precision"] == "int8"
        assert arch.encoder.image_precision == "int8"
        frames = arch.videos()[0].frames
    image = read_frame(media / "carphone_pristine.mp4", 2.0)
    with Archive.open(root, device="cpu") as arch:  # a query image is embedded as the frames were
        arch.embed_query(text="a man talking on a phone")
        assert arch.encoder.image_precision == "fp32"  # text alone leaves the image tower as loaded
        fp32 = arch.encoder.encode_images([image])[0]
        query = arch.embed_query(image=image)
        assert arch.encoder.image_precision == "int8"
        assert np.allclose(query, arch.encoder.encode_images([image])[0], atol=1e-6)
        assert not np.allclose(query, fp32, atol=1e-6) and float(query @ fp32) > 0.99
    with Archive.open(root, device="cpu") as arch:  # no config: the archive's own
        assert arch.config.precision == "int8"
        with pytest.raises(ConfigError, match="precision int8 \\(given fp32\\)"):
            arch.config = IngestConfig(precision="fp32")
        arch.config = IngestConfig(batch_size=4)  # auto: the archive's own
        assert arch.config.precision == "int8" and arch.config.batch_size == 4
    with pytest.raises(ConfigError, match=f"^{root}: this archive was built with precision int8 \\(given bf16\\)"):
        Archive.open(root, config=IngestConfig(precision="bf16"))
    with Archive.open(root, device="cpu") as arch:  # nothing was changed by the refusals
        assert [v.frames for v in arch.videos()] == [frames]
        assert arch.manifest["ingest"]["precision"] == "int8"
    # archives from before the setting was recorded were built in fp32, which auto keeps
    legacy = {"fps": 1.0, "prune_threshold": 0.1}
    check_settings(root, legacy, IngestConfig(precision="fp32"))
    check_settings(root, legacy, IngestConfig())
    assert archive_config(IngestConfig(), legacy, "cpu").precision == "fp32"
    with pytest.raises(ConfigError, match="precision fp32 \\(given int8\\)"):
        check_settings(root, legacy, IngestConfig(precision="int8"))


def test_cpu_auto_precision_follows_the_cpus_bf16_support(tmp_path, monkeypatch):
    import vidseek.models.encoder as encoder_module

    assert CPU_AUTO == ("bf16" if cpu_has_native_bf16() else "int8")
    for flags, want in (("fpu avx512f avx512_vnni", False), ("fpu avx512_bf16 avx512f", True),
                        ("fpu amx_bf16 amx_tile", True)):
        info = tmp_path / "cpuinfo"
        info.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        real_path = encoder_module.Path
        monkeypatch.setattr(encoder_module, "Path",
                            lambda p: info if str(p) == "/proc/cpuinfo" else real_path(p))
        encoder_module.cpu_has_native_bf16.cache_clear()
        try:
            assert encoder_module.cpu_has_native_bf16() is want
            assert default_image_precision("cpu") == ("bf16" if want else "int8")
            assert default_image_precision("cuda") == "fp32"
        finally:
            monkeypatch.setattr(encoder_module, "Path", real_path)
            encoder_module.cpu_has_native_bf16.cache_clear()


def test_auto_resolves_to_the_devices_default_or_the_archives_own():
    assert IngestConfig().precision == "auto"
    assert IngestConfig().resolved("cpu").precision == CPU_AUTO
    assert IngestConfig().resolved("cuda").precision == "fp32"
    assert IngestConfig().resolved("cuda:1").precision == "fp32"
    assert IngestConfig().resolved("cuda", "bf16").precision == "bf16"  # an archive's own wins
    assert IngestConfig(precision="fp32").resolved("cpu", "int8").precision == "fp32"  # given: kept
    assert archive_config(IngestConfig(), None, "cpu").precision == CPU_AUTO
    assert archive_config(IngestConfig(), {"precision": "bf16"}, "cpu").precision == "bf16"


def test_a_new_archive_with_auto_records_the_cpus_default(tmp_path, tiny_clip_dir, media):
    with Archive.open(tmp_path / "gpu", device="cuda") as arch:  # resolved before any model loads
        assert arch.config.precision == "fp32"
    with Archive.open(tmp_path / "a", model=tiny_clip_dir, device="cpu") as arch:  # no config: auto
        assert arch.config.precision == CPU_AUTO
        assert arch.ingest([media / "carphone_pristine.mp4"]).ok
        assert arch.manifest["ingest"]["precision"] == CPU_AUTO
        assert arch.encoder.image_precision == CPU_AUTO
    with Archive.open(tmp_path / "a", device="cpu", config=IngestConfig()) as arch:
        assert arch.config.precision == CPU_AUTO
    with pytest.raises(ConfigError, match=f"precision {CPU_AUTO} \\(given fp32\\)"):
        Archive.open(tmp_path / "a", config=IngestConfig(precision="fp32"))


def test_an_fp32_archive_ingested_with_auto_stays_fp32(tmp_path, tiny_clip_dir, media):
    root = tmp_path / "a"
    with Archive.open(root, model=tiny_clip_dir, device="cpu", config=IngestConfig(precision="fp32")) as arch:
        assert arch.ingest([media / "carphone_pristine.mp4"]).ok
    with Archive.open(root, device="cpu", config=IngestConfig(batch_size=8)) as arch:  # auto: no error
        assert arch.config.precision == "fp32"
        assert arch.ingest([media / "bikes.mp4"]).ok
        assert arch.encoder.image_precision == "fp32"
        assert arch.manifest["ingest"]["precision"] == "fp32"
        assert len(arch.videos()) == 2
    with pytest.raises(ConfigError, match="precision fp32 \\(given int8\\)"):
        Archive.open(root, config=IngestConfig(precision="int8"))


def test_cli_ingest_precision(tmp_path, tiny_clip_dir, media):
    runner = CliRunner()
    archive = str(tmp_path / "a")
    clip = str(media / "carphone_pristine.mp4")
    result = runner.invoke(app, ["ingest", clip, "--archive", archive, "--model", str(tiny_clip_dir),
                                 "--device", "cpu", "--precision", "int8"])
    assert result.exit_code == 0, result.output
    assert "1 indexed" in result.output
    result = runner.invoke(app, ["ingest", str(media / "bikes.mp4"), "--archive", archive,
                                 "--precision", "fp32"])
    assert result.exit_code == 1
    assert "error: " in result.output and "precision int8 (given fp32)" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(app, ["ingest", clip, "--archive", archive, "--precision", "fp16"])
    assert result.exit_code != 0 and "--precision must be auto, fp32, bf16, int8, onnx-int8, not 'fp16'" in result.output
    result = runner.invoke(app, ["ingest", str(media / "bikes.mp4"), "--archive", archive])
    assert result.exit_code == 0, result.output  # no flag (auto): the archive's own precision
    # a new archive with no flag: auto, this CPU's default; an fp32 one keeps fp32 under auto
    for name, flag, recorded in (("b", [], CPU_AUTO), ("c", ["--precision", "fp32"], "fp32"),
                                 ("d", ["--precision", "onnx-int8"], "onnx-int8")):
        result = runner.invoke(app, ["ingest", clip, "--archive", str(tmp_path / name), "--model",
                                     str(tiny_clip_dir), "--device", "cpu", *flag])
        assert result.exit_code == 0, result.output
        with Archive.open(tmp_path / name, create=False) as arch:
            assert arch.manifest["ingest"]["precision"] == recorded
    result = runner.invoke(app, ["ingest", str(media / "bikes.mp4"), "--archive", str(tmp_path / "c"),
                                 "--precision", "auto"])
    assert result.exit_code == 0, result.output


def test_thread_split_gives_decoding_one_core_with_an_int8_tower():
    """IngestConfig's thread counts default to None: with int8 or bf16 on a CPU one FFmpeg
    thread and the other cores for torch (the fastest split measured on 2 cores,
    docs/benchmarks.md); fp32 and GPUs keep each library's choice (0); counts the config
    names win; negative ones are refused."""
    from vidseek.indexer.pipeline import thread_split

    auto = IngestConfig()
    assert auto.decode_threads is None and auto.torch_threads is None
    assert thread_split(auto, "int8", "cpu", cores=2) == (1, 1)
    assert thread_split(auto, "int8", "cpu", cores=16) == (1, 15)
    assert thread_split(auto, "int8", "cpu", cores=1) == (1, 1)
    assert thread_split(auto, "fp32", "cpu", cores=2) == (0, 0)
    assert thread_split(auto, "bf16", "cpu", cores=2) == (1, 1)
    assert thread_split(auto, "onnx-int8", "cpu", cores=2) == (1, 1)
    assert thread_split(auto, "fp32", "cuda:0", cores=2) == (0, 0)
    assert thread_split(IngestConfig(torch_threads=2), "int8", "cpu", cores=2) == (1, 2)
    assert thread_split(IngestConfig(decode_threads=0, torch_threads=0), "int8", "cpu", cores=2) == (0, 0)
    with pytest.raises(ConfigError, match="decode_threads and torch_threads"):
        IngestConfig(decode_threads=-1)


def test_ingest_runs_with_the_split_it_chose(media, tiny_clip_dir, monkeypatch):
    """extract_features decodes and encodes with thread_split's counts."""
    import vidseek.indexer.pipeline as pipeline

    used: dict[str, int] = {}
    real_sampler, real_threads = pipeline.FrameSampler, pipeline.torch_threads

    def sampler(*args, threads=0, **kwargs):
        used["decode"] = threads
        return real_sampler(*args, threads=threads, **kwargs)

    def threads(count):
        used["torch"] = count
        return real_threads(count)

    monkeypatch.setattr(pipeline, "FrameSampler", sampler)
    monkeypatch.setattr(pipeline, "torch_threads", threads)
    monkeypatch.setattr(pipeline.os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    encoder = FrameEncoder.load(tiny_clip_dir, device="cpu")
    features, _ = pipeline.extract_features(media / "bikes.mp4", encoder, IngestConfig(precision="int8"))
    assert used == {"decode": 1, "torch": 2} and len(features.times) > 0
    encoder = FrameEncoder.load(tiny_clip_dir, device="cpu")
    pipeline.extract_features(media / "bikes.mp4", encoder, IngestConfig(precision="fp32"))
    assert used == {"decode": 0, "torch": 0}
