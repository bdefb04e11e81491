"""``windowner serve``: the model over HTTP (FastAPI + uvicorn, the optional ``serve`` extra).

Routes: ``POST /ner`` ({"text": …} → one document record of API.md, {"texts": […]} → a list),
``POST /render`` (the same input → the HTML of ``windowner.html``, used by the page),
``GET /`` (the page; static files under ``/static``, no external CDN), ``GET /health``,
``GET /model`` (the model card) and ``GET /openapi.json``. ``?explain=1`` on ``/ner`` and
``/render`` adds each token's window and tag scores.

The model is loaded once; tagging runs in the threadpool so the event loop keeps serving while
numpy works. Request bodies above ``max_body_bytes`` (default 1 MiB) get 413; explain requests
above ``MAX_EXPLAIN_CHARS`` characters too (their records are ~30× the text); malformed JSON,
fields or encodings get 422 with a one-line ``detail``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any, get_type_hints

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from windowner import __version__
from windowner.api import Entity, Token
from windowner.errors import UsageError

MAX_BODY_BYTES = 1 << 20
MAX_EXPLAIN_CHARS = 20_000
STATIC_DIR = Path(__file__).with_name("static")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


# ----------------------------------------------------------------------------- schemas


class NerRequest(BaseModel):
    """Exactly one of ``text`` (one document) or ``texts`` (a batch)."""

    model_config = ConfigDict(extra="forbid")
    text: str | None = Field(None, description="One text to tag.")
    texts: list[str] | None = Field(None, description="Texts to tag as one batch.")

    @model_validator(mode="after")
    def _one_of(self) -> NerRequest:
        if (self.text is None) == (self.texts is None):
            raise ValueError('give exactly one of "text" or "texts"')
        for i, text in enumerate([self.text] if self.texts is None else self.texts):
            _check_unicode(text, i)
        return self

    def all_texts(self) -> list[str]:
        return [self.text] if self.texts is None else self.texts


def _check_unicode(text: str, index: int) -> None:
    """JSON may smuggle in lone surrogates (``"\\ud800"``); they cannot be encoded back."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"text {index} holds a lone surrogate at offset {exc.start}") from None


def record_model(name: str, fields_of: type, **extra: Any) -> type[BaseModel]:
    """The response schema of one of the API's NamedTuple records (windowner.api), derived from
    its fields so the OpenAPI schema cannot drift from what ``Doc.to_dict()`` writes."""
    fields = {key: (kind, ...) for key, kind in get_type_hints(fields_of).items()}
    return create_model(name, **fields, **extra)


TokenRecord = record_model(
    "TokenRecord",
    Token,
    window=(list[str] | None, Field(None, description="Only with ?explain=1.")),
    scores=(dict[str, float] | None, Field(None, description="Only with ?explain=1.")),
)
EntityRecord = record_model("EntityRecord", Entity)


class SentenceRecord(BaseModel):
    start_char: int
    end_char: int
    tokens: list[TokenRecord]


class DocRecord(BaseModel):
    """A tagged text; ``text[start_char:end_char]`` is each token's and entity's text."""

    text: str
    sentences: list[SentenceRecord]
    entities: list[EntityRecord]


# ----------------------------------------------------------------------------- body limit


class BodyLimit:
    """ASGI middleware: 413 for a body over ``limit`` bytes, by Content-Length or while
    streaming a chunked body (before the body is ever held whole)."""

    def __init__(self, app: Callable, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await too_large(self.limit)(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise HTTPException(413, too_large_detail(self.limit))
            return message

        await self.app(scope, limited, send)


def too_large_detail(limit: int) -> str:
    return f"request body over the limit of {limit} bytes (windowner serve --max-body-bytes)"


def too_large(limit: int) -> JSONResponse:
    return JSONResponse({"detail": too_large_detail(limit)}, status_code=413)


def validation_detail(exc: RequestValidationError) -> str:
    """Pydantic's errors as one line: ``where: what`` joined by ``; ``."""
    parts = []
    for error in exc.errors():
        loc = [p for p in error.get("loc", ()) if p != "body"]
        kind, message = error.get("type"), error.get("msg", "invalid")
        if kind == "json_invalid":
            reason = (error.get("ctx") or {}).get("error", "")
            parts.append(f"invalid JSON at character {loc[0] if loc else 0}: {reason}".rstrip(": "))
            continue
        where = ".".join(str(p) for p in loc) or "body"
        if kind == "missing" and where == "body":
            message = 'empty body: send {"text": "..."} or {"texts": ["...", ...]}'
        elif kind == "value_error":
            message = str((error.get("ctx") or {}).get("error", message))
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


# ----------------------------------------------------------------------------- the app


def create_app(ner: Any, max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """The HTTP app around a loaded model (``windowner.api.NER``: ``pipe``, ``explain``,
    ``card``). No Swagger/ReDoc pages (they pull scripts from a CDN); the schema is at
    ``/openapi.json``."""
    app = FastAPI(
        title="windowner",
        version=__version__,
        description="Window-based named-entity recognition. Records: see DocRecord.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.ner = ner
    app.state.card = ner.card()
    app.state.started = time.time()
    app.add_middleware(BodyLimit, limit=max_body_bytes)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _add_error_handlers(app)
    _add_routes(app)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{k: e.get(k) for k in ("loc", "msg", "type")} for e in exc.errors()]
        return JSONResponse({"detail": validation_detail(exc), "errors": errors}, 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        cause = exc.__cause__
        if exc.status_code == 400 and isinstance(cause, UnicodeDecodeError):
            # FastAPI's answer to a body that is not UTF-8 is a bare 400 "error parsing the body"
            byte = cause.object[cause.start : cause.start + 1].hex()
            detail = f"body is not UTF-8 JSON (byte 0x{byte} at offset {cause.start})"
            return JSONResponse({"detail": detail}, 422)
        return JSONResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)


def tag_records(ner: Any, texts: list[str], explain: bool) -> list[dict[str, Any]]:
    """Document records for ``texts`` (one batch through ``ner.pipe``)."""
    if explain:
        too_long = [i for i, t in enumerate(texts) if len(t) > MAX_EXPLAIN_CHARS]
        if too_long:
            raise HTTPException(
                413, f"text {too_long[0]}: explain takes at most {MAX_EXPLAIN_CHARS} characters"
            )
        return [ner.explain(t) for t in texts]
    return [doc.to_dict() for doc in ner.pipe(texts, batch_size=max(1, len(texts)))]


def json_payload(ner: Any, body: NerRequest, explain: bool) -> bytes:
    """``/ner``'s response body; tagging and encoding both run in a worker thread (a 1 MB
    text makes a 20 MB record: encoding it on the event loop would stall every request)."""
    records = tag_records(ner, body.all_texts(), explain)
    data = records[0] if body.texts is None else records
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def html_payload(ner: Any, body: NerRequest, explain: bool, labels: list[str]) -> str:
    """``/render``'s response body (in a worker thread too)."""
    from windowner.html import render_fragment

    return render_fragment(tag_records(ner, body.all_texts(), explain), labels)


def _add_routes(app: FastAPI) -> None:
    ner, card = app.state.ner, app.state.card

    @app.post("/ner", response_model=DocRecord | list[DocRecord], tags=["ner"])
    async def tag(body: NerRequest, explain: bool = False) -> Response:
        """Tag {"text": …} → one record, or {"texts": […]} → a list of records."""
        payload = await run_in_threadpool(json_payload, ner, body, explain)
        return Response(payload, media_type="application/json")

    @app.post("/render", response_class=HTMLResponse, tags=["ner"])
    async def render(body: NerRequest, explain: bool = False) -> HTMLResponse:
        """The same input → the highlighted HTML fragment the page shows."""
        html = await run_in_threadpool(html_payload, ner, body, explain, card["labels"])
        return HTMLResponse(html)

    @app.get("/health", tags=["service"])
    async def health() -> dict[str, Any]:
        uptime = round(time.time() - app.state.started, 3)
        return {"status": "ok", "model": card["path"], "uptime_s": uptime, "pid": os.getpid()}

    @app.get("/model", tags=["service"])
    async def model_card() -> dict[str, Any]:
        """Model card: path, labels, tags, objective, spec, training config, scores."""
        return card

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")


# ----------------------------------------------------------------------------- running


def limit_blas_threads() -> None:
    """One BLAS thread per tagging thread: requests are small (tens of windows), and a
    multithreaded BLAS on a busy machine turned a 0.5 ms forward pass into 30 ms."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")


def listen(host: str, port: int) -> socket.socket:
    """The listening socket (bound here, before forking, so every worker shares it);
    UsageError when ``host:port`` is taken or not ours."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run(
    model: Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    max_body_bytes: int = MAX_BODY_BYTES,
    access_log: bool = False,
) -> None:
    """Load ``model`` (run directory or model file) once and serve it until SIGINT (exit 130)
    or SIGTERM (143). ``workers`` > 1 forks that many processes after loading: they share the
    socket and, copy-on-write, the model, and each starts in milliseconds."""
    import uvicorn

    from windowner.api import load

    sock = listen(host, port)
    limit_blas_threads()
    started = time.perf_counter()
    app = create_app(load(model), max_body_bytes)
    print(
        f"windowner serve: {model} loaded in {time.perf_counter() - started:.2f} s; "
        f"http://{host}:{port}/ ({workers} worker{'s' if workers > 1 else ''})",
        file=sys.stderr,
        flush=True,
    )
    config = uvicorn.Config(app, host=host, port=port, access_log=access_log, log_level="warning")
    if workers == 1:
        uvicorn.Server(config).run(sockets=[sock])
    else:
        Prefork(config, sock, workers).run()


class Prefork:
    """Minimal pre-fork supervisor: forks ``workers`` uvicorn servers on one socket, replaces
    a worker that dies, and on SIGINT/SIGTERM stops them all and ends with that signal."""

    def __init__(self, config: Any, sock: socket.socket, workers: int) -> None:
        self.config, self.sock, self.workers = config, sock, workers
        self.children: set[int] = set()
        self.stopping: int | None = None

    def spawn(self) -> None:
        pid = os.fork()
        if pid:
            self.children.add(pid)
            return
        code = 0
        try:  # the child: default signal handling, one uvicorn server, never returns
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            import uvicorn

            uvicorn.Server(self.config).run(sockets=[self.sock])
        except KeyboardInterrupt:
            pass
        except BaseException as exc:  # noqa: BLE001 - the worker must end here, not in run()
            print(f"windowner serve: worker {os.getpid()} failed: {exc}", file=sys.stderr)
            code = 1
        finally:
            os._exit(code)

    def stop(self, signum: int, frame: Any) -> None:
        self.stopping = signum
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def run(self) -> None:
        for _ in range(self.workers):
            self.spawn()
        signal.signal(signal.SIGINT, self.stop)
        signal.signal(signal.SIGTERM, self.stop)
        while self.children:
            pid, status = os.wait()
            self.children.discard(pid)
            if self.stopping is None:
                print(f"windowner serve: worker {pid} died ({status}); restarting", file=sys.stderr)
                time.sleep(0.5)  # a worker that dies at once must not spin the supervisor
                self.spawn()
        if self.stopping == signal.SIGINT:
            raise KeyboardInterrupt
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGTERM)
