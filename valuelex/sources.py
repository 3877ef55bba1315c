"""Model sources: turn a study's `source` into something vLLM can load, with no network at run time.

- a hub id or local folder is passed to vLLM as is (the hub cache must already hold it offline);
- ``s3://bucket/prefix`` is copied once into the local cache;
- ``gguf-wheel:PACKAGE`` finds a GGUF file shipped inside an installed Python package (whole, or in
  ``*.gguf.partNN`` chunks spread over ``PACKAGE_part*`` packages), dequantises it once with
  transformers and saves a plain safetensors copy that vLLM loads.

Each materialised copy is built in a temporary folder and renamed into place, with a completion
marker, so a crash mid-way never leaves a half-written model that a later run would trust.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

from valuelex.errors import EngineError

GGUF_PREFIX = "gguf-wheel:"
MARKER = ".valuelex-complete"


def cache_root() -> Path:
    root = Path(os.environ.get("VALUELEX_CACHE", Path.home() / ".cache" / "valuelex")) / "models"
    root.mkdir(parents=True, exist_ok=True)
    return root


def materialize(source: str) -> str:
    """A path or hub id vLLM can load for this source."""
    if source.startswith(GGUF_PREFIX):
        return str(_materialize_gguf_wheel(source.removeprefix(GGUF_PREFIX)))
    if source.startswith("s3://"):
        return str(_materialize_s3(source))
    return source


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)  # locate without importing: imports may pull in heavy deps
    if spec is None or not spec.submodule_search_locations:
        raise EngineError(f"source {GGUF_PREFIX}{package}: package {package!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def find_gguf(package: str) -> list[Path]:
    """The GGUF file of a package, or its ordered chunks (which may live in sibling part packages)."""
    root = _package_dir(package)
    whole = sorted(root.rglob("*.gguf"))
    if whole:
        return whole[:1]
    chunks = list(root.rglob("*.gguf.part*"))
    for sibling in root.parent.glob(f"{root.name}_part*"):
        if sibling.is_dir():
            chunks.extend(sibling.rglob("*.gguf.part*"))
    if not chunks:
        raise EngineError(f"source {GGUF_PREFIX}{package}: no .gguf file (or .gguf.partNN chunks) in {root}")
    return sorted(set(chunks), key=lambda p: p.name)


def _fingerprint(files: list[Path]) -> str:
    info = [(f.name, f.stat().st_size) for f in files]
    return hashlib.sha256(json.dumps(info).encode()).hexdigest()[:12]


def _build_once(target: Path, build) -> Path:
    """Run `build(tmpdir)` unless `target` is already complete; publish by rename."""
    if (target / MARKER).exists():
        return target
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build(tmp)
        (tmp / MARKER).write_text("ok\n")
        if target.exists():  # an incomplete leftover from a crashed build
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _materialize_gguf_wheel(package: str) -> Path:
    files = find_gguf(package)
    target = cache_root() / f"{package}-{_fingerprint(files)}"

    def build(tmp: Path) -> None:
        if len(files) == 1:
            gguf = files[0]
        else:
            gguf = tmp / "model.gguf"
            with gguf.open("wb") as out:
                for chunk in files:
                    with chunk.open("rb") as part:
                        shutil.copyfileobj(part, out, length=16 << 20)
        dequantize_gguf(gguf, tmp)
        if gguf.parent == tmp:
            gguf.unlink()

    return _build_once(target, build)


def dequantize_gguf(gguf: Path, out_dir: Path) -> None:
    """Load a GGUF with transformers (which dequantises) and save plain float weights + tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if _gguf_flag(gguf, "tokenizer.ggml.add_bos_token") and tokenizer.bos_token:
        # transformers' GGUF tokenizer conversion drops this flag; Gemma without <bos> emits noise
        tokenizer.add_bos_token = True
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype="float32")
    model.hf_quantizer = None  # GGUF weights are dequantised on load: what we save is plain float
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    # the config may still carry a quantization block from the GGUF metadata; vLLM would honour it
    config_path = out_dir / "config.json"
    config = json.loads(config_path.read_text())
    if config.pop("quantization_config", None) is not None:
        config_path.write_text(json.dumps(config, indent=2))


def _gguf_flag(gguf: Path, key: str) -> bool:
    from gguf import GGUFReader

    field = GGUFReader(gguf).fields.get(key)
    return bool(field is not None and field.parts[field.data[0]][0])


def _materialize_s3(uri: str) -> Path:
    import pyarrow.fs as pafs

    from valuelex.store import filesystem

    fs, path = filesystem(uri)
    try:
        listing = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    except OSError as exc:
        raise EngineError(f"source {uri}: cannot list model files: {exc}") from exc
    files = [i for i in listing if i.type == pafs.FileType.File]
    if not files:
        raise EngineError(f"source {uri}: no model files under this prefix")
    key = hashlib.sha256(json.dumps(sorted((i.path, i.size) for i in files)).encode()).hexdigest()[:12]
    target = cache_root() / f"s3-{Path(path).name}-{key}"

    def build(tmp: Path) -> None:
        for info in files:
            dest = tmp / os.path.relpath(info.path, path)
            dest.parent.mkdir(parents=True, exist_ok=True)
            with fs.open_input_stream(info.path) as src, dest.open("wb") as out:
                shutil.copyfileobj(src, out, length=16 << 20)

    return _build_once(target, build)
