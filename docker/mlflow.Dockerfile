# syntax=docker/dockerfile:1
# MLflow tracking server with a PostgreSQL backend and basic authentication.
FROM python:3.11.11-slim-bookworm

# the versions of the lock of tested versions (scripts/lock.sh)
COPY constraints.txt /tmp/constraints.txt
RUN pip install --no-cache-dir -c /tmp/constraints.txt "mlflow[auth]" "psycopg[binary]" \
    && useradd --create-home --uid 1000 mlflow \
    && mkdir -p /mlartifacts && chown mlflow /mlartifacts
COPY --chown=mlflow docker/mlflow-entrypoint.sh docker/mlflow-writer.py /usr/local/bin/
USER mlflow
WORKDIR /home/mlflow
EXPOSE 5000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=4)"]
ENTRYPOINT ["/usr/local/bin/mlflow-entrypoint.sh"]
