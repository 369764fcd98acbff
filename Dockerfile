# One image for web, worker, relay and beat (docker-compose.yml picks the command).
# Built the way `./lab` sets up a machine: Debian 12, the same apt list
# (requirements-apt.txt), a virtualenv from requirements.txt (tests/test_compose.py).
FROM debian:bookworm-slim
WORKDIR /app
COPY requirements-apt.txt requirements.txt ./
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(sed 's/#.*//' requirements-apt.txt) \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /app/.venv \
 && /app/.venv/bin/pip install --no-cache-dir --disable-pip-version-check -r requirements.txt
COPY . .
ENV PATH=/app/.venv/bin:$PATH \
    DJANGO_SETTINGS_MODULE=labsite.settings.prod \
    LAB_DATA_DIR=/var/lib/container-lab \
    PYTHONUNBUFFERED=1
EXPOSE 8000
