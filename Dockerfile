# One image for web, worker and beat (docker-compose.yml picks the command).
FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends runc busybox-static tini util-linux \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
ENV DJANGO_SETTINGS_MODULE=labsite.settings.prod \
    LAB_DATA_DIR=/var/lib/container-lab \
    PYTHONUNBUFFERED=1
EXPOSE 8000
