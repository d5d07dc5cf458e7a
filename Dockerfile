# SegTune on a CUDA machine: docker build -t segtune . && docker run --gpus all -p 8501:8501 \
#   -e SEGTUNE_PASSWORD=change-me -v segtune-data:/data segtune
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    SEGTUNE_HOME=/data \
    PATH=/opt/venv/bin:$PATH

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 segtune \
    && mkdir -p /data && chown segtune:segtune /data

WORKDIR /app
COPY requirements.txt .
# torch from PyPI on Linux is the CUDA build: the GPU is used when the container is given one.
RUN python3 -m venv /opt/venv && pip install -r requirements.txt

COPY --chown=segtune:segtune app ./app
COPY --chown=segtune:segtune pages ./pages
COPY --chown=segtune:segtune core ./core

USER segtune
VOLUME /data
EXPOSE 8501
HEALTHCHECK CMD python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health')"
# Inside a container the dashboard must listen on all interfaces, so it needs SEGTUNE_PASSWORD
# (app/serve.py refuses to start without one, unless given --insecure-no-password).
CMD ["python3", "-m", "app.serve", "--server.address=0.0.0.0", "--server.port=8501", "--server.headless=true"]
