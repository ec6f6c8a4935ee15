# One image for all five services; the command picks the service: travi run detector, ...
FROM python:3.11-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY examples ./examples
RUN pip install --no-cache-dir .

RUN useradd --create-home travi
USER travi
ENV TRAVI_HTTP_HOST=0.0.0.0 TRAVI_LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/api/health/ready').status != 200)"
ENTRYPOINT ["travi"]
