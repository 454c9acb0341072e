"""The hub's HTTP API (FastAPI on uvicorn).

Why FastAPI + uvicorn rather than http.server: uvicorn's HTTP parser (h11) bounds header sizes
and handles keep-alive and TLS as a production server; Python's docs warn that http.server is
not for production. Range, ETag and If-None-Match are handled here by hand (``ranges.py``), so
the behaviour devices rely on is ours, explicit and tested, not a framework default.

Endpoints (all GET unless said):
    /healthz                                 {"status": "ok", "latest": n | null}
    /v1/manifest, /v1/manifest.sig           latest active version (header X-Model-Version)
    /v1/versions                             active versions
    /v1/versions/{n}/manifest[.sig]          one version; 410 when withdrawn
    /v1/artifacts/{n}/{name}                 ETag, If-None-Match -> 304, Range -> 206, If-Range
    /v1/versions/{n}/model-card              MODEL_CARD.md of a version built from device updates
    POST /v1/updates                         Bearer token (401 unknown, 403 revoked); a checked JSON
                                             head update (hub/device_updates.py); 202, and the next
                                             version is built once min_updates have arrived
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import time
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from edge_client.manifest import SAFE_NAME, manifest_etag
from hub.aggregation import start_aggregation
from hub.device_updates import MAX_UPDATE_BYTES, UpdateRejected, check_update, read_config
from hub.ranges import etag_matches, parse_range
from edge_client.fileio import atomic_write
from hub.registry import Registry

__all__ = ["create_app", "MAX_BODY_BYTES"]

MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_URL_CHARS = 2048
CHUNK = 64 * 1024


def _error(status: int, message: str, **headers) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


def create_app(root: Path, *, max_body_bytes: int = MAX_BODY_BYTES,
               throttle_bytes_per_s: int | None = None) -> FastAPI:
    """Build the ASGI app over HUBDIR ``root``.

    Args:
        root: the hub folder. max_body_bytes: request bodies above this get 413.
        throttle_bytes_per_s: slow artifact bodies down (tests kill the hub mid-download).
    """
    root = Path(root)
    app = FastAPI(title="Dopamine model hub", docs_url=None, redoc_url=None, openapi_url=None)

    @contextlib.contextmanager
    def registry():
        reg = Registry(root)
        try:
            yield reg
        finally:
            reg.close()

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

    @app.get("/v1/versions")
    def versions():
        with registry() as reg:
            return {"versions": [v for v in reg.versions() if v["status"] == "active"]}

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
        if not SAFE_NAME.match(name):
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

    @app.post("/v1/updates")
    async def upload(request: Request):
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        with registry() as reg:
            state, token_id = reg.token_state(token) if token else ("unknown", None)
        if state == "revoked":
            return _error(403, "this device token was revoked")
        if state != "ok":
            return _error(401, "a valid device token is required", **{"WWW-Authenticate": "Bearer"})
        cap = min(max_body_bytes, MAX_UPDATE_BYTES)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > cap:  # chunked bodies have no Content-Length
                return _error(413, f"update over {cap} bytes")
        with registry() as reg:
            current = reg.latest_active()
        try:
            payload = check_update(bytes(body), current_version=current)
        except UpdateRejected as exc:
            return _error(exc.status, str(exc))
        digest = hashlib.sha256(body).hexdigest()
        final = root / "updates" / f"{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(4)}.json"
        atomic_write(final, bytes(body))
        with registry() as reg:
            update_id = reg.record_update(token_id, final, len(body), digest, base_version=payload["base_version"],
                                          epsilon=payload["epsilon"], delta=payload["delta"])
            waiting = len(reg.pending_updates(current))
        needed = read_config(root)["min_updates"]
        if waiting >= needed:
            start_aggregation(root)
        return JSONResponse({"id": update_id, "size": len(body), "sha256": digest, "base_version": current,
                             "status": f"stored: {waiting} of {needed} updates for version {current}"
                                       + ("; building the next version" if waiting >= needed else "")},
                            status_code=202)

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
