"""Message builders and output parsers: how a sample becomes a chat, and a reply a value.

The names and behaviour are Data-Juicer's (``data_juicer/core/sandbox/helper_funcs.py``), so its
sandbox configs keep working:

* ``build_messages(item, system_key="system", query_key="query")``: an optional system message
  from ``item[system_key]`` (left out when absent or empty), then the user message
  ``item[query_key]``.
* ``build_messages_for_math_qa(item, system_key, query_key, response_key="response")``: the
  user message is ``"Question: {item[query_key]}\\nAnswer: {item[response_key]}"`` (for a grader
  that judges an answer).
* ``parse_output(output, item)``: the reply unchanged.
* ``parse_number(output, item)`` (not in Data-Juicer): the first number in the reply, as a float.

A builder returns one chat (a list of ``{"role", "content"}`` dicts) or several (a list of such
lists); with several, the row's response field holds a list of replies.

Data-Juicer's default ``build_messages_func`` is ``"build_input"``, a name it never registers;
here the default is ``build_messages``. Your own function is named by a dotted path
(``build_messages_func: mypkg.prompts.build``) or a Hydra node with ``_partial_: true``
(``{_target_: mypkg.prompts.build, _partial_: true}``); it is called as
``fn(item, **func_kwargs)``, like the built-in ones.
"""
from __future__ import annotations

import importlib
import re
from typing import Any, Callable

from sandbox.errors import ConfigError, DataError

Messages = list  # list[{"role": str, "content": str}]


def _field(item: dict, key: str, builder: str, kwarg: str):
    if key not in item or item[key] is None:
        raise DataError(
            f"{builder}: the sample has no {key!r} field (fields: {', '.join(map(str, item))}). "
            f"Set infer.func_kwargs.{kwarg}=FIELD to the field that holds it."
        )
    return item[key]


def build_messages(item: dict, **kwargs) -> Messages:
    """System message from ``item[system_key]`` (if non-empty), then ``item[query_key]``."""
    system_key = kwargs.get("system_key", "system")
    query_key = kwargs.get("query_key", "query")
    messages = []
    system_prompt = item.get(system_key) or ""
    if system_prompt:
        messages.append({"role": "system", "content": str(system_prompt)})
    query = _field(item, query_key, "build_messages", "query_key")
    messages.append({"role": "user", "content": str(query)})
    return messages


def build_messages_for_math_qa(item: dict, **kwargs) -> Messages:
    """``"Question: {query}\\nAnswer: {response}"`` as the user message, after the optional
    system message."""
    system_key = kwargs.get("system_key", "system")
    query_key = kwargs.get("query_key", "query")
    response_key = kwargs.get("response_key", "response")
    question = _field(item, query_key, "build_messages_for_math_qa", "query_key")
    answer = _field(item, response_key, "build_messages_for_math_qa",
                    "response_key")
    messages = []
    system_prompt = item.get(system_key) or ""
    if system_prompt:
        messages.append({"role": "system", "content": str(system_prompt)})
    messages.append({"role": "user", "content": f"Question: {question}\nAnswer: {answer}"})
    return messages


def parse_output(output: str, item: dict, **kwargs) -> Any:
    """The reply unchanged."""
    return output


_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")


def parse_number(output: str, item: dict, **kwargs) -> Any:
    """The first number in the reply as a float (``"The answer is 4."`` -> 4.0), for scores and
    numeric answers; the reply itself when it holds no number (an MSE evaluator then counts it
    as a format error)."""
    m = _NUMBER.search(output or "")
    return float(m.group(0)) if m else output


BUILDERS: dict[str, Callable] = {
    "build_messages": build_messages,
    "build_messages_for_math_qa": build_messages_for_math_qa,
}
PARSERS: dict[str, Callable] = {"parse_output": parse_output, "parse_number": parse_number}


def resolve_function(spec: Any, registry: dict[str, Callable], key: str) -> Callable:
    """A registered name, a dotted ``module.function`` path, or an already built callable (a
    Hydra node with ``_partial_: true`` arrives as a ``functools.partial``)."""
    if callable(spec):
        return spec
    if isinstance(spec, str):
        if spec in registry:
            return registry[spec]
        module, _, name = spec.rpartition(".")
        if module:
            try:
                fn = getattr(importlib.import_module(module), name)
            except (ImportError, AttributeError) as e:
                raise ConfigError(f"{key}={spec!r}: cannot import it ({e}). Give one of "
                                  f"{', '.join(registry)} or an importable module.function."
                                  ) from None
            if callable(fn):
                return fn
    raise ConfigError(
        f"{key}={spec!r} is not a known function. Give one of {', '.join(registry)}, a dotted "
        f"path (mypkg.prompts.build), or {{_target_: mypkg.prompts.build, _partial_: true}}."
    )


def as_chats(built: Any, where: str) -> tuple[list[Messages], bool]:
    """``(chats, several)``: a builder's result as a list of chats, and whether it returned
    several (then the row's response is a list)."""
    def is_chat(x) -> bool:
        return isinstance(x, list) and all(isinstance(m, dict) and "role" in m and "content" in m
                                           for m in x)

    if isinstance(built, list) and built and all(is_chat(c) for c in built) \
            and all(isinstance(c, list) for c in built) and not is_chat(built):
        return built, True
    if is_chat(built) and built:
        return [built], False
    raise DataError(
        f"{where}: the message builder returned {str(built)[:200]!r}; a builder must return a "
        f"chat (a non-empty list of {{'role', 'content'}} dicts) or a list of chats."
    )
