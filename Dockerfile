# One slim, non-root image for the producer, the consumer, the dashboard and the batch tools:
#   python -m streaming.produce | python -m streaming.consume | streamlit run dashboard/app.py
# Build stage: install the project (pinned by constraints.txt) into a virtualenv. Every
# dependency ships manylinux wheels, so no compiler is needed, and nothing but the virtualenv and
# the source tree reaches the runtime stage (no pip, no setuptools, no apt lists).
#
# BASE_IMAGE is any Debian bookworm image with Python >= 3.11 and its venv module: the public
# python:3.11-slim-bookworm by default; scripts/compose-e2e.sh passes a base made locally with
# debootstrap (no registry is reachable there). No "# syntax=" line: the classic builder and
# BuildKit both build this file without fetching a frontend.

ARG BASE_IMAGE=python:3.11-slim-bookworm

# The dependency list alone, so that editing pyproject.toml elsewhere (or README.md) keeps the
# dependency layer below cached: COPY --from is cached by the content of what it copies.
FROM ${BASE_IMAGE} AS requirements
COPY pyproject.toml /tmp/
RUN python3 -c "import tomllib; print('\n'.join(tomllib.load(open('/tmp/pyproject.toml', 'rb'))\
['project']['dependencies']))" > /tmp/requirements.txt

FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first (a layer cached while only code changes), pinned by constraints.txt.
COPY constraints.txt ./
COPY --from=requirements /tmp/requirements.txt ./
RUN pip install --only-binary=:all: -c constraints.txt -r requirements.txt
# Then the project itself (no deps: they are in already); .dockerignore keeps tests, data,
# caches and secrets out of the context.
COPY . .
RUN pip install --no-deps -c constraints.txt . \
    && rm -rf build ./*.egg-info requirements.txt \
    && pip uninstall -y pip setuptools

FROM ${BASE_IMAGE} AS runtime
LABEL org.opencontainers.image.title="fraudlake" \
      org.opencontainers.image.description="Card-fraud stream rules, lake and dashboard"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false
RUN groupadd --system --gid 10001 fraudlake \
    && useradd --system --uid 10001 --gid fraudlake --home-dir /app --shell /usr/sbin/nologin fraudlake
COPY --from=build /opt/venv /opt/venv
# The source tree too: `streamlit run dashboard/app.py` needs the page file by path.
COPY --from=build /src /app
WORKDIR /app
# storage/ (the lake volume) and .cache/ (lake.sync's hash cache) are volume mount points, owned
# by the app user so fresh named volumes are too.
RUN mkdir -p /app/storage /app/.cache && chown fraudlake:fraudlake /app/storage /app/.cache
USER fraudlake:fraudlake
EXPOSE 8501
CMD ["python", "-m", "streaming.consume"]
