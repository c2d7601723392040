"""Distillation: a small, fast student trained on a fine-tuned teacher's soft labels over unlabelled text.

    result = distill("runs/minilm/finetune-mr", "preset:tiny", ["task:mr", "sotu/"], "runs/distill-mr", cfg,
                     seeds=(0, 1, 2))
    result.student.accuracy.mean, result.teacher.texts_per_s_batch32, result.agreement.mean

1. The texts. The task is the teacher's own (read with its columns and split settings). Its labelled
   training split is always used; the unlabelled inputs (text files, prepared corpora, `task:NAME` for
   a task's training texts) are cut into pieces of the task's typical length (`pieces`: whole sentences
   while they fit, the median word count of the training texts). Pieces equal (up to case and spaces) to
   a validation or test text of the task are dropped: the student never learns from the texts it is
   scored on.
2. The teacher runs once (`label_texts`). Its logits on every text are cached on disk in bf16,
   safetensors shards under `teacher-<hash of its files>/`, each shard named by its own sha256 and
   holding the texts' hashes beside the logits; later runs (another student, another seed, a resumed
   run) look texts up there. A shard is written atomically, so a killed labelling resumes at the first
   missing shard; a shard whose bytes do not match its name is refused, deleted and relabelled.
3. The loss (`distill_loss`), per text: T^2 KL(softmax(t/T) || softmax(s/T)) (T = distill.temperature,
   Hinton et al. 2015), plus distill.alpha x cross-entropy on the gold label for the labelled training
   examples, plus (distill.hidden_weight > 0) the MSE between a learned projection of the student's pooled
   representation and the teacher's (TinyBERT's hidden-state loss on the sentence representation; the two
   tokenizers need not agree). It trains in the one loop (`loop.fit`) with a budget (distill.budget, or at most
   distill.epochs passes), validated distill.evals_per_epoch times a pass and stopped early on the task's
   validation split after distill.patience validations without progress, with checkpoints and `--resume`.
4. The output directory is a fine-tuned classifier (runs.save_classifier): `evaluate`, `predict`,
   `explain` and `export` take it. report.md / report.json set teacher against student: test accuracy and
   macro-F1 (over seeds), parameters, size on disk, CPU throughput at batch 1 and 32 (the same test
   texts, one after the other in the same process) and how often the student agrees with the teacher.

The package: `teacher.py` (the teacher, its task, its logits), `student.py` (what the student starts from),
`pool.py` (the unlabelled pieces), `augment.py` (distill.augment's copies of them, Tang et al. 2019), `cache.py`
(the teacher-logits cache), `loss.py` (the soft-label loss), `recipe.py` (setting up, one seed in the seed routine
that fine-tuning shares, the whole distillation), `report.py` (report.md / report.json). The learning curve's
distilled and self-trained rows reuse them.
"""

from .augment import augmented_pool  # not augment.augment: distill.augment stays the module
from .cache import LogitsCache, TeacherLabels, default_cache_dir, label_texts, teacher_hash, text_hash
from .loss import NO_LABEL, DistillLoss, DistillModel, distill_loss, soft_label_step_loss
from .pool import TextPool, input_documents, pieces, read_unlabelled, typical_words
from .recipe import (AUGMENT, BEFORE_EVALS, POOL_LABELS, SETTINGS_FILE, DistillSetup, confident_rows, distill,
                     distill_seed, distill_setup, kept_count, pool_with_copies, prepare_distill, resume_hint,
                     save_student, source_rows, student_budget, unsaved_settings, warn_if_patience_cannot_stop)
from .report import DistillResult, ModelFigures, report_markdown, texts_per_second
from .student import PRESET_PREFIX, Student, load_student, student_classifier, student_config, student_from_run
from .teacher import load_teacher, mask_token, run_teacher, teacher_task

__all__ = ["AUGMENT", "BEFORE_EVALS", "NO_LABEL", "POOL_LABELS", "PRESET_PREFIX", "SETTINGS_FILE", "DistillLoss",
           "DistillModel", "DistillResult", "DistillSetup", "LogitsCache", "ModelFigures", "Student", "TeacherLabels",
           "TextPool", "augmented_pool", "confident_rows", "default_cache_dir", "distill", "distill_loss",
           "distill_seed", "distill_setup", "input_documents", "kept_count", "label_texts", "load_student",
           "load_teacher", "mask_token", "pieces", "pool_with_copies", "prepare_distill", "read_unlabelled",
           "report_markdown", "resume_hint", "run_teacher", "save_student", "soft_label_step_loss", "source_rows",
           "student_classifier", "student_budget", "student_config", "student_from_run", "teacher_hash", "teacher_task",
           "text_hash", "texts_per_second", "typical_words", "unsaved_settings", "warn_if_patience_cannot_stop"]
