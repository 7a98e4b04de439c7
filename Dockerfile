FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN apt-get update && apt-get install -y --no-install-recommends procps && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY orstream orstream
COPY mentoring mentoring
COPY consent consent
COPY recordings recordings
COPY frontend frontend
COPY manage.py ./
# The manifest the production profile serves static files by (built outside that profile here).
RUN pip install --no-cache-dir . && ORSTREAM_STATIC_MANIFEST=true python manage.py collectstatic --noinput
RUN useradd --system orstream && mkdir -p /var/lib/orstream/media && chown -R orstream /var/lib/orstream
USER orstream
EXPOSE 8000
CMD ["python", "-m", "orstream.serve", "-b", "0.0.0.0", "-p", "8000", "orstream.asgi:application"]
