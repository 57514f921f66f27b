"""Format conversions between the sandbox's pools (Data-Juicer format) and outside model stacks.

Data-Juicer keeps media as lists of paths (``videos``, ``images``) and marks them in the text
with special tokens (``<__dj__video>``, ``<__dj__image>``, chunks ended by ``<|__dj__eoc|>``).
The stacks the sandbox drives read other formats:

* ``DjToEasyAnimate``: EasyAnimate's dataset JSON, a JSON *array* (its loader calls
  ``json.load``) of ``{"file_path", "text", "type": "video", ...}``; ``videos`` is written with
  the same path (whatever the pool's ``video_key``), so both the upstream loader (``file_path``) and the patched one Data-Juicer
  installs (``videos[0]``) find the clip.
* ``CocoCaptionToDj`` / ``DjToCocoCaption``: InternVL's caption jsonl
  (``{"image", "conversations": [human, gpt]}``) and back.
* ``CocoCaptionMeta``: InternVL's meta JSON naming an annotation jsonl (``root``,
  ``annotation``, ``data_augment``, ``repeat_time``, ``length``).
* ``PromptsToVbenchInfo``: prompts to a VBench info JSON array (``prompt_en``, ``dimension``),
  the file that both EasyAnimate's inference (it reads ``prompt_en``) and VBench (it looks for
  ``<prompt>-<i>.mp4``) read.

Every step takes ``dataset``: a file (jsonl, json, parquet), a list of files, or pools (dicts with
``dataset``, as the pool steps pass them) and writes one output file per input. Its outputs are
``dataset`` (a path, or a list of paths for a list input), ``pools`` (the inputs as pools with
their converted file, for ``for_each``), ``metrics`` and ``skipped``. A record that cannot be
converted (no video, an empty caption, a missing file) is never silently dropped: it is counted
in the metrics and written with its file, position and reason to ``skipped.jsonl`` in the step's
folder.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Iterator

from sandbox.console import console
from sandbox.data.dj_samples import (EOC_TOKEN, IMAGE_TOKEN, as_list, dj_caption_pairs,
                                     strip_tokens)
from sandbox.data.rows import read_records
from sandbox.errors import ConfigError, DataError
from sandbox.steps.base import Step, StepEnv
from sandbox.utils import atomic_path, atomic_write_json, safe_name

ROW = "__row__"  # the pool steps' bookkeeping column; not data
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# InternVL's COCO caption training prompt (coco_karpathy_train_567k.jsonl)
COCO_PROMPT = "Provide a one-sentence caption for the provided image."


# ============================================================================ reading
def input_files(dataset: Any, where: str) -> list[tuple[dict, Path]]:
    """``[(pool, path)]`` for a path, a list of paths, a pool dict or a list of pools."""
    items = dataset if isinstance(dataset, (list, tuple)) else [dataset]
    out = []
    for item in items:
        if isinstance(item, dict) and "dataset" in item:
            pool, path = dict(item), item["dataset"]
        elif isinstance(item, (str, os.PathLike)):
            pool, path = {}, item
        else:
            raise ConfigError(f"{where}: `dataset` must be a file, a list of files or pools "
                              f"({{name, dataset}} dicts); got {type(item).__name__}. Wire it to "
                              f"a step's `dataset` or `pools` output.")
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{where}: input {path} does not exist or is not a file (resolved "
                            f"from {Path.cwd()}). Check the path or the step that wrote it.")
        pool.setdefault("name", path.stem)
        out.append((pool, path))
    if not out:
        raise ConfigError(f"{where}: `dataset` is an empty list; give at least one file.")
    return out


def resolve_path(path: str, base: Path) -> str:
    """``path`` made absolute against ``base`` (URLs and absolute paths as they are)."""
    if _URL.match(path) or os.path.isabs(path):
        return path
    return os.path.normpath(os.path.join(os.path.abspath(base), path))


def _clean(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if k != ROW}


class _Skips:
    """Records left out, with their reasons: counted, listed, never silent."""

    def __init__(self):
        self.rows: list[dict] = []

    def add(self, path: Path, where: str, reason: str, record: Any) -> None:
        self.rows.append({"file": str(path), "record": where, "reason": reason, "raw": record})

    def __len__(self) -> int:
        return len(self.rows)

    def write(self, folder: Path) -> str:
        out = folder / "skipped.jsonl"
        with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            for r in self.rows:
                fh.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
        return str(out)

    def reasons(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.rows:
            key = r["reason"].split(":")[0]
            counts[key] = counts.get(key, 0) + 1
        return counts


class _Records:
    """The records of one input file, for ``for where, rec in records``: ``n`` counts every
    value read, and a JSON value that is not a record (an object) is skipped with the reason."""

    def __init__(self, path: Path, skips: _Skips):
        self.path, self.skips, self.n = path, skips, 0

    def __iter__(self) -> Iterator[tuple[str, dict]]:
        for where, rec in read_records(self.path):
            self.n += 1
            if isinstance(rec, dict):
                yield where, rec
            else:
                self.skips.add(self.path, where, f"not a record: a JSON {type(rec).__name__}",
                               rec)


def relative_under(path: str, root: str | None) -> str:
    """``path`` relative to ``root`` when it lies under it (URLs and paths elsewhere as they
    are): what a tool that joins its own root with the path expects."""
    if root and not _URL.match(path) and os.path.isabs(path):
        top = os.path.abspath(root)
        if os.path.commonpath([top, path]) == top:
            return os.path.relpath(path, top)
    return path


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")


# ============================================================================ the step family
class Conversion(Step):
    """One output file per input file; subclasses convert one file (``convert_file``)."""

    outputs = ("dataset", "pools", "metrics", "skipped")
    what = "convert"  # a short name for messages
    suffix = ".jsonl"  # output name: <input stem><suffix>

    def __init__(self, export_dir: str | None = None):
        self.export_dir = export_dir

    def convert_file(self, path: Path, skips: _Skips) -> tuple[list | dict, int]:
        """``(output document, records read)``: a list of records (written as jsonl, or as a
        JSON array when ``suffix`` ends in ``.json``) or a dict (written as JSON)."""
        raise NotImplementedError

    def run(self, env: StepEnv, dataset: Any) -> dict[str, Any]:
        folder = Path(self.export_dir) if self.export_dir else Path(env.workdir)
        folder.mkdir(parents=True, exist_ok=True)
        skips = _Skips()
        outs, pools, n_in, n_out = [], [], 0, 0
        used: set[str] = set()
        for pool, path in input_files(dataset, f"{env.name} ({type(self).__name__})"):
            doc, read = self.convert_file(path, skips)
            n_in += read
            stem = safe_name(pool.get("name") or path.stem)
            name = stem
            k = 1
            while name in used:  # two pools of one name (e.g. pool.jsonl in two folders)
                k += 1
                name = f"{stem}_{k}"
            used.add(name)
            out = folder / f"{name}{self.suffix}"
            if isinstance(doc, dict) or self.suffix.endswith(".json"):
                atomic_write_json(out, doc)
            else:
                _write_jsonl(out, doc)
            size = len(doc) if isinstance(doc, list) else self.output_size(doc)
            n_out += size
            outs.append(str(out))
            pools.append(dict(pool, dataset=str(out), size=size))
        skipped = skips.write(Path(env.workdir))
        metrics = {f"{env.name}/records": float(n_in), f"{env.name}/converted": float(n_out),
                   f"{env.name}/skipped": float(len(skips))}
        if len(skips):
            why = ", ".join(f"{n} {r}" for r, n in skips.reasons().items())
            console.print(f"[yellow]{env.name}: {len(skips)} of {n_in} record(s) not converted "
                          f"({why}); each is listed with its reason in {skipped}[/]")
        if n_out == 0:
            raise DataError(f"{env.name}: no record could be converted to {self.what} "
                            f"({len(skips)} skipped; the reasons are in {skipped}). Check the "
                            f"input's fields and the step's parameters.")
        single = not isinstance(dataset, (list, tuple))
        return {"dataset": outs[0] if single else outs, "pools": pools, "metrics": metrics,
                "skipped": skipped}

    def output_size(self, doc: dict) -> int:
        return len(doc)


# ============================================================================ EasyAnimate
class DjToEasyAnimate(Conversion):
    """A Data-Juicer video pool as EasyAnimate's dataset JSON (``<name>_ea_fmt.json``).

    Per record: ``file_path`` = the first video, absolute (relative paths are resolved against
    ``media_dir``, default the input file's folder, as the data pool loader does), or relative to
    ``video_root`` when one is given and the video lies under it (EasyAnimate joins it with its
    ``train_data_dir``, the training script's ``dataset_name`` argument); ``text`` without the
    special tokens; ``type: "video"``; ``videos`` rewritten to the same path(s); every other
    field kept (the pools' ``__row__`` bookkeeping column excepted).

    Skipped, with the reason: records with no video, with an empty caption (unless
    ``allow_empty_text``), or whose video file does not exist (``check_files``; URLs are not
    checked). Data-Juicer's own conversion drops videoless records without a word.
    """

    what = "EasyAnimate's dataset JSON"
    suffix = "_ea_fmt.json"

    def __init__(self, text_key: str = "text", video_key: str = "videos",
                 video_root: str | None = None, media_dir: str | None = None,
                 check_files: bool = True, allow_empty_text: bool = False,
                 export_dir: str | None = None):
        super().__init__(export_dir)
        self.text_key, self.video_key = text_key, video_key
        self.video_root = video_root
        self.media_dir = media_dir
        self.check_files, self.allow_empty_text = bool(check_files), bool(allow_empty_text)

    def convert_file(self, path: Path, skips: _Skips) -> tuple[list, int]:
        base = Path(self.media_dir) if self.media_dir else path.parent
        out, records = [], _Records(path, skips)
        for where, rec in records:
            videos = [v for v in as_list(rec.get(self.video_key)) if isinstance(v, str) and v]
            if not videos:
                skips.add(path, where, f"no video: `{self.video_key}` is empty or missing", rec)
                continue
            text = rec.get(self.text_key)
            if not isinstance(text, str):
                skips.add(path, where, f"no text: `{self.text_key}` is missing or not a string",
                          rec)
                continue
            caption = strip_tokens(text)
            if not caption and not self.allow_empty_text:
                skips.add(path, where, "empty caption: nothing left of the text without the "
                          "special tokens (allow_empty_text=true keeps such records)", rec)
                continue
            resolved = [resolve_path(v, base) for v in videos]
            if self.check_files and not _URL.match(resolved[0]) and not os.path.isfile(resolved[0]):
                skips.add(path, where, f"video file not found: {resolved[0]} (check_files=false "
                          f"keeps such records)", rec)
                continue
            placed = [relative_under(v, self.video_root) for v in resolved]
            item = _clean(rec)
            # Data-Juicer's patched loader reads `videos` whatever the pool's key was
            item.update({"file_path": placed[0], "text": caption, "type": "video",
                         self.video_key: placed, "videos": placed})
            out.append(item)
        return out, records.n


# ============================================================================ COCO caption
def _gpt_turn(conversations: Any) -> str | None:
    """The caption of an InternVL conversation: the first answer (``from: gpt``)."""
    if not isinstance(conversations, list):
        return None
    for turn in conversations:
        if isinstance(turn, dict) and turn.get("from") == "gpt" \
                and isinstance(turn.get("value"), str):
            return turn["value"]
    return None


class CocoCaptionToDj(Conversion):
    """InternVL's COCO caption jsonl (``{"image", "conversations": [human, gpt]}``) as a
    Data-Juicer pool (``<name>_dj_fmt.jsonl``): ``images: [image]`` (joined to ``image_root``
    when given, so the pool loader finds the files; kept as written otherwise) and
    ``text: "<__dj__image> <caption>"``; every other field kept, so ``dj_to_coco_caption`` gives
    the records back. Records without an image or an answer turn are skipped, with the reason."""

    what = "Data-Juicer format"
    suffix = "_dj_fmt.jsonl"

    def __init__(self, image_root: str | None = None, text_key: str = "text",
                 image_key: str = "images", add_eoc: bool = False,
                 export_dir: str | None = None):
        super().__init__(export_dir)
        self.image_root, self.text_key, self.image_key = image_root, text_key, image_key
        self.add_eoc = bool(add_eoc)

    def convert_file(self, path: Path, skips: _Skips) -> tuple[list, int]:
        out, records = [], _Records(path, skips)
        for where, rec in records:
            image = rec.get("image")
            if isinstance(image, list):
                image = image[0] if image else None
            if not isinstance(image, str) or not image:
                skips.add(path, where, "no image: `image` is empty or missing", rec)
                continue
            caption = _gpt_turn(rec.get("conversations"))
            if caption is None:
                skips.add(path, where, "no caption: `conversations` has no `gpt` turn", rec)
                continue
            if self.image_root:
                image = resolve_path(image, Path(self.image_root))
            item = _clean(rec)
            item[self.image_key] = [image]
            item[self.text_key] = f"{IMAGE_TOKEN} {caption.strip()}" + (
                f" {EOC_TOKEN}" if self.add_eoc else "")
            out.append(item)
        return out, records.n


class DjToCocoCaption(Conversion):
    """A Data-Juicer image-text pool as InternVL's caption jsonl (``<name>_coco_fmt.jsonl``):
    ``image`` (relative to ``image_root`` when given and the image lies under it),
    ``conversations``: the human turn (the record's own, when it came from InternVL's format,
    else ``"<image>\\n" + prompt``) and the caption as the ``gpt`` turn. A record with several
    images and as many ``<|__dj__eoc|>`` chunks gives one record per chunk. ``images`` and the
    text are dropped, every other field kept; ``id`` is numbered when absent."""

    what = "InternVL's caption jsonl"
    suffix = "_coco_fmt.jsonl"

    def __init__(self, image_root: str | None = None, prompt: str = COCO_PROMPT,
                 text_key: str = "text", image_key: str = "images",
                 export_dir: str | None = None):
        super().__init__(export_dir)
        self.image_root, self.prompt = image_root, prompt
        self.text_key, self.image_key = text_key, image_key

    def convert_file(self, path: Path, skips: _Skips) -> tuple[list, int]:
        out, records = [], _Records(path, skips)
        for where, rec in records:
            pairs = dj_caption_pairs(rec, self.text_key, self.image_key)
            if not pairs:
                skips.add(path, where, f"no image or no text: `{self.image_key}` empty or "
                          f"`{self.text_key}` missing", rec)
                continue
            human = None
            conv = rec.get("conversations")
            if isinstance(conv, list) and conv and isinstance(conv[0], dict) \
                    and conv[0].get("from") == "human":
                human = conv[0]
            for image, caption in pairs:
                if not caption:
                    skips.add(path, where, "empty caption: nothing left of the text without "
                              "the special tokens", rec)
                    continue
                item = {k: v for k, v in _clean(rec).items()
                        if k not in (self.image_key, self.text_key)}
                item.setdefault("id", len(out))
                item["image"] = relative_under(image, self.image_root)
                item["conversations"] = [
                    human or {"from": "human", "value": f"<image>\n{self.prompt}"},
                    {"from": "gpt", "value": caption}]
                out.append(item)
        return out, records.n


class CocoCaptionMeta(Conversion):
    """InternVL's meta file for each caption jsonl (``<name>_meta.json``), the format of its
    ``shell/data/coco_caption.json``: ``{name: {"root", "annotation", "data_augment",
    "repeat_time", "length"}}``. ``annotation`` is relative to ``data_root`` (InternVL's
    ``internvl_chat/`` folder, where its training resolves paths) when given, absolute otherwise;
    ``length`` counts the file's records. InternVL asserts that the annotation ends in ``.jsonl``
    and holds its own format, so both are checked here (a Data-Juicer pool needs
    ``dj_to_coco_caption`` first)."""

    what = "InternVL meta files"
    suffix = "_meta.json"

    def __init__(self, root: str = "data/coco/", data_root: str | None = None,
                 data_augment: bool = False, repeat_time: float = 1,
                 export_dir: str | None = None):
        super().__init__(export_dir)
        self.root, self.data_root = root, data_root
        self.data_augment, self.repeat_time = bool(data_augment), repeat_time

    def output_size(self, doc: dict) -> int:
        return sum(int(v["length"]) for v in doc.values())

    def convert_file(self, path: Path, skips: _Skips) -> tuple[dict, int]:
        if path.suffix != ".jsonl":
            raise DataError(f"{path}: InternVL's annotation must be a .jsonl file (its training "
                            f"asserts it). Convert the pool first with the dj_to_coco_caption "
                            f"conversion, which writes one.")
        length = 0
        for where, rec in read_records(path):
            if length == 0 and not (isinstance(rec, dict) and "conversations" in rec
                                    and "image" in rec):
                raise DataError(f"{path}, {where}: not InternVL's caption format (it needs "
                                f"`image` and `conversations`). A Data-Juicer pool needs the "
                                f"dj_to_coco_caption conversion first.")
            length += 1
        if self.data_root:
            annotation = os.path.relpath(os.path.abspath(path), os.path.abspath(self.data_root))
        else:
            annotation = os.path.abspath(path)
        name = path.stem
        return {name: {"root": self.root, "annotation": annotation,
                       "data_augment": self.data_augment, "repeat_time": self.repeat_time,
                       "length": length}}, length


# ============================================================================ VBench prompts
FILENAME_BYTES = 255
# VBench dimensions that read per-prompt metadata (``auxiliary_info``: the object, colour,
# relation, scene or style the prompt asks for), which a plain prompt does not carry
NEEDS_AUXILIARY_INFO = ("object_class", "multiple_objects", "color", "spatial_relationship",
                        "scene", "appearance_style")


class PromptsToVbenchInfo(Conversion):
    """Prompts (the text of each record) as a VBench info JSON array (``<name>_vbench_info.json``):
    ``{"prompt_en": prompt, "dimension": dimensions}``. EasyAnimate's inference reads
    ``prompt_en`` and writes ``<prompt>-<i>.mp4``; VBench's standard mode evaluates a dimension
    on the prompts whose ``dimension`` lists it and looks for exactly those file names. So a
    prompt is skipped, with the reason, when it repeats an earlier one (the videos would
    collide), contains ``/`` or is too long to be part of a file name (``<prompt>-<i>.mp4``
    within 255 bytes). Dimensions that need VBench's per-prompt ``auxiliary_info`` (object
    class, colour, spatial relationship, ...) are refused: plain prompts do not carry it."""

    what = "a VBench info file"
    suffix = "_vbench_info.json"

    def __init__(self, dimensions: list[str] | None = None, text_key: str = "text",
                 max_videos_per_prompt: int = 5, export_dir: str | None = None):
        super().__init__(export_dir)
        self.dimensions = list(dimensions) if dimensions else ["temporal_flickering"]
        aux = [d for d in self.dimensions if d in NEEDS_AUXILIARY_INFO]
        if aux:
            raise ConfigError(
                f"prompts_to_vbench_info: dimension(s) {', '.join(aux)} need VBench's own prompts "
                f"with their `auxiliary_info` (the object, colour, relation, scene or style each "
                f"prompt asks for), which plain prompts lack. Evaluate them on VBench's info file "
                f"(VBench_full_info.json) instead, or drop them from `dimensions`.")
        self.text_key = text_key
        self.max_videos_per_prompt = int(max_videos_per_prompt)

    def convert_file(self, path: Path, skips: _Skips) -> tuple[list, int]:
        out, seen, n = [], set(), 0
        tail = len(f"-{self.max_videos_per_prompt - 1}.mp4".encode())
        for where, rec in read_records(path):
            n += 1
            text = rec.get(self.text_key) if isinstance(rec, dict) else rec
            if not isinstance(text, str) or not strip_tokens(text):
                skips.add(path, where, f"no prompt: `{self.text_key}` is empty or missing", rec)
                continue
            prompt = strip_tokens(text)
            if prompt in seen:
                skips.add(path, where, "duplicate prompt: its videos would overwrite the "
                          "earlier prompt's", rec)
                continue
            if "/" in prompt or "\0" in prompt:
                skips.add(path, where, "prompt contains '/': it cannot be part of the video's "
                          "file name", rec)
                continue
            if len(prompt.encode()) + tail > FILENAME_BYTES:
                skips.add(path, where, f"prompt too long: <prompt>-<i>.mp4 exceeds "
                          f"{FILENAME_BYTES} bytes", rec)
                continue
            seen.add(prompt)
            out.append({"prompt_en": prompt, "dimension": list(self.dimensions)})
        return out, n
