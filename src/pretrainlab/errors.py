"""The one base class for errors a user can act on. The CLI prints their message, not a traceback."""


class PretrainlabError(Exception):
    """An input or setting that cannot work; the message says what, where and what to do."""


class ConfigError(PretrainlabError, ValueError):
    """A configuration that cannot work; the message names the field and what to do."""


class CorpusError(PretrainlabError, ValueError):
    """Bad corpus input: names the file and position."""


class TaskError(PretrainlabError, ValueError):
    """Bad downstream task input: names the file, column and row."""


class CheckpointError(PretrainlabError, ValueError):
    """A checkpoint that is missing, corrupt or does not match the run."""


class ExportError(PretrainlabError, ValueError):
    """An export/import that cannot be done as asked."""


class TrainingError(PretrainlabError, RuntimeError):
    """Training stopped (e.g. a NaN loss); says at which step and where the last good checkpoint is."""


class Interrupted(TrainingError):
    """Ctrl-C or SIGTERM stopped training; the message says at which step, where the checkpoint is and how
    to resume. `signum` is the signal (the CLI exits with 128 + signum, as a shell reports a killed job)."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum

    def __reduce__(self):  # pickled with its signal (a curve's fit in a worker process raises it there)
        return type(self), (str(self), self.signum)
