"""Models on disk: reading headers, telling what a file is, finding models; any thread.

Torch-free on purpose: the GUI scans folders off its thread (`run_in_executor`) without waiting
for torch to import. By concern:

    safetensors   the file format: a bounded, strict header parser (`read_safetensors_header`)
    detection     what a file is (kind, family, variant); the family rules live here only
    upscalers     ESRGAN-family upscalers (architecture, scale) told from their key layout
    entries       one model on disk (`ModelEntry`): `inspect_file`, `inspect_diffusers_folder`
    scan          folder walks, the Hugging Face cache, `find_model`
    folders       the user's model folders and choices (`ModelFolderStore`, models.json)
    tags          `<lora:name:w>` prompt tags and `--lora PATH:W`
    embeddings    textual-inversion embeddings named in prompts, A1111's `TI hashes`
    hashes        content hashes, computed once per file version and kept (hashes.json)
    refs          models named by name + content hash (`ResourceRef`), resolved to paths
    registry      one kept scan of the user's models (`ModelRegistry`): names → paths
    preflight     the checks a request's model files pass before anything loads
                  (`preflight.preflight`; not re-exported: the name is the module's)
"""

from ldstudio.core.models.detection import (
    KIND_CHECKPOINT,
    KIND_DIFFUSERS,
    KIND_EMBEDDING,
    KIND_LORA,
    KIND_UNKNOWN,
    KIND_UPSCALER,
    KIND_VAE,
    STATUS_ERROR,
    STATUS_OK,
    STATUS_UNSAFE,
    STATUS_UNSUPPORTED,
    SUPPORTED_TEXT,
    VARIANT_LABELS,
    VARIANTS,
    Detection,
    detect,
)
from ldstudio.core.models.entries import (
    ModelEntry,
    inspect_diffusers_folder,
    inspect_file,
)
from ldstudio.core.models.folders import ModelFolderStore
from ldstudio.core.models.hashes import (
    HashStore,
    content_sha256,
    file_hash,
    hash_store,
    lora_hash,
    model_hash,
)
from ldstudio.core.models.refs import ResourceRef, reference, resolve
from ldstudio.core.models.registry import ModelRegistry
from ldstudio.core.models.safetensors import (
    MAX_HEADER_BYTES,
    MAX_TENSORS,
    PICKLE_SUFFIXES,
    SAFETENSORS_SUFFIXES,
    ModelFileError,
    SafetensorsHeader,
    TensorInfo,
    pickle_refusal,
    read_safetensors_header,
    read_small_tensor,
)
from ldstudio.core.models.scan import (
    find_model,
    hf_cache_dir,
    iter_library,
    library_roots,
    scan_folder,
    scan_library,
)
from ldstudio.core.models.tags import parse_lora_argument, split_lora_tags

__all__ = [
    "KIND_CHECKPOINT",
    "KIND_DIFFUSERS",
    "KIND_EMBEDDING",
    "KIND_LORA",
    "KIND_UNKNOWN",
    "KIND_UPSCALER",
    "KIND_VAE",
    "MAX_HEADER_BYTES",
    "MAX_TENSORS",
    "PICKLE_SUFFIXES",
    "SAFETENSORS_SUFFIXES",
    "STATUS_ERROR",
    "STATUS_OK",
    "STATUS_UNSAFE",
    "STATUS_UNSUPPORTED",
    "SUPPORTED_TEXT",
    "VARIANTS",
    "VARIANT_LABELS",
    "Detection",
    "HashStore",
    "ModelEntry",
    "ModelFileError",
    "ModelFolderStore",
    "ModelRegistry",
    "ResourceRef",
    "SafetensorsHeader",
    "TensorInfo",
    "content_sha256",
    "detect",
    "file_hash",
    "find_model",
    "hash_store",
    "hf_cache_dir",
    "inspect_diffusers_folder",
    "inspect_file",
    "iter_library",
    "library_roots",
    "lora_hash",
    "model_hash",
    "parse_lora_argument",
    "pickle_refusal",
    "read_safetensors_header",
    "read_small_tensor",
    "reference",
    "resolve",
    "scan_folder",
    "scan_library",
    "split_lora_tags",
]
