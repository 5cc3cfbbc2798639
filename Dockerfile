# mecodes: the whole stack in one container (see Procfile). Built and deployed by Fly (fly.toml).
# The install steps are the scripts the local stack uses (scripts/setup -> scripts/install-system).
FROM python:3.11-slim-bookworm

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MECODES_RUN_AS=mecodes

WORKDIR /opt/mecodes

# Dependencies first, so code changes do not reinstall them.
COPY scripts/setup scripts/install-system scripts/
COPY requirements.txt package.json package-lock.json ./
RUN scripts/setup requirements.txt \
    && useradd --create-home --uid 1000 --shell /bin/bash mecodes \
    && rm -rf /var/lib/apt/lists/* /root/.npm /root/.cache

COPY bin/ bin/
COPY domain/ domain/
COPY sidecar/ sidecar/
COPY worker/ worker/
COPY gate/ gate/
COPY web/ web/
COPY Procfile Caddyfile ./

EXPOSE 8080
# Starts as root only to hand the volume to the mecodes user, then drops to it (bin/start).
CMD ["bin/start"]
