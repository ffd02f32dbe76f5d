# One image for the worker and the API; docker-compose.yml picks the command.
FROM python:3.11-slim

WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DATA_DIR=/data

COPY pyproject.toml README.md ./
COPY workflows ./workflows
COPY activities ./activities
COPY api ./api
COPY worker.py settings.py json_logging.py devserver.py ./
RUN pip install --no-cache-dir . \
    && useradd --create-home --uid 10001 orchestrator \
    && mkdir -p /data && chown orchestrator /data

# Generated code runs in the worker's sandbox; a non-root user keeps it away from the rest.
USER orchestrator
EXPOSE 8000
CMD ["uvicorn", "api.main:app", "--host", "0.0.0.0", "--port", "8000"]
