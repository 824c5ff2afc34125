# berth CPU image. Stages:
#   requirements  dependency lists generated from pyproject.toml (so pip layers depend on them only)
#   loadtest      locust + the scenarios, for the compose `loadtest` profile
#   build         torch (CPU wheel) + the training stack; runs `berth models` to build the default bundles
#   runtime       (default) service dependencies only - no torch, no transformers - plus the bundles
#
#   docker build --network host -t berth:cpu .
#   docker run -p 8000:8000 berth:cpu
# Bundles can also come from a volume instead: -v $PWD/models:/models:ro (BERTH_MODELS_DIR=/models).

FROM python:3.11-slim AS requirements
WORKDIR /req
COPY pyproject.toml .
# One file per dependency group. A pyproject edit that leaves a group unchanged yields the same
# file, so the COPY of it below is a cache hit and the pip layer after it is reused.
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
groups = {'service': p['dependencies'], **p['optional-dependencies']}; \
[open(f'{name}.txt', 'w').write(chr(10).join(deps) + chr(10)) for name, deps in groups.items()]"


FROM python:3.11-slim AS loadtest
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 PYTHONPATH=/app
COPY --from=requirements /req/loadtest.txt /tmp/req/loadtest.txt
RUN pip install -r /tmp/req/loadtest.txt && rm -rf /tmp/req
WORKDIR /app
COPY data ./data
COPY loadtest ./loadtest
ENTRYPOINT ["python", "-m", "loadtest.run"]
CMD ["--host", "http://api:8000", "--scenario", "embed_interactive", "--users", "8", "--duration", "30s", "--out", "/reports"]


FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
COPY --from=requirements /req/service.txt /req/train.txt /tmp/req/
# torch from PyTorch's CPU index: the default PyPI torch drags in gigabytes of CUDA libraries.
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu \
        -r /tmp/req/service.txt -r /tmp/req/train.txt
WORKDIR /src
# Only what building the bundles reads: the training data, model/, export/ and the manifest
# contract (plus the CLI helper export imports). A change to the rest of the service, or to the
# loadtest, leaves this layer and the trained models cached; a change here retrains, as it may
# change the bundles.
COPY data ./data
COPY model ./model
COPY export ./export
COPY service/__init__.py service/cli.py service/manifest.py service/ort_options.py ./service/
# The same path as `make models` (`berth models`, without the other subcommands): builds every
# missing default bundle. BERTH_DEFAULT_MODELS limits which, e.g.
# --build-arg BERTH_DEFAULT_MODELS=minilm for a quick image.
ARG BERTH_DEFAULT_MODELS=
RUN if [ -z "$BERTH_DEFAULT_MODELS" ]; then unset BERTH_DEFAULT_MODELS; fi; \
    python -m export.defaults --models-dir /models


FROM python:3.11-slim AS runtime
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    TOKENIZERS_PARALLELISM=false \
    BERTH_MODELS_DIR=/models BERTH_HOST=0.0.0.0 BERTH_PORT=8000
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/berth berth
# Dependency layer: only the service's own dependencies (onnxruntime, tokenizers, numpy,
# FastAPI, pydantic, prometheus-client...), before any source, so a code change reuses it.
COPY --from=requirements /req/service.txt /tmp/req/service.txt
RUN pip install -r /tmp/req/service.txt && rm -rf /tmp/req
# Bundles before the source: a code change does not re-copy hundreds of MB of ONNX files.
COPY --from=build /models /models
WORKDIR /app
COPY pyproject.toml README.md ./
COPY service ./service
COPY model ./model
COPY export ./export
COPY loadtest ./loadtest
# --no-deps: the dependencies are the layer above; torch/transformers are never pulled in.
RUN pip install --no-deps . && rm -rf build ./*.egg-info
USER berth
EXPOSE 8000
# /readyz is 200 only once every bundle is loaded and warmed, and 503 from the first moment of
# shutdown. No curl in slim images: a Python one-liner (urlopen raises on any non-2xx status).
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('BERTH_PORT', '8000') + '/readyz', timeout=4)"]
CMD ["berth", "serve", "--host", "0.0.0.0"]
