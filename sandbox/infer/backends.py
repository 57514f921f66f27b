"""Inference backends: transformers (``hf``), vLLM's offline engine (``vllm``) and any
OpenAI-compatible HTTP server (``api``).

A backend turns a batch of chats into one ``Reply`` per chat: the text, the number of generated
tokens (when known) or, for a request that failed, an ``error`` record ``{status, reason,
attempts}``. It never returns an empty string in place of an error (Data-Juicer's API model
returns ``""`` for every exception, so its retries never fire and failures look like answers).

``load()`` does the expensive or fallible set-up (loading weights, checking that vLLM is
installed, checking the server's address) so that a step fails before any row is processed.
"""
from __future__ import annotations

import email.utils
import http.client
import importlib.util
import json
import math
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.errors import ConfigError
from sandbox.infer.model import default_model_dir, quiet_transformers

Messages = list


@dataclass
class Reply:
    text: str | None
    tokens: int | None = None  # generated tokens, when the backend knows
    error: dict | None = None  # {"status": int | str, "reason": str, "attempts": int}

    @property
    def ok(self) -> bool:
        return self.error is None


def plain_prompt(chat: Messages) -> str:
    """A chat as plain text, for models without a chat template: one paragraph per message."""
    return "\n\n".join(str(m["content"]) for m in chat)


# ============================================================================ transformers
class HFBackend:
    """Batched ``model.generate`` with left padding; the tokenizer's chat template when it has
    one, else the messages' contents joined by blank lines.

    ``temperature == 0`` is greedy decoding; ``> 0`` samples (``top_p`` nucleus), seeded per
    batch with ``seed + first row of the batch`` so a run is reproducible. ``model``: a local
    directory or a Hugging Face hub id (the hub is only reached when the id is not cached and
    ``HF_HUB_OFFLINE`` is not set); None: the embedded default model
    (``sandbox.infer.model``)."""

    name = "hf"

    def __init__(self, model: str | None = None, max_new_tokens: int = 256,
                 temperature: float = 0.0, top_p: float = 1.0, dtype: str = "float32",
                 device: str = "auto", sampling_params: dict | None = None,
                 model_params: dict | None = None, cache_dir: str | Path | None = None):
        if dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError(f"infer.dtype={dtype!r}: use float32, bfloat16 or float16.")
        self.model_name = model
        self.device = device
        self.max_new_tokens = int(max_new_tokens)
        self.temperature, self.top_p = float(temperature), float(top_p)
        self.dtype = dtype
        self.sampling_params = dict(sampling_params or {})
        self.model_params = dict(model_params or {})
        self.cache_dir = cache_dir
        self.model = self.tokenizer = None
        self.model_path: str | None = None

    def describe(self) -> dict:
        return {"backend": self.name, "model": self.model_name or "default",
                "max_new_tokens": self.max_new_tokens, "temperature": self.temperature,
                "top_p": self.top_p, "dtype": self.dtype, "sampling_params": self.sampling_params}

    def load(self) -> None:
        if self.model is not None:
            return
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if self.model_name is None:
            path = str(default_model_dir(self.cache_dir))
        else:
            path = str(Path(self.model_name).expanduser()) \
                if Path(self.model_name).expanduser().exists() else self.model_name
        try:
            with quiet_transformers():
                self.tokenizer = AutoTokenizer.from_pretrained(path)
                self.model = AutoModelForCausalLM.from_pretrained(
                    path, dtype=getattr(torch, self.dtype), **self.model_params)
        except (OSError, ValueError) as e:
            raise ConfigError(
                f"infer.model={self.model_name!r}: cannot load it with transformers "
                f"({str(e).splitlines()[0][:300]}). Give a local model directory or a hub id that "
                f"is cached (or reachable), or leave infer.model=null for the default model."
            ) from None
        device = self.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            self.model.to(device)
        except (RuntimeError, AssertionError, ValueError) as e:
            raise ConfigError(f"infer.device={self.device!r}: {str(e).splitlines()[0]}. Use cpu, "
                              f"cuda, cuda:N or auto.") from None
        self.model.eval()
        self.model_path = path
        tok = self.tokenizer
        tok.padding_side = "left"  # generation continues from the right end of every row
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token

    def prompts(self, chats: list[Messages]) -> list[str]:
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            return [tok.apply_chat_template(c, add_generation_prompt=True, tokenize=False)
                    for c in chats]
        return [plain_prompt(c) for c in chats]

    def generate(self, chats: list[Messages], seed: int | None = None) -> list[Reply]:
        import torch

        self.load()
        tok, model = self.tokenizer, self.model
        texts = self.prompts(chats)
        # the chat template already holds the special tokens the model expects
        enc = tok(texts, return_tensors="pt", padding=True,
                  add_special_tokens=not getattr(tok, "chat_template", None))
        kwargs = dict(max_new_tokens=self.max_new_tokens, pad_token_id=tok.pad_token_id)
        if self.temperature > 0:
            kwargs.update(do_sample=True, temperature=self.temperature, top_p=self.top_p)
            if seed is not None:
                torch.manual_seed(seed)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        kwargs.update(self.sampling_params)
        enc = enc.to(model.device)
        with torch.inference_mode():
            out = model.generate(**enc, **kwargs)
        new = out[:, enc["input_ids"].shape[1]:]
        eos = model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, list) else [eos]) - {None}
        replies = []
        for row in new.tolist():
            n = len(row)
            for i, t in enumerate(row):  # generated tokens: up to and including the first EOS
                if t in eos:
                    n = i + 1
                    break
            replies.append(Reply(tok.decode(row[:n], skip_special_tokens=True).strip(), n))
        return replies

    def close(self) -> None:
        self.model = self.tokenizer = None


# ============================================================================ vLLM
VLLM_HELP = (
    "infer=vllm needs the `vllm` package and an NVIDIA GPU (Linux, CUDA, compute capability 7.0 "
    "or newer, enough GPU memory for the model): `pip install vllm` in an environment whose "
    "torch build matches vLLM's (vLLM pins its own torch). On a CPU-only machine use infer=hf "
    "(transformers) or infer=api against a server."
)


class VLLMBackend:
    """vLLM's offline engine: ``LLM.chat(chats, SamplingParams)``, ``max_tokens`` from
    ``max_new_tokens`` (Data-Juicer passes ``max_new_tokens``, which vLLM does not know).
    ``tensor_parallel_size`` defaults to the number of visible GPUs."""

    name = "vllm"

    def __init__(self, model: str | None = None, max_new_tokens: int = 256,
                 temperature: float = 0.0, top_p: float = 1.0, seed: int = 42,
                 tensor_parallel_size: int | None = None, sampling_params: dict | None = None,
                 model_params: dict | None = None, cache_dir: str | Path | None = None):
        self.model_name = model
        self.max_new_tokens = int(max_new_tokens)
        self.temperature, self.top_p, self.seed = float(temperature), float(top_p), seed
        self.tensor_parallel_size = tensor_parallel_size
        self.sampling_params = dict(sampling_params or {})
        self.model_params = dict(model_params or {})
        self.cache_dir = cache_dir
        self.llm = self.params = None

    def describe(self) -> dict:
        return {"backend": self.name, "model": self.model_name or "default",
                "max_new_tokens": self.max_new_tokens, "temperature": self.temperature,
                "top_p": self.top_p, "seed": self.seed, "sampling_params": self.sampling_params}

    @staticmethod
    def check_installed() -> None:
        if importlib.util.find_spec("vllm") is None:
            raise ConfigError(VLLM_HELP)

    def load(self) -> None:
        if self.llm is not None:
            return
        self.check_installed()
        import torch
        import vllm

        gpus = torch.cuda.device_count()
        if gpus == 0:
            raise ConfigError(f"vllm is installed but no CUDA GPU is visible. {VLLM_HELP}")
        model = self.model_name
        if model is None:
            model = str(default_model_dir(self.cache_dir))
        self.llm = vllm.LLM(model=model, seed=self.seed,
                            tensor_parallel_size=self.tensor_parallel_size or gpus,
                            **self.model_params)
        self.params = vllm.SamplingParams(max_tokens=self.max_new_tokens,
                                          temperature=self.temperature, top_p=self.top_p,
                                          seed=self.seed, **self.sampling_params)

    def generate(self, chats: list[Messages], seed: int | None = None) -> list[Reply]:
        self.load()
        outs = self.llm.chat(chats, self.params, use_tqdm=False)
        return [Reply(o.outputs[0].text, len(o.outputs[0].token_ids)) for o in outs]

    def close(self) -> None:
        self.llm = None


# ============================================================================ OpenAI-compatible API
RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class RequestFailed(Exception):
    def __init__(self, status: int | str, reason: str, retry_after: float | None = None,
                 retryable: bool = True):
        super().__init__(f"{status}: {reason}")
        self.status, self.reason = status, reason
        self.retry_after, self.retryable = retry_after, retryable


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with jitter: uniform in [d/2, d], d = min(cap, base * 2**attempt)."""
    d = min(cap, base * (2 ** attempt))
    return d / 2 + rng.random() * d / 2


def query_path(obj: Any, path: str) -> Any:
    """``choices.0.message.content``-style lookup; KeyError/IndexError/TypeError if absent."""
    for part in path.split("."):
        obj = obj[int(part)] if isinstance(obj, list) else obj[part]
    return obj


class APIBackend:
    """Chat completions from an OpenAI-compatible server over HTTP (the standard library's
    ``urllib``; no client package).

    * ``base_url``: e.g. ``http://127.0.0.1:8000/v1``; None: ``$OPENAI_BASE_URL``.
      ``endpoint`` (default ``/chat/completions``) is appended.
    * ``model``: the model name the server knows.
    * ``api_key_env``: the *name* of the environment variable holding the key (default
      ``OPENAI_API_KEY``); sent as ``Authorization: Bearer``, never logged or written. No
      variable: no header (local servers).
    * ``concurrency``: requests in flight at once; ``timeout_s``: per request.
    * ``max_retries``: retries after the first try, on connection errors, timeouts and HTTP
      408/409/425/429/5xx; the wait is exponential backoff with jitter
      (``backoff_base_s * 2**attempt``, capped at ``backoff_max_s``, uniform in [d/2, d]) or
      the server's ``Retry-After`` when it sends one (capped at ``retry_after_max_s``). Other
      4xx answers (a bad request, a wrong key) fail at once.
    * ``response_path``: where the text is in the answer (Data-Juicer's default).
    * ``sampling_params``: more fields for the request body (``stop``, ``presence_penalty``...).
    """

    name = "api"

    def __init__(self, base_url: str | None = None, model: str | None = None,
                 endpoint: str = "/chat/completions", api_key_env: str = "OPENAI_API_KEY",
                 max_new_tokens: int = 256, temperature: float = 0.0, top_p: float = 1.0,
                 seed: int | None = None, concurrency: int = 4, timeout_s: float = 60.0,
                 max_retries: int = 5, backoff_base_s: float = 0.5, backoff_max_s: float = 30.0,
                 retry_after_max_s: float = 120.0,
                 response_path: str = "choices.0.message.content",
                 sampling_params: dict | None = None, headers: dict | None = None):
        self.base_url = base_url
        self.model = model
        self.endpoint = endpoint
        self.api_key_env = api_key_env
        self.max_new_tokens = int(max_new_tokens)
        self.temperature, self.top_p, self.seed = float(temperature), float(top_p), seed
        if int(concurrency) < 1 or float(timeout_s) <= 0 or int(max_retries) < 0:
            raise ConfigError("infer: concurrency must be >= 1, timeout_s > 0, max_retries >= 0.")
        self.concurrency, self.timeout_s = int(concurrency), float(timeout_s)
        self.max_retries = int(max_retries)
        self.backoff_base_s, self.backoff_max_s = float(backoff_base_s), float(backoff_max_s)
        self.retry_after_max_s = float(retry_after_max_s)
        self.response_path = response_path
        self.sampling_params = dict(sampling_params or {})
        self.headers = dict(headers or {})
        self.url: str | None = None
        self._rng = random.Random(seed if seed is not None else 0)
        self._rng_lock = threading.Lock()
        self.sleep = time.sleep  # replaceable to observe waits

    def describe(self) -> dict:
        # not the address: the same model behind a restarted server gives the same answers
        return {"backend": self.name, "model": self.model,
                "endpoint": self.endpoint, "max_new_tokens": self.max_new_tokens,
                "temperature": self.temperature, "top_p": self.top_p, "seed": self.seed,
                "response_path": self.response_path, "sampling_params": self.sampling_params}

    def load(self) -> None:
        base = self.base_url or os.environ.get("OPENAI_BASE_URL")
        if not base:
            raise ConfigError(
                "infer=api needs the server's address: infer.base_url=http://HOST:PORT/v1 (or "
                "the OPENAI_BASE_URL environment variable)."
            )
        if not base.startswith(("http://", "https://")):
            raise ConfigError(f"infer.base_url={base!r} must start with http:// or https://.")
        if not self.model:
            raise ConfigError("infer=api needs infer.model=NAME, the model name the server "
                              "serves (GET {base_url}/models lists them).")
        self.url = base.rstrip("/") + "/" + self.endpoint.lstrip("/")

    def _headers(self) -> dict:
        h = {"Content-Type": "application/json", "Accept": "application/json", **self.headers}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            h["Authorization"] = f"Bearer {key}"
        return h

    def body(self, chat: Messages) -> dict:
        body = {"model": self.model, "messages": chat, "max_tokens": self.max_new_tokens,
                "temperature": self.temperature, "top_p": self.top_p}
        if self.seed is not None:
            body["seed"] = self.seed
        body.update(self.sampling_params)
        return body

    def _post(self, chat: Messages) -> Reply:
        data = json.dumps(self.body(chat)).encode("utf-8")
        req = urllib.request.Request(self.url, data=data, headers=self._headers(), method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                raw = resp.read()
                status = resp.status
        except urllib.error.HTTPError as e:
            try:
                detail = e.read().decode("utf-8", errors="replace")[:300]
            except Exception:  # the body of an error answer is only a hint
                detail = ""
            retry_after = parse_retry_after(e.headers.get("Retry-After") if e.headers else None)
            raise RequestFailed(e.code, f"HTTP {e.code} {e.reason}: {detail}".strip(),
                                retry_after, e.code in RETRY_STATUS) from None
        except (socket.timeout, TimeoutError):
            raise RequestFailed("timeout", f"no answer within {self.timeout_s:g} s") from None
        except urllib.error.URLError as e:
            reason = e.reason
            raise RequestFailed(type(reason).__name__ if isinstance(reason, BaseException)
                                else "connection", f"cannot reach {self.url}: {reason}") from None
        except (ConnectionError, OSError, http.client.HTTPException) as e:  # reset mid-answer
            raise RequestFailed(type(e).__name__, f"connection to {self.url} failed: {e}") from None
        try:
            answer = json.loads(raw)
        except ValueError:
            raise RequestFailed(status, f"the answer is not JSON: {raw[:200]!r}") from None
        try:
            text = query_path(answer, self.response_path)
        except (KeyError, IndexError, TypeError, ValueError):
            raise RequestFailed(status, f"the answer has no {self.response_path}: "
                                        f"{json.dumps(answer)[:300]}", retryable=False) from None
        if text is None:
            raise RequestFailed(status, f"the answer's {self.response_path} is null",
                                retryable=False)
        usage = answer.get("usage") if isinstance(answer, dict) else None
        tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
        return Reply(str(text), int(tokens) if isinstance(tokens, (int, float)) else None)

    def request(self, chat: Messages) -> Reply:
        """One chat, with retries; a Reply with ``error`` after the last failure."""
        attempt = 0
        while True:
            try:
                return self._post(chat)
            except RequestFailed as e:
                attempt += 1
                if not e.retryable or attempt > self.max_retries:
                    return Reply(None, None, {"status": e.status, "reason": e.reason[:500],
                                              "attempts": attempt})
                if e.retry_after is not None:
                    wait = min(e.retry_after, self.retry_after_max_s)
                else:
                    with self._rng_lock:
                        wait = backoff_delay(attempt - 1, self.backoff_base_s,
                                             self.backoff_max_s, self._rng)
                self.sleep(wait)

    def generate(self, chats: list[Messages], seed: int | None = None) -> list[Reply]:
        if self.url is None:
            self.load()
        if len(chats) == 1 or self.concurrency == 1:
            return [self.request(c) for c in chats]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(chats))) as pool:
            return list(pool.map(self.request, chats))

    def close(self) -> None:
        pass


def rate(n: float, seconds: float) -> float:
    return n / seconds if seconds > 0 else math.nan
