"""Export to (and, later, import from) Hugging Face folders: tested weight-name mappings.

    export(run_or_model_dir, to_dir, overwrite=False) -> Path
    check_export(to_dir, logits_fn(run_or_model_dir)) -> ExportCheck   # snippet in a fresh, offline process
"""

from .hf import CHECK_FAILED, CHECK_TEXT, ExportCheck, check_export, compare, export, hf_model, load_source, logits_fn, run_snippet

__all__ = ["CHECK_FAILED", "CHECK_TEXT", "ExportCheck", "check_export", "compare", "export", "hf_model", "load_source", "logits_fn",
           "run_snippet"]
