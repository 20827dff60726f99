"""Distributed ingest on a local Ray instance matches local ingest."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import vidseek

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def snapshot(archive: vidseek.Archive) -> dict:
    fields = ("path", "name", "content_hash", "size_bytes", "duration", "fps", "native_fps",
              "width", "height", "codec", "frames", "kept_fraction")
    videos = {}
    for video in archive.videos():
        features = archive._store.video_features(video)
        videos[video.name] = ({f: getattr(video, f) for f in fields} | {"id": video.id}, features)
    return videos


def test_ray_ingest_matches_local_ingest(tmp_path, tiny_clip_dir, media, generated, local_ray):
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("bikes.mp4", "carphone_pristine.mp4", "bigbuckbunny.mp4"):
        shutil.copy(media / name, folder / name)
    shutil.copy(generated["noise"], folder / "noise.mp4")
    (folder / "broken.mp4").write_bytes(b"not a video at all")

    # fp32: vectors are compared within 1e-5, and int8's dynamic activation scales could turn a
    # thread-count rounding difference between the processes into a whole quantisation step
    fp32 = vidseek.IngestConfig(precision="fp32")
    with vidseek.Archive.open(tmp_path / "local", model=tiny_clip_dir, device="cpu", config=fp32) as local:
        local_report = local.ingest([folder])
        expected = snapshot(local)
    events = []
    with vidseek.Archive.open(tmp_path / "ray", model=tiny_clip_dir, device="cpu", config=fp32) as remote:
        report = remote.ingest([folder], engine="ray", progress=events.append)
        got = snapshot(remote)
        assert [f.path.name for f in report.failed] == ["broken.mp4"] == [
            f.path.name for f in local_report.failed]
        assert "broken.mp4" in report.failed[0].error
        assert sorted(r.name for r in report.indexed) == sorted(expected)
        assert {e.stage for e in events} >= {"start", "commit", "indexed", "failed"}
        # the same catalog (ids included) and the same vectors, within float tolerance
        assert got.keys() == expected.keys()
        for name, (record, features) in expected.items():
            other_record, other = got[name]
            assert other_record == record
            np.testing.assert_array_equal(other.times, features.times)
            np.testing.assert_allclose(other.embeddings, features.embeddings, atol=1e-5)
            np.testing.assert_array_equal(other.dense.kept, features.dense.kept)
            np.testing.assert_allclose(other.dense.tokens.astype(np.float32),
                                       features.dense.tokens.astype(np.float32), atol=2e-3)
        # searchable like the local archive; a second run skips every file
        query = remote._store.video_embeddings(remote.find_video("bikes.mp4"))[1][3]
        local_hits = vidseek.Archive.open(tmp_path / "local", create=False)
        try:
            assert ([h.video_id for h in remote._store.search_frames(query, 5)]
                    == [h.video_id for h in local_hits._store.search_frames(query, 5)])
        finally:
            local_hits.close()
        again = remote.ingest([folder], engine="ray")
        assert len(again.skipped) == 4 and not again.indexed


def test_cli_ingest_with_ray_engine(tmp_path, tiny_clip_dir, media, local_ray):
    from typer.testing import CliRunner

    from vidseek.cli import app

    runner = CliRunner()
    archive = str(tmp_path / "a")
    result = runner.invoke(app, ["ingest", str(media / "bikes.mp4"), "--archive", archive,
                                 "--model", str(tiny_clip_dir), "--device", "cpu", "--engine", "ray",
                                 "--workers", "1"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "1 indexed, 0 skipped, 0 failed" in result.output
    result = runner.invoke(app, ["ingest", str(media / "bikes.mp4"), "--archive", archive,
                                 "--engine", "spark"])
    assert result.exit_code == 1 and "--engine must be local or ray" in result.output


def test_worker_with_other_weights_is_a_model_error(tiny_clip_dir, media, local_ray):
    from vidseek.indexer.distributed import extract_on_ray

    with pytest.raises(vidseek.ModelError, match="fingerprint"):
        list(extract_on_ray([media / "bikes.mp4"], str(tiny_clip_dir), "not-this-one",
                            vidseek.IngestConfig()))
    with pytest.raises(vidseek.ModelError, match="no GPU"):
        list(extract_on_ray([media / "bikes.mp4"], str(tiny_clip_dir), "x", vidseek.IngestConfig(),
                            vidseek.RayOptions(device="cuda")))
