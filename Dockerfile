# One image for the worker and the API; docker-compose.yml picks the command.
FROM python:3.11-slim

WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DATA_DIR=/data

# bubblewrap isolates generated code. It needs user namespaces, which Docker's default seccomp
# profile refuses: see the README's "The sandbox" for the profile to run this image with.
RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap \
    && rm -rf /var/lib/apt/lists/*

COPY pyproject.toml README.md ./
COPY workflows ./workflows
COPY activities ./activities
COPY api ./api
COPY orchestrator_client ./orchestrator_client
COPY worker.py settings.py json_logging.py devserver.py payload_codec.py telemetry.py worker_telemetry.py temporal_connection.py ./
RUN pip install --no-cache-dir . \
    && useradd --create-home --uid 10001 orchestrator \
    && mkdir -p /data && chown orchestrator /data

# Generated code runs in the worker's bubblewrap sandbox, mapped to this non-root user.
USER orchestrator
EXPOSE 8000
CMD ["uvicorn", "api.main:app", "--host", "0.0.0.0", "--port", "8000"]
