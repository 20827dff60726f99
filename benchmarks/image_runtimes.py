"""The image tower in other runtimes: is OpenVINO a faster way than ONNX Runtime? (issue 15)

    pip install openvino nncf        # not vidseek extras: measured here, not adopted
    python benchmarks/image_runtimes.py [--batch 32] [--threads 2] [--reps 3]

The ViT-B/32-shaped tower of benchmarks/ingest.py (random weights, real compute), one batch
of random frames, each runtime timed in the same run, ``--threads`` intra-op threads:
torch fp32 and the precisions vidseek has (torch int8, ONNX Runtime int8 = ``onnx-int8``);
OpenVINO on the float32 tower (converted from torch), OpenVINO on ONNX Runtime's int8 file,
OpenVINO with NNCF's static int8 quantisation (calibrated on random frames) and with NNCF's
int8 weight compression. Each row gives images/s, its ratio to torch fp32, and the lowest
cosine of its embeddings to torch fp32's. Prints a table; writes
benchmarks/results/image_runtimes.json. A row whose runtime is missing is left out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from ingest import build_model  # noqa: E402


def images_per_second(run: Callable[[], np.ndarray], batch: int, reps: int) -> tuple[float, np.ndarray]:
    out = run()  # warm-up (and the embeddings compared)
    started = time.perf_counter()
    for _ in range(reps):
        run()
    return batch * reps / (time.perf_counter() - started), out


def lowest_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(1).min())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    os.environ["VIDSEEK_CACHE_DIR"] = tempfile.mkdtemp(prefix="vidseek-runtimes-")  # a fresh ONNX export
    torch.set_num_threads(args.threads)
    from vidseek.models.encoder import FrameEncoder
    from vidseek.models.onnx_tower import _ImageFeatures, cache_dir

    model_dir = build_model("vit-b32")
    encoder = FrameEncoder.load(model_dir, device="cpu")
    side = encoder.info.image_size
    frames = np.random.default_rng(0).integers(0, 255, (args.batch, side, side, 3), dtype=np.uint8)
    values = encoder._pixel_values(frames).numpy()
    rows: list[dict] = []

    def add(name: str, run: Callable[[], np.ndarray]) -> None:
        rate, embeddings = images_per_second(run, args.batch, args.reps)
        reference = rows[0]["embeddings"] if rows else embeddings
        rows.append({"runtime": name, "images_per_s": rate, "embeddings": embeddings,
                     "lowest_cosine": lowest_cosine(embeddings, reference)})
        print(f"{name}: {rate:.1f} images/s", flush=True)

    encoder.set_image_precision("fp32")
    add("torch fp32", lambda: np.asarray(encoder.encode_frames(frames).embeddings))
    encoder.set_image_precision("onnx-int8")
    add("ONNX Runtime int8 (onnx-int8)", lambda: np.asarray(encoder.encode_frames(frames).embeddings))
    int8 = FrameEncoder.load(model_dir, device="cpu")
    int8.set_image_precision("int8")
    add("torch int8 (int8)", lambda: np.asarray(int8.encode_frames(frames).embeddings))
    try:
        import openvino as ov
    except ImportError:
        print("openvino is not installed: its rows are left out (pip install openvino nncf)")
        ov = None
    if ov is not None:
        core = ov.Core()
        config = {"INFERENCE_NUM_THREADS": args.threads, "PERFORMANCE_HINT": "LATENCY"}

        def compiled_run(model) -> Callable[[], np.ndarray]:
            compiled = core.compile_model(model, "CPU", config)
            request = compiled.create_infer_request()
            return lambda: np.asarray(request.infer({0: values})[compiled.outputs[0]])

        with torch.no_grad():
            tower = ov.convert_model(_ImageFeatures(encoder.model).eval(),
                                     example_input=torch.from_numpy(values[:2]))
        add("OpenVINO fp32", compiled_run(tower))
        add("OpenVINO on ONNX Runtime's int8 file",
            compiled_run(core.read_model(str(next(cache_dir().rglob("image-int8.onnx"))))))
        try:
            import nncf
        except ImportError:
            print("nncf is not installed: the OpenVINO int8 rows are left out")
            nncf = None
        if nncf is not None:
            calibration = [encoder._pixel_values(np.random.default_rng(seed).integers(
                0, 255, (8, side, side, 3), dtype=np.uint8)).numpy() for seed in range(1, 9)]
            add("OpenVINO int8 (NNCF static quantisation)",
                compiled_run(nncf.quantize(tower, nncf.Dataset(calibration),
                                           model_type=nncf.ModelType.TRANSFORMER, subset_size=64)))
            add("OpenVINO int8 weights (NNCF compression)",
                compiled_run(nncf.compress_weights(tower, mode=nncf.CompressWeightsMode.INT8_ASYM)))
    base = rows[0]["images_per_s"]
    print(f"\n{args.batch} frames a batch, {args.threads} threads\n")
    print("| runtime | images/s | × torch fp32 | lowest cosine to torch fp32 |")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row['runtime']} | {row['images_per_s']:.1f} | {row['images_per_s'] / base:.2f} | "
              f"{row['lowest_cosine']:.5f} |")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "image_runtimes.json").write_text(json.dumps(
        [{k: v for k, v in row.items() if k != "embeddings"} for row in rows], indent=2))


if __name__ == "__main__":
    main()
