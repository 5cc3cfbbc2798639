# mecodes: the whole stack in one container (see Procfile). Built and deployed by Fly (fly.toml).
# Two stages. `build` installs with the scripts the local stack uses (scripts/setup -> scripts/install-system):
# opencode from npm, the Python packages into .venv. The final stage gets only what runs: Debian's git, Redis and
# Caddy, the venv, the one opencode binary npm's launcher chose for this CPU (a standalone executable: no node),
# and the code last, so a code-only change rebuilds in seconds. No node, npm, pip, compilers, apt lists or caches.
# BASE names the base image of both stages; scripts/test-image sets it to a local Debian bookworm when Docker Hub
# is out of reach.
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS build
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1
WORKDIR /opt/mecodes
COPY scripts/setup scripts/install-system scripts/
COPY requirements.txt package.json package-lock.json ./
# node_modules/.bin/opencode -> opencode-ai/bin/opencode.exe, which npm's postinstall made a link to the binary
# package this CPU runs (opencode-linux-x64, or -baseline without AVX2); only that file goes on.
RUN scripts/setup requirements.txt \
    && .venv/bin/python -m pip uninstall --yes --quiet pip setuptools \
    && mkdir -p /opt/opencode/node_modules/opencode-ai/bin /opt/opencode/node_modules/.bin \
    && cp node_modules/opencode-ai/bin/opencode.exe /opt/opencode/node_modules/opencode-ai/bin/ \
    && ln -s ../opencode-ai/bin/opencode.exe /opt/opencode/node_modules/.bin/opencode

FROM ${BASE}
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MECODES_RUN_AS=mecodes
WORKDIR /opt/mecodes
COPY scripts/install-system scripts/
# Perl's library (libperl's modules and perl-modules, 47 MB) is left out as Debian's slim images leave out docs: git
# needs it only for git-instaweb and the legacy `add -i`; perl itself (perl-base, with its core modules) stays.
RUN printf 'path-exclude %s\n' '/usr/share/perl/*' '/usr/lib/*/perl/*' >/etc/dpkg/dpkg.cfg.d/mecodes-slim \
    && scripts/install-system --runtime \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/log/apt /var/log/dpkg.log \
    && useradd --create-home --uid 1000 --shell /bin/bash mecodes
COPY --from=build /opt/mecodes/.venv .venv/
COPY --from=build /opt/opencode/node_modules node_modules/

# The code, one folder a line, last.
COPY bin/ bin/
COPY domain/ domain/
COPY sidecar/ sidecar/
COPY worker/ worker/
COPY gate/ gate/
COPY watcher/ watcher/
COPY web/ web/
COPY Procfile Caddyfile ./

EXPOSE 8080
# Starts as root only to hand the volume to the mecodes user, then drops to it (bin/start).
CMD ["bin/start"]
