"""Where a certified int8 request's time goes, and what the obvious speed-ups would cost (issue 21's targets).

    python benchmarks/serving_breakdown.py --model BUNDLE [--threads 2] [--single 300]

On Banking77 test texts (the labels the bundle knows; read in place from ../shared), with the
bundle's own ONNX files, on `--threads` threads:
  1. one request at a time through `Router.predict` (as the server calls it), timed by part:
     tokenization, the ONNX session, the novelty score (the nearest-neighbour scan of the
     bundle's training embeddings), calibration and decision; p50 of each;
  2. ONNX Runtime's own profile of the int8 graph over the test texts in length-sorted
     batches of 64: the share of kernel time per operator type;
  3. the shipped int8 rule (`quantize_int8`: every weight product but the feed-forward
     down-projections) next to quantizing every weight product, and next to running batches
     on two single-threaded sessions at once instead of one two-threaded session: batch
     throughput (best of 3) and top-1 agreement with the fp32 graph.
Not a test: numbers depend on the machine and its load (printed with them).
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import logging
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BANKING77 = REPO.parent / "shared" / "datasets" / "banking77"
sys.path.insert(0, str(REPO))


def test_texts(labels: list[str]) -> list[str]:
    with (BANKING77 / "test.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    known = [row["text"] for row in rows if row["category"] in labels]
    return known or [row["text"] for row in rows]


def single_request_parts(bundle: Path, texts: list[str], threads: int, count: int) -> dict[str, float]:
    """p50 (ms) of each part of `Router.predict([text])`, the way the server runs one request."""
    from sav_router.calibration.temperature import softmax
    from sav_router.model.backends.encoding import Encoded, length_sorted_batches
    from sav_router.model.router import Router, Scored

    router = Router.load(bundle, num_threads=threads)
    backend = router.backend
    router.predict(texts[:64])
    parts: dict[str, list[float]] = collections.defaultdict(list)
    for i in np.random.default_rng(0).choice(len(texts), size=min(count, len(texts)), replace=False):
        t0 = time.perf_counter()
        encoded = Encoded(backend.tokenizer, [texts[i]], backend.max_length)
        (indices,) = length_sorted_batches(encoded.lengths, backend.batch_size, backend.max_padding)
        ids, mask = encoded.arrays(indices)
        t1 = time.perf_counter()
        logits, pooled = backend.session.run(None, {"input_ids": ids, "attention_mask": mask})
        t2 = time.perf_counter()
        ood = router.ood.score(pooled) if router.ood is not None else None
        t3 = time.perf_counter()
        scored = Scored(probabilities=softmax(logits, router.manifest.temperature), ood_scores=ood, logits=logits, embeddings=pooled)
        router.decide_scored(scored, 0)
        t4 = time.perf_counter()
        router.predict([texts[i]])  # the real call, whole, for the total
        t5 = time.perf_counter()
        for name, seconds in (("tokenize", t1 - t0), ("onnx session", t2 - t1), ("novelty scan", t3 - t2),
                              ("calibrate + decide", t4 - t3), ("Router.predict, whole", t5 - t4)):
            parts[name].append(seconds * 1000)
    return {name: float(np.percentile(values, 50)) for name, values in parts.items()}


def session(path: Path, threads: int, profile_prefix: str | None = None):
    import onnxruntime as ort

    from sav_router.model.backends.onnx_backend import session_options

    options = session_options(threads)
    if profile_prefix:
        options.enable_profiling, options.profile_file_prefix = True, profile_prefix
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def batches_of(bundle: Path, texts: list[str], max_length: int) -> list[tuple[list[int], np.ndarray, np.ndarray]]:
    from sav_router.model.backends.encoding import MAX_PADDING, Encoded, length_sorted_batches, load_tokenizer

    encoded = Encoded(load_tokenizer(bundle), texts, max_length)
    return [(idx, *encoded.arrays(idx)) for idx in length_sorted_batches(encoded.lengths, 64, MAX_PADDING)]


def top1(sess, batches, n: int) -> np.ndarray:
    out = np.zeros(n, dtype=np.int64)
    for idx, ids, mask in batches:
        out[idx] = sess.run(None, {"input_ids": ids, "attention_mask": mask})[0].argmax(axis=1)
    return out


def operator_shares(path: Path, batches, threads: int, folder: Path) -> list[tuple[str, float]]:
    sess = session(path, threads, str(folder / "ort"))
    for _, ids, mask in batches:
        sess.run(None, {"input_ids": ids, "attention_mask": mask})
    events = json.loads(Path(sess.end_profiling()).read_text())
    totals: collections.Counter = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            totals[event["args"]["op_name"]] += event["dur"]
    whole = sum(totals.values()) or 1
    return [(op, dur / whole) for op, dur in totals.most_common(6)]


def every_weight_product(fp32: Path, output: Path) -> Path:
    """The alternative rule: every weight MatMul and Attention to int8, the down-projections included."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(fp32)).graph
    weights = {tensor.name for tensor in graph.initializer}
    chosen = [n.name for n in graph.node if n.op_type == "Attention" or (n.op_type == "MatMul" and n.input[1] in weights)]
    logging.getLogger().setLevel(logging.ERROR)
    quantize_dynamic(str(fp32), str(output), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Attention"],
                     nodes_to_quantize=chosen, per_channel=True, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return output


def best_rate(run, n: int, repeats: int = 3) -> float:
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = max(best, n / (time.perf_counter() - start))
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--single", type=int, default=300, help="single requests timed")
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from sav_router.core.bundle import read_manifest
    from sav_router.model.backends.onnx_export import FILES
    from sav_router.serving.runner import limit_helper_threads

    limit_helper_threads()
    manifest = read_manifest(args.model)
    texts = test_texts(manifest.labels)
    print(f"model {args.model} (certified: {manifest.serving.get('certified_backend')}); {len(texts)} Banking77 test texts; "
          f"threads {args.threads}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    print("\n1. one request at a time (p50, ms):")
    for name, ms in single_request_parts(args.model, texts, args.threads, args.single).items():
        print(f"   {name:24s} {ms:6.2f}")

    fp32, int8 = args.model / FILES["onnx"], args.model / FILES["onnx-int8"]
    batches = batches_of(args.model, texts, manifest.max_length)
    with tempfile.TemporaryDirectory() as folder:
        print("\n2. ONNX Runtime profile of the int8 graph, share of kernel time:")
        for op, share in operator_shares(int8, batches, args.threads, Path(folder)):
            print(f"   {op:28s} {share:6.1%}")

        everything = every_weight_product(fp32, Path(folder) / "every.int8.onnx")
        reference = top1(session(fp32, args.threads), batches, len(texts))
        one_thread = session(int8, 1)
        pool = ThreadPoolExecutor(2)

        def two_sessions() -> None:
            list(pool.map(lambda b: one_thread.run(None, {"input_ids": b[1], "attention_mask": b[2]}), batches))

        print("\n3. batch throughput (ex/s, best of 3) and top-1 agreement with the fp32 graph:")
        for name, path, runner in (
            ("fp32 (fused)", fp32, None),
            ("int8, shipped rule", int8, None),
            ("int8, every weight product", everything, None),
            ("int8 shipped, 2 x 1-thread runs", int8, two_sessions),
        ):
            sess = session(path, args.threads)
            rate = best_rate(runner or (lambda s=sess: top1(s, batches, len(texts))), len(texts))
            agreement = float((top1(sess, batches, len(texts)) == reference).mean())
            print(f"   {name:34s} {rate:6.0f}   agreement {agreement:.4f}")
    print(f"\nload average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
