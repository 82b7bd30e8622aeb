"""Serve a checkpoint over HTTP: ``python scripts/serve.py ckpt_path=<ckpt> port=8000``.

A slot-filling checkpoint answers Rasa NLU's ``POST /model/parse`` (``{"text": ...}`` in, the
JSON ``scripts/tag.py`` prints out, from the same :class:`seqmodels.commands.tag.Tagger`); a char-LM
checkpoint answers ``POST /generate`` (``prompt``, ``length``, ``temperature``, ``top_k``,
``top_p``, ``seed``; drawn by :class:`seqmodels.nets.sampler.CharSampler`, as ``generate.py``
draws). ``GET /``, ``/health`` and ``/status`` describe the model. A malformed request gets a
4xx answer ``{"status": "failure", "code", "message"}`` naming what is wrong, never a traceback.

FastAPI and uvicorn (``pip install '.[serve]'``): a few hundred kilobytes of pure Python beside
torch, one process holding one copy of the model, and full control of every answer's shape.
LitServe would add request batching, but its worker processes each load the model, and its
routes and error answers are its own. The network comes from :func:`seqmodels.nets.load_net`:
serving never imports Lightning. Requests run in a thread pool, one model call at a time.
"""

import json
import logging
import sys
import threading
from typing import Any

import hydra
import torch
from omegaconf import DictConfig

from seqmodels.commands.tag import Tagger
from seqmodels.core.checkpoints import read_checkpoint, task_name
from seqmodels.core.errors import ConfigError, UserError, errors_reported
from seqmodels.data.text_codec import TextCodec
from seqmodels.nets import load_net
from seqmodels.nets.sampler import CharSampler, check_options, check_seed, is_int
from seqmodels.plumbing.cli import (
    CONFIG_DIR,
    check_ckpt_path,
    check_device,
    check_num_threads,
    one_line_errors,
)
from seqmodels.plumbing.quick_start import quick_main

log = logging.getLogger(__name__)

INSTALL = "pip install '.[serve]' (or pip install fastapi uvicorn)"
ROUTES = {"slot_filling": "POST /model/parse", "text": "POST /generate"}


class RequestError(Exception):
    """A request this server refuses: its HTTP status and a one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Served:
    """A checkpoint's network ready to answer: a tagger or a char sampler, one call at a time."""

    def __init__(self, ckpt_path: str, device: str = "cpu") -> None:
        self.path = str(ckpt_path)
        net, checkpoint = load_net(ckpt_path)
        self.kind = getattr(type(net), "data_kind", None)
        if self.kind not in ROUTES:
            raise ConfigError(
                f"{ckpt_path} is a task={task_name(checkpoint)} checkpoint; serve.py takes a "
                "slot-filling (task=slot_filling) or char-LM (task=char_lm) checkpoint"
            )
        config = checkpoint.get("config") or {}
        self.info: dict[str, Any] = {
            "status": "ok",
            "model_file": self.path,
            "task": task_name(checkpoint),
            "data": (config.get("data") or {}).get("name"),
            "model": (config.get("model") or {}).get("name"),
            "routes": [ROUTES[self.kind], "GET /health"],
        }
        net = net.to(device)
        self.lock = threading.Lock()
        if self.kind == "slot_filling":
            vocabs = checkpoint["hyper_parameters"]["vocabs"]
            self.tagger = Tagger(net, vocabs)
            intents = [i for i in vocabs["intents"] if not i.startswith("<")]
            self.info["intents"] = intents if self.tagger.has_intents else []
            self.info["entities"] = sorted({t[2:] for t in vocabs["tags"] if t[1:2] == "-"})
        else:
            self.sampler = CharSampler(net, net.vocab)
            self.codec = TextCodec.of(config.get("data"))
            self.info["vocab_size"] = len(net.vocab)

    def require(self, kind: str, route: str) -> None:
        if self.kind != kind:
            other = "a slot-filling" if kind == "slot_filling" else "a char-LM"
            raise RequestError(
                400,
                f"{route} needs {other} checkpoint; this server holds {self.info['task']} "
                f"({self.path}): use {ROUTES[self.kind]}",
            )

    def parse(self, text: str) -> dict[str, Any]:
        with self.lock:
            return self.tagger(text)

    def generate(self, options: dict[str, Any]) -> dict[str, Any]:
        prompt = self.codec.encode(options["prompt"])
        generator = torch.Generator().manual_seed(options["seed"])
        args = [options[k] for k in ("length", "temperature", "top_k", "top_p")]
        with self.lock:
            chars = "".join(self.sampler.sample(prompt, *args, generator))
        return {**options, "text": self.codec.decode(prompt + chars)}


def parsed_body(raw: bytes, example: str) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 naming what it should be."""
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RequestError(400, f"the body is not JSON ({err}); send {example}") from None
    if not isinstance(body, dict):
        raise RequestError(400, f"the body must be a JSON object such as {example}")
    return body


def text_of(body: dict[str, Any], key: str, limit: int, default: str | None = None) -> str:
    """``body[key]``: a non-blank string of at most ``limit`` characters."""
    value = body.get(key, default)
    if not isinstance(value, str):
        raise RequestError(400, f'"{key}" must be a string, got {json.dumps(value)}')
    if not value.strip() and key == "text":
        raise RequestError(400, '"text" is empty')
    if not value:
        raise RequestError(400, f'"{key}" is empty')
    if len(value) > limit:
        raise RequestError(413, f'"{key}" has {len(value)} characters; the limit is {limit}')
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:  # a lone surrogate ("\ud800" in the JSON): not text
        bad = value[err.start]
        raise RequestError(
            400,
            f'"{key}" holds a lone surrogate {ascii(bad)} at character {err.start}, which is not '
            "Unicode text; send UTF-8 text (a character outside the BMP as a surrogate pair)",
        ) from None
    return value


def generate_options(body: dict[str, Any], limit: int, max_length: int) -> dict[str, Any]:
    """The sampling options of a ``/generate`` request, checked as generate.py checks them."""
    options = {
        "prompt": text_of(body, "prompt", limit, default="\n"),
        "length": body.get("length", 200),
        "temperature": body.get("temperature", 0.8),
        "top_k": body.get("top_k"),
        "top_p": body.get("top_p"),
        "seed": body.get("seed", 0),
    }
    length = options["length"]
    if not is_int(length) or not 1 <= length <= max_length:
        raise RequestError(400, f'"length" must be a whole number in [1, {max_length}]')
    try:
        check_seed(options["seed"])
        check_options(options["temperature"], options["top_k"], options["top_p"], length)
    except ConfigError as err:
        raise RequestError(400, str(err)) from None
    return options


def failure(status: int, message: str) -> Any:
    from fastapi.responses import JSONResponse

    return JSONResponse({"status": "failure", "code": status, "message": message}, status)


def create_app(served: Served, max_text_chars: int = 10_000, max_length: int = 2_000) -> Any:
    """The FastAPI application answering for ``served``."""
    try:
        from fastapi import FastAPI, Request
        from starlette.concurrency import run_in_threadpool
        from starlette.exceptions import HTTPException
    except ImportError:
        raise ConfigError(f"serving needs FastAPI and uvicorn: {INSTALL}") from None

    # (No ``from __future__ import annotations`` in this module: FastAPI reads the handlers'
    # annotations, and ``Request`` is a local name here.)
    app = FastAPI(title="seqmodels", docs_url=None, redoc_url=None, openapi_url=None)
    info = {**served.info, "limits": {"text_chars": max_text_chars, "length": max_length}}

    @app.exception_handler(RequestError)
    async def refused(request: Request, err: RequestError) -> Any:
        return failure(err.status, str(err))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> Any:
        return failure(err.status_code, f"{request.method} {request.url.path}: {err.detail}")

    @app.exception_handler(Exception)
    async def bug(request: Request, err: Exception) -> Any:
        log.exception("%s %s failed", request.method, request.url.path)
        return failure(500, f"internal error ({type(err).__name__}); see the server's log")

    @app.get("/")
    @app.get("/health")
    @app.get("/status")
    async def status() -> dict[str, Any]:
        return info

    @app.post("/model/parse")
    async def parse(request: Request) -> Any:
        served.require("slot_filling", "POST /model/parse")
        body = parsed_body(await request.body(), '{"text": "flights to Boston"}')
        text = text_of(body, "text", max_text_chars)
        return await run_in_threadpool(served.parse, text)

    @app.post("/generate")
    async def generate(request: Request) -> Any:
        served.require("text", "POST /generate")
        body = parsed_body(await request.body(), '{"prompt": "ROMEO:", "length": 200}')
        options = generate_options(body, max_text_chars, max_length)
        try:
            return await run_in_threadpool(served.generate, options)
        except UserError as err:  # a prompt character the model never saw
            raise RequestError(400, str(err)) from None

    return app


def check_serve_options(cfg: DictConfig) -> None:
    """Refuse any option serve.py cannot use before the checkpoint is read, naming it."""
    port = cfg.get("port")
    if not is_int(port) or not 0 <= port <= 65535:
        raise ConfigError(
            f"port must be a whole number in [0, 65535] (0: any free one), got {port!r}"
        )
    for option in ("max_text_chars", "max_length"):
        value = cfg.get(option)
        if not is_int(value) or not 1 <= value <= 2**31:
            raise ConfigError(f"{option} must be a whole number in [1, 2**31], got {value!r}")
    check_device(cfg.get("device"))
    check_num_threads(cfg.get("num_threads"))


def serve(cfg: DictConfig) -> None:
    """Load ``cfg.ckpt_path`` and answer on ``cfg.host:cfg.port`` until stopped (Ctrl-C)."""
    check_ckpt_path(cfg, "a slot-filling or char-LM checkpoint written by scripts/train.py")
    check_serve_options(cfg)
    try:
        import uvicorn
    except ImportError:
        raise ConfigError(f"serving needs FastAPI and uvicorn: {INSTALL}") from None
    if cfg.get("num_threads"):
        torch.set_num_threads(cfg.num_threads)
    read_checkpoint(cfg.ckpt_path)  # a broken file fails here, as one line
    served = Served(cfg.ckpt_path, cfg.device)
    app = create_app(served, cfg.max_text_chars, cfg.max_length)
    print(
        f"serving {served.path} (task={served.info['task']}) at http://{cfg.host}:{cfg.port}: "
        f"{ROUTES[served.kind]}, GET /health",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level=cfg.log_level, access_log=False)


@one_line_errors
@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="serve")
def hydra_main(cfg: DictConfig) -> None:
    with errors_reported(log):
        serve(cfg)


def main() -> None:
    """``python scripts/serve.py ckpt_path=<checkpoint> [port=8000] [host=127.0.0.1]``."""
    quick_main("serve", serve, hydra_main)
