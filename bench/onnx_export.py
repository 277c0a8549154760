"""ONNX export of a fitted model: file size, export time, agreement with NumPy, generation speed.

    python bench/onnx_export.py [--data ../shared/data/shakespeare] [--config '{"document": true}']

Fits ``SaffuConfig()`` (with the ``--config`` changes) on the Shakespeare train split, exports it
(``saffu.export.to_onnx``) and reports: the file's size; the export's CPU seconds; the largest
|ONNX − NumPy| log-probability, the largest distance of each from a float64 forward pass (the
PyTorch module in double precision), and the mean NLL of both over the first ``--targets`` dev
targets (dev only: the test split is not read); the CPU seconds per token of greedy generation with the
README's onnxruntime loop (run from README.md itself) beside ``SaffuModel.generate``, and
whether the two texts agree. One kernel, BLAS and onnxruntime thread. Writes
bench/out/onnx_export.json.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

import saffu
from saffu import SaffuConfig, SaffuModel, read_documents, shakespeare_split
from saffu.export import to_onnx

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "onnx_export.json"


def readme_loop(path: Path) -> dict:
    """The names the README's "Running an exported model" block defines, for the file ``path``
    (one onnxruntime thread)."""
    text = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", text[text.index("Running an exported model"):], re.DOTALL)
    code = code.group(1).replace('providers=["CPUExecutionProvider"]',
                                 'providers=["CPUExecutionProvider"], sess_options=_options')
    code = code.replace('"model.onnx"', repr(str(path))).replace('print("ROMEO." + generate("ROMEO."))', "")
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    namespace = {"_options": options}
    exec(compile(code, "README.md", "exec"), namespace)
    return namespace


def dev_rows(model: SaffuModel, documents: list[str],
             targets: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The first ``targets`` dev targets as left-padded rows (each its document so far), the
    NumPy model's log-probabilities of them (targets, V), the same in float64 (the PyTorch
    module in double precision), and the target ids (targets,)."""
    import torch

    from saffu.torch import context_batch, to_torch

    ids, pos = next(iter(model.encode(documents).chunks()))
    stop = int(np.flatnonzero(pos > 0)[targets - 1]) + 1
    expected = model.log_proba(ids, pos, 0, stop)
    module = to_torch(model).double()
    with torch.no_grad():
        exact = module(context_batch(ids, pos, 0, stop, module.specs, module.skip)).numpy()
    contexts = [ids[t - pos[t]:t] for t in np.flatnonzero(pos[:stop] > 0)]
    rows = np.full((len(contexts), max(map(len, contexts))), -1, dtype=np.int64)
    for row, context in zip(rows, contexts, strict=True):
        row[len(row) - len(context):] = context
    return rows, expected, exact, ids[:stop][pos[:stop] > 0]


def cpu_seconds(function, *args, **kwargs):
    started = time.process_time()
    result = function(*args, **kwargs)
    return time.process_time() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "shakespeare"))
    parser.add_argument("--config", default="{}", help="SaffuConfig changes as JSON")
    parser.add_argument("--targets", type=int, default=512, help="dev targets compared")
    parser.add_argument("--tokens", type=int, default=100, help="greedy tokens generated")
    args = parser.parse_args()
    saffu.set_num_threads(1)
    threadpool_limits(1)
    __import__("torch").set_num_threads(1)
    split = shakespeare_split(args.data)
    changes = json.loads(args.config)
    fit_cpu, model = cpu_seconds(SaffuModel(SaffuConfig(**changes)).fit, read_documents(split.train),
                                 verbose=0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        export_cpu, _ = cpu_seconds(to_onnx, model, path)
        loop = readme_loop(path)
        rows, expected, exact, targets = dev_rows(model, list(read_documents(split.dev)), args.targets)
        got = np.concatenate([loop["session"].run(["log_probs"], {"input_ids": rows[i:i + 64]})[0]
                              for i in range(0, len(rows), 64)])
        onnx_cpu, onnx_text = cpu_seconds(loop["generate"], "ROMEO.", max_tokens=args.tokens, temperature=0)
        numpy_cpu, numpy_text = cpu_seconds(model.generate, "ROMEO.", max_tokens=args.tokens, temperature=0)
        size = path.stat().st_size
    produced = max(len(model.tokenizer.encode(numpy_text)), 1)  # fewer than asked if <eod> came first
    picked = np.arange(len(targets))
    result = {
        "config": changes, "fit_cpu_s": round(fit_cpu, 2), "export_cpu_s": round(export_cpu, 2),
        "file_mb": round(size / 2**20, 1), "parameters": model.n_parameters,
        "dev_targets": len(targets), "max_abs_diff": float(np.abs(got - expected).max()),
        "max_abs_log_p": float(np.abs(expected).max()),
        "numpy_vs_float64": float(np.abs(expected - exact).max()),
        "onnx_vs_float64": float(np.abs(got - exact).max()),
        "dev_nll_numpy": float(-expected[picked, targets].mean()),
        "dev_nll_onnx": float(-got[picked, targets].mean()),
        "greedy_tokens": produced, "onnx_ms_per_token": round(1000 * onnx_cpu / produced, 2),
        "numpy_ms_per_token": round(1000 * numpy_cpu / produced, 2),
        "same_text": onnx_text == numpy_text,
        "versions": {"saffu": saffu.__version__, "onnxruntime": __import__("onnxruntime").__version__,
                     "python": sys.version.split()[0]},
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
