# The production configuration in one image: the same commands CI runs from a fresh clone
# (.ci/smoke.py): `make install` builds .venv from requirements.txt alone, `make run` migrates
# and starts the web processes, a Celery worker and Celery beat. No container engine runs on
# the machine CI uses, so the image itself is not built there; see docs/deploy.md.
FROM python:3.11-slim

RUN apt-get update && apt-get install -y --no-install-recommends make git \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt Makefile ./
RUN make install
COPY . .

ENV HOST=0.0.0.0 PORT=8000 DATA_DIR=/data
VOLUME /data
EXPOSE 8000
CMD ["make", "run"]
