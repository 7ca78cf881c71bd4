"""``serve``: a web page and an HTTP API over the ``predict`` path, for people and moderation services.

    config.py   ServeConfig: every option, with its help text (defaults <- [serve] in --config <- CLI)
    uploads.py  streaming a multipart upload to a private folder under a server-chosen name, the size
                limit, and deciding by the bytes (``stages.probe``) whether it is a video
    jobs.py     the jobs, the bounded queue, and the one worker thread that holds the models and scores
                through ``pipeline.predict`` and ``pipeline.explain`` (no second scoring path)
    app.py      the FastAPI routes (/v1/videos, /v1/model, /healthz, the page at /), token check, CORS
    static/     the page: plain HTML, CSS and JavaScript, no build step
"""
