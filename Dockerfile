# The Stethoscope server (no torch): API, detectors, alerting and dashboard in one process.
FROM python:3.11-slim
WORKDIR /srv/stethoscope
COPY pyproject.toml README.md ./
COPY app ./app
COPY collector ./collector
COPY detectors ./detectors
RUN pip install --no-cache-dir ".[server]"
VOLUME /data
EXPOSE 8765
CMD ["stethoscope", "serve", "--host", "0.0.0.0", "--port", "8765", "--db", "/data/stethoscope.db"]
