"""Which weight products to quantize to int8? Compared on held-out data, never on test.

Exports a bundle's fused fp32 graph (as `sav-router export-onnx` does), quantizes it
with several node-selection rules, and reports each rule's top-1 agreement with the
fp32 graph and its batch throughput on the Banking77 benchmark's calibration split
(held out from training by `benchmarks/banking77.py`, same seed): the rule shipped
in `quantize_int8` was chosen from this table, and the equivalence gate then checks
it per model on the check set.

    .venv/bin/python benchmarks/int8_rules.py --model runs/banking77/model_closed
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.banking77 import COLUMNS, DATA  # noqa: E402


def main() -> None:
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoTokenizer

    from sav_router.model.backends.onnx_backend import session_options
    from sav_router.model.backends.onnx_export import GELU_OPS, export_fp32, fuse_transformer_ops
    from sav_router.data.annotations import load_annotations
    from sav_router.data.splits import stratified_split
    from sav_router.model.network import Encoded, length_sorted_batches

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--output", type=Path, default=REPO / "runs" / "int8-rules")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)

    config = json.loads((args.model / "config.json").read_text())
    fp32 = export_fp32(args.model, args.output / "fp32.onnx")
    fuse_transformer_ops(fp32, num_heads=config["num_attention_heads"], hidden_size=config["hidden_size"])
    records = load_annotations([args.data / "train.csv"], columns=COLUMNS).records
    texts = [r.text for r in stratified_split(records, calibration=0.12, validation=0.04, seed=args.seed).calibration]
    encoded = Encoded(AutoTokenizer.from_pretrained(str(args.model)), texts, 64)

    def run(path: Path) -> tuple[np.ndarray, float]:
        session = ort.InferenceSession(str(path), session_options(args.threads), providers=["CPUExecutionProvider"])
        logits = None
        started = time.perf_counter()
        for indices in length_sorted_batches(encoded.lengths, 64):
            ids, mask = encoded.batch(indices)
            out = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
            logits = np.zeros((len(texts), out.shape[1]), np.float32) if logits is None else logits
            logits[indices] = out
        return logits, len(texts) / (time.perf_counter() - started)

    reference, rate = run(fp32)
    rows = [("fp32 (reference)", 0, 1.0, 0, rate)]
    graph = onnx.load(str(fp32)).graph
    weights = {t.name for t in graph.initializer}
    producer = {name: node.op_type for node in graph.node for name in node.output}
    matmuls = [n for n in graph.node if n.op_type == "MatMul" and n.input[1] in weights]
    attention = [n.name for n in graph.node if n.op_type == "Attention"]
    down = {n.name for n in matmuls if producer.get(n.input[0]) in GELU_OPS}
    last = max((int(m.group(1)) for n in matmuls if (m := re.search(r"layer\.(\d+)", n.name))), default=-1)
    rules = {
        "every weight product (MatMul + Attention)": ([n.name for n in matmuls] + attention, ["MatMul", "Attention"]),
        "all but the feed-forward down-projections (shipped)": ([n.name for n in matmuls if n.name not in down] + attention, ["MatMul", "Attention"]),
        "all but the last layer": ([n.name for n in matmuls if f"layer.{last}." not in n.name] + [a for a in attention if f"layer.{last}" not in a], ["MatMul", "Attention"]),
        "MatMuls only (attention fp32)": ([n.name for n in matmuls], ["MatMul"]),
    }
    for index, (name, (nodes, ops)) in enumerate(rules.items()):
        path = args.output / f"rule{index}.onnx"
        quantize_dynamic(
            str(fp32), str(path), weight_type=QuantType.QInt8, op_types_to_quantize=ops, nodes_to_quantize=nodes,
            per_channel=True, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
        logits, rate = run(path)
        flips = int((logits.argmax(1) != reference.argmax(1)).sum())
        rows.append((name, len(nodes), 1 - flips / len(texts), flips, rate))

    print(f"{len(texts)} calibration-split requests, {args.threads} threads\n")
    print("| rule | nodes quantized | top-1 agreement with fp32 | flips | batch ex/s |")
    print("|---|---|---|---|---|")
    for name, nodes, agreement, flips, rate in rows:
        print(f"| {name} | {nodes} | {agreement:.4f} | {flips} | {rate:.0f} |")


if __name__ == "__main__":
    main()
