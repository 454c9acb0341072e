"""The hub's HTTP API (FastAPI on uvicorn).

Why FastAPI + uvicorn rather than http.server: uvicorn's HTTP parser (h11) bounds header sizes
and handles keep-alive and TLS as a production server; Python's docs warn that http.server is
not for production. Range, ETag and If-None-Match are handled here by hand (``ranges.py``), so
the behaviour devices rely on is ours, explicit and tested, not a framework default.

Every handler that touches SQLite or the disk is a plain ``def`` (FastAPI runs it in its thread
pool) or hands that work to ``run_in_threadpool``: the event loop never blocks, so ``/healthz``
answers while a writer holds the database. A writer that finds the database locked past the
busy timeout gets 503 with Retry-After.

Endpoints (all GET unless said):
    /healthz                                 {"status": "ok", "latest": n | null}
    /v1/root.json, /v1/root.sig              the publisher-signed delegation to the index key
    /v1/index.json, /v1/index.sig            the short-lived signed model list (edge_client/trust_index.py);
                                             both also carry the signature in header X-Signature
    /v1/manifest, /v1/manifest.sig           latest active version (header X-Model-Version)
    /v1/versions                             active versions
    /v1/versions/{n}/manifest[.sig]          one version; 410 when withdrawn
    /v1/artifacts/{n}/{name}                 ETag, If-None-Match -> 304, Range -> 206, If-Range
    /v1/versions/{n}/model-card              MODEL_CARD.md of a version built from device updates
    POST /v1/updates                         Bearer token (401 unknown, 403 revoked, 429 over its rate);
                                             a checked JSON head update (hub/device_updates.py): 202
                                             once stored, 200 for a resend of the same bytes, 409 for
                                             a replay; a candidate is built once enough devices sent one
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse

from edge_client.manifest import is_safe_name, manifest_etag
from hub.aggregation import maybe_start
from hub.device_updates import MAX_UPDATE_BYTES, UpdateRejected, check_update, read_config
from hub.index import signed_index, signed_root
from hub.ranges import etag_matches, parse_range
from hub.registry import Registry
from hub.update_store import store_update

__all__ = ["create_app", "MAX_BODY_BYTES", "RateLimiter"]

MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_URL_CHARS = 2048
CHUNK = 64 * 1024
BUSY_TIMEOUT_S = 2.0
RETRY_AFTER_S = 2


def _error(status: int, message: str, **headers) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


class RateLimiter:
    """A token bucket per device token: ``per_minute`` uploads a minute, bursts of the same size."""

    def __init__(self) -> None:
        self._buckets: dict[int, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: int, per_minute: int, now: float | None = None) -> float:
        """0 when allowed (and counted), else the seconds to wait."""
        now = time.monotonic() if now is None else now
        with self._lock:
            level, last = self._buckets.get(key, (float(per_minute), now))
            level = min(float(per_minute), level + (now - last) * per_minute / 60.0)
            if level < 1.0:
                self._buckets[key] = (level, now)
                return (1.0 - level) * 60.0 / per_minute
            self._buckets[key] = (level - 1.0, now)
            return 0.0


def create_app(root: Path, *, max_body_bytes: int = MAX_BODY_BYTES,
               throttle_bytes_per_s: int | None = None) -> FastAPI:
    """Build the ASGI app over HUBDIR ``root``.

    Args:
        root: the hub folder. max_body_bytes: request bodies above this get 413.
        throttle_bytes_per_s: slow artifact bodies down (tests kill the hub mid-download).
    """
    root = Path(root)
    app = FastAPI(title="Dopamine model hub", docs_url=None, redoc_url=None, openapi_url=None)
    limiter = RateLimiter()

    class registry:  # noqa: N801 - a context manager: one connection per request (thread)
        def __enter__(self) -> Registry:
            self.reg = Registry(root, migrate=False, busy_timeout=BUSY_TIMEOUT_S)
            return self.reg

        def __exit__(self, *exc) -> None:
            self.reg.close()

    @app.exception_handler(sqlite3.OperationalError)
    async def database_busy(request: Request, exc: sqlite3.OperationalError):
        return _error(503, f"the hub's database is busy ({exc}): retry shortly", **{"Retry-After": str(RETRY_AFTER_S)})

    @app.middleware("http")
    async def limits(request: Request, call_next):
        # Refuse oversized requests before any handler reads them.
        if len(request.url.path) + len(request.url.query) > MAX_URL_CHARS:
            return _error(414, "request URL too long")
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return _error(400, "bad Content-Length")
            if int(length) > max_body_bytes:
                return _error(413, f"request body over {max_body_bytes} bytes")
        return await call_next(request)

    @app.get("/healthz")
    def healthz():
        with registry() as reg:
            return {"status": "ok", "latest": reg.latest_active()}

    def _signed(pair: tuple[bytes, bytes] | None, part: int, what: str) -> Response:
        if pair is None:
            return _error(404, f"this hub has no signed {what} yet (the operator runs `python -m hub delegate`)")
        kind = "application/json" if part == 0 else "text/plain"
        return Response(pair[part], media_type=kind, headers={"X-Signature": pair[1].decode().strip(),
                                                               "Cache-Control": "no-store"})

    @app.get("/v1/root.json")
    def root_json():
        return _signed(signed_root(root), 0, "root")

    @app.get("/v1/root.sig")
    def root_sig():
        return _signed(signed_root(root), 1, "root")

    @app.get("/v1/index.json")
    def index_json():
        return _signed(signed_index(root), 0, "model list")

    @app.get("/v1/index.sig")
    def index_sig():
        return _signed(signed_index(root), 1, "model list")

    @app.get("/v1/versions")
    def versions():
        with registry() as reg:
            return {"versions": [{k: v[k] for k in ("version", "created", "published", "status", "manifest_sha256")}
                                 | {"test_build": bool(v["test_build"])}
                                 for v in reg.versions() if v["status"] == "active"]}

    def _manifest_file(version: int | None, filename: str, request: Request) -> Response:
        with registry() as reg:
            if version is None:
                version = reg.latest_active()
                if version is None:
                    return _error(404, "no model published yet")
            status = reg.status(version)
            if status is None:
                return _error(404, f"no version {version}")
            if status != "active":
                return _error(410, f"version {version} was withdrawn")
            data = (reg.version_dir(version) / filename).read_bytes()
        headers = {"ETag": manifest_etag(data), "X-Model-Version": str(version),
                   "Cache-Control": "no-cache"}
        if etag_matches(request.headers.get("if-none-match"), headers["ETag"]):
            return Response(status_code=304, headers=headers)
        kind = "application/json" if filename.endswith(".json") else "text/plain"
        return Response(data, media_type=kind, headers=headers)

    @app.get("/v1/manifest")
    def latest_manifest(request: Request):
        return _manifest_file(None, "manifest.json", request)

    @app.get("/v1/manifest.sig")
    def latest_signature(request: Request):
        return _manifest_file(None, "manifest.sig", request)

    @app.get("/v1/versions/{version}/manifest")
    def version_manifest(version: int, request: Request):
        return _manifest_file(version, "manifest.json", request)

    @app.get("/v1/versions/{version}/manifest.sig")
    def version_signature(version: int, request: Request):
        return _manifest_file(version, "manifest.sig", request)

    @app.get("/v1/artifacts/{version}/{name}")
    def artifact(version: int, name: str, request: Request):
        if not is_safe_name(name):
            return _error(400, "artifact name must be a plain file name")
        with registry() as reg:
            status = reg.status(version)
            if status is None:
                return _error(404, f"no version {version}")
            if status != "active":
                return _error(410, f"version {version} was withdrawn")
            folder = reg.version_dir(version)
            manifest = json.loads((folder / "manifest.json").read_bytes())
        entry = next((a for a in manifest["artifacts"] if a["name"] == name), None)
        if entry is None:  # only files the signed manifest names are ever served
            return _error(404, f"version {version} has no artifact {name!r}")
        path = folder / name
        size = path.stat().st_size
        etag = '"' + entry["sha256"] + '"'
        headers = {"ETag": etag, "Accept-Ranges": "bytes", "Cache-Control": "public, max-age=31536000, immutable"}
        if etag_matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers)
        wanted = parse_range(request.headers.get("range"), size)
        if_range = request.headers.get("if-range")
        if wanted is not None and if_range and not etag_matches(if_range, etag):
            wanted = None  # the client's partial copy is of another file: send it all
        if wanted == "unsatisfiable":
            return _error(416, "range not satisfiable", **{"Content-Range": f"bytes */{size}"})
        first, last = wanted if wanted else (0, size - 1)
        headers["Content-Length"] = str(last - first + 1)
        status_code = 200
        if wanted:
            status_code = 206
            headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        return StreamingResponse(_read_span(path, first, last, throttle_bytes_per_s),
                                 status_code=status_code, headers=headers,
                                 media_type="application/octet-stream")

    @app.get("/v1/versions/{version}/model-card")
    def model_card(version: int):
        with registry() as reg:
            status = reg.status(version)
            path = reg.version_dir(version) / "MODEL_CARD.md"
        if status is None or not path.is_file():
            return _error(404, f"no model card for version {version}")
        return Response(path.read_bytes(), media_type="text/markdown; charset=utf-8")

    def _authenticate(token: str) -> tuple[str, int | None]:
        with registry() as reg:
            return reg.token_state(token) if token else ("unknown", None)

    def _store(token_id: int, body: bytes) -> JSONResponse:
        config = read_config(root)
        with registry() as reg:
            payload = check_update(body, current_version=reg.latest_active(), config=config)
            status, answer = store_update(reg, token_id, body, payload)
            if status == 202:
                maybe_start(root, reg, answer["base_version"], config["min_updates"])
        return JSONResponse(answer, status_code=status)

    @app.post("/v1/updates")
    async def upload(request: Request):
        # Async only to stream the body under its cap; the database and checks run in the thread pool.
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        state, token_id = await run_in_threadpool(_authenticate, token)
        if state == "revoked":
            return _error(403, "this device token was revoked")
        if state != "ok":
            return _error(401, "a valid device token is required", **{"WWW-Authenticate": "Bearer"})
        per_minute = (await run_in_threadpool(read_config, root))["rate_limit_per_minute"]
        wait = limiter.allow(token_id, per_minute)
        if wait:
            return _error(429, f"over {per_minute} uploads a minute for this device token",
                          **{"Retry-After": str(max(1, int(wait + 0.999)))})
        cap = min(max_body_bytes, MAX_UPDATE_BYTES)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > cap:  # chunked bodies have no Content-Length
                return _error(413, f"update over {cap} bytes")
        try:
            return await run_in_threadpool(_store, token_id, bytes(body))
        except UpdateRejected as exc:
            return _error(exc.status, str(exc))

    return app


def _read_span(path: Path, first: int, last: int, throttle: int | None):
    """Yield bytes first..last of a file, optionally throttled."""
    chunk = CHUNK if not throttle else max(1024, min(CHUNK, throttle // 10))
    remaining = last - first + 1
    with open(path, "rb") as fh:
        fh.seek(first)
        while remaining > 0:
            block = fh.read(min(chunk, remaining))
            if not block:
                return
            remaining -= len(block)
            yield block
            if throttle:
                time.sleep(len(block) / throttle)
