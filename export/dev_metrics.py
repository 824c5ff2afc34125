"""Task dev metrics of a bundle's ONNX variant beside the torch checkpoint's, with model/'s own scoring.

`python -m export.dev_metrics BUNDLE --data FILE --format sst2` prints both and the difference.
The ONNX session is wrapped to look like the transformers model model/evaluate.py expects, so the
figures come from the very same features, decoding and metrics as `berth eval`.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from pathlib import Path

import numpy as np


class OrtTaskModel:
    """An ORT session behind the small surface model/evaluate.py uses: config, forward, eval()."""

    def __init__(self, onnx_path: Path, config, input_names: list[str], threads: int = 2) -> None:
        from export.parity import session

        self.config = config
        self.session = session(onnx_path, threads)
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.inputs = input_names
        # model.heads.input_names() reads forward's signature; expose exactly the graph's inputs.
        def forward(**inputs):
            return self(**inputs)

        params = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY) for n in input_names]
        forward.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        self.forward = forward

    def eval(self) -> OrtTaskModel:
        return self

    def __call__(self, **inputs) -> dict:
        import torch

        feeds = {k: v.numpy().astype(np.int64) for k, v in inputs.items() if k in self.inputs}
        values = self.session.run(self.output_names, feeds)
        return {name: torch.from_numpy(v) for name, v in zip(self.output_names, values, strict=True)}


def compare(bundle: Path, data: Path, fmt: str, precision: str = "int8", threads: int = 2,
            checkpoint: Path | None = None) -> dict[str, object]:
    """Dev metrics of torch fp32 and of the bundle's CPU-default `precision` variant."""
    import torch

    from model.data import read_examples
    from model.evaluate import evaluate
    from model.heads import load_checkpoint
    from model.train import DEFAULT_MAX_LENGTH, SUMMARY_NAME
    from service.manifest import load_manifest

    torch.set_num_threads(threads)
    manifest = load_manifest(bundle)
    checkpoint = Path(checkpoint or str(manifest.source["checkpoint"]))
    trained = {}
    if (checkpoint / SUMMARY_NAME).is_file():
        trained = json.loads((checkpoint / SUMMARY_NAME).read_text())["args"]
    options = {"max_length": trained.get("max_length") or DEFAULT_MAX_LENGTH[manifest.task],
               "doc_stride": trained.get("doc_stride") or 64, "batch_size": 32}
    model, tokenizer = load_checkpoint(checkpoint, manifest.task)
    examples = read_examples(data, fmt, manifest.task)
    key, variant = manifest.variant_for(precision, "cpu")  # type: ignore[arg-type, misc]
    onnx_model = OrtTaskModel(bundle / variant.file, model.config, manifest.inputs, threads)
    ref = evaluate(manifest.task, model, tokenizer, examples, **dict(options))
    got = evaluate(manifest.task, onnx_model, tokenizer, examples, **dict(options))
    metric = ref["metric"]
    return {"bundle": str(bundle), "variant": key, "file": variant.file, "metric": metric,
            "torch": ref[metric], "onnx": got[metric], "difference": got[metric] - ref[metric],
            "torch_all": ref, "onnx_all": got}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--format", required=True, help="model/ data format (sst2, conll, squad, ...)")
    parser.add_argument("--precision", default="int8")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    print(json.dumps(compare(args.bundle, args.data, args.format, args.precision, args.threads), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
