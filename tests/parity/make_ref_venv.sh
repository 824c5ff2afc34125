#!/usr/bin/env bash
# Builds .venv-ref: the Hugging Face 4.57 pipelines that the parity tests compare /ner and /qa to.
# transformers 5 removed the question-answering pipeline, so the reference lives in its own
# virtualenv (git-ignored by `.venv*/`); tests/parity/reference.py runs inside it.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${BERTH_REF_VENV:-.venv-ref}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
# torch resolves to the CPU wheel from the configured find-links when there is one.
"$VENV/bin/pip" install --quiet "torch==2.13.0" "transformers==4.57.6" numpy
"$VENV/bin/python" -c "import transformers, torch; print('reference venv:', transformers.__version__, torch.__version__)"
