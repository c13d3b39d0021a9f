"""The run directory: what a run writes, where, and when an existing directory may be reused.

    <out>/config.json             resolved config, component provenance, check results ("bregzoo_run")
    <out>/metrics.jsonl           one JSON object a line: {"step", "split", ...}
    <out>/generator.safetensors   the final student (EMA weights), config in the header metadata
    <out>/samples.png             teacher vs student samples
    <out>/checkpoints/step-NNNNNNN/   accelerate save_state + train_state.safetensors (for --resume)
    <out>/tb/                     TensorBoard logs
    <out>/.lock                   the pid of the training that holds the directory (bregzoo.train.runlock)
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bregzoo import io
from bregzoo.config import dotted
from bregzoo.errors import BregzooError
from bregzoo.train.runlock import NAME as LOCK_NAME
from bregzoo.train.runlock import RunLock

if TYPE_CHECKING:
    from bregzoo.config import RunConfig

MARKER = "bregzoo_run"
# Everything a run creates; only these are removed when a run directory is reused.
# Keys a resumed run may change: more steps, and how often it logs, evaluates and checkpoints; and ``out``,
# where the run lives (a moved or copied run directory resumes). Nothing else of a checkpoint's config may.
RESUMABLE = frozenset({"train.steps", "train.log_every", "train.eval_every", "train.checkpoint_every",
                       "train.keep_checkpoints"})
BOOKKEEPING = RESUMABLE | {"out"}
OWNED = ("config.json", "metrics.jsonl", "generator.safetensors", "generator_raw.safetensors", "samples.png",
         "checkpoints", "tb")


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run directory."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def generator(self) -> Path:
        return self.root / "generator.safetensors"

    @property
    def samples(self) -> Path:
        return self.root / "samples.png"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def logs(self) -> Path:
        return self.root / "tb"

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / f"step-{step:07d}"

    def latest_checkpoint(self) -> Path | None:
        """The newest complete checkpoint (temporary directories start with a dot and are skipped)."""
        found = sorted(self.checkpoints.glob("step-*")) if self.checkpoints.is_dir() else []
        return found[-1] if found else None

    def prune_checkpoints(self, keep: int) -> None:
        for old in sorted(self.checkpoints.glob("step-*"))[:-keep]:
            shutil.rmtree(old, ignore_errors=True)

    def log(self, record: dict[str, Any]) -> None:
        """Append one record to metrics.jsonl."""
        io.append_line(self.metrics, json.dumps(record, allow_nan=True))

    def truncate_metrics(self, step: int) -> None:
        """Drop records logged after ``step`` (a resumed run logs them again)."""
        if not self.metrics.exists():
            return
        kept = []
        for ln in self.metrics.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(ln)
            except ValueError:  # a line torn by a crash (power loss, full disk): its step is logged again
                continue
            if rec.get("step", 0) <= step and not rec.get("split", "").startswith("final"):
                kept.append(ln)
        io.write_text(self.metrics, "".join(ln + "\n" for ln in kept))


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` holds a bregzoo run (its config.json carries the marker)."""
    try:
        return MARKER in json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return False


def prepare(path: str | Path, overwrite: bool = False) -> RunDir:
    """Make ``path`` ready for a fresh run.

    An earlier bregzoo run there, or a non-empty directory that is not a bregzoo run, is refused
    unless ``overwrite`` (as accelerate and Lightning users expect: a finished run is never lost to a
    repeated command); even then only the files a run writes are removed, nothing else.
    """
    root = Path(path)
    if root.exists() and not root.is_dir():
        raise BregzooError(f"--out {root} is a file, not a directory; choose another --out")
    if is_run_dir(root) and not overwrite:
        run = RunDir(root)
        ckpt = run.latest_checkpoint()
        state = ("finished" if run.generator.exists() else "unfinished") + (
            f", last checkpoint at step {int(ckpt.name.split('-')[1])}" if ckpt else "")
        raise BregzooError(
            f"--out {root} already holds a bregzoo run ({state}); '--resume {root}' continues it (add --steps N "
            f"for more steps), --overwrite replaces it (its checkpoints, generator and logs are deleted), "
            "or choose another --out")
    if not overwrite:
        _refuse_foreign(root)
    try:
        root.mkdir(parents=True, exist_ok=True)  # first: an unwritable --out fails before anything is removed
        for name in OWNED:
            target = root / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    except OSError as exc:
        raise BregzooError(f"--out {root}: cannot create or clean the run directory ({exc.strerror}); "
                           "choose a writable --out") from None
    return RunDir(root)


def _refuse_foreign(root: Path) -> None:
    """A non-empty directory that is no bregzoo run (its lock file aside) is refused."""
    if root.is_dir() and any(p.name != LOCK_NAME for p in root.iterdir()) and not is_run_dir(root):
        raise BregzooError(
            f"--out {root} exists and is not a bregzoo run directory; choose another --out "
            "or pass --overwrite (only the files a run writes are replaced)"
        )


def claim(path: str | Path, resume: bool = False, overwrite: bool = False) -> RunLock:
    """Lock the run directory for this process, then check it (and, for a new run, ``prepare`` it).

    The lock comes before the checks, so a second training started on the same directory is told that
    the directory is in use (by which pid), not that it holds an unfinished run. A folder of other files
    is refused before it gets a lock file; any other directory refused by the checks is left as it was,
    since the lock file goes with the lock.
    """
    root = Path(path)
    if resume:
        existing(root)  # read-only: a folder that is no run gets no lock file
    elif root.exists() and not root.is_dir():
        raise BregzooError(f"--out {root} is a file, not a directory; choose another --out")
    elif root.is_dir() and not overwrite:
        _refuse_foreign(root)
    elif not root.exists():
        try:
            root.mkdir(parents=True)
        except FileExistsError:  # another training made it a moment ago: the lock decides
            pass
        except OSError as exc:
            raise BregzooError(f"--out {root}: cannot create or clean the run directory ({exc.strerror}); "
                               "choose a writable --out") from None
    lock = RunLock(root, "--resume" if resume else "--out").acquire()
    try:
        existing(root) if resume else prepare(root, overwrite)
    except BaseException:
        lock.release()
        raise
    return lock


def existing(path: str | Path) -> RunDir:
    """An existing run directory to resume; anything else is a user error."""
    root = Path(path)
    if not is_run_dir(root):
        raise BregzooError(f"--resume {root}: not a bregzoo run directory (no config.json from 'bregzoo train')")
    run = RunDir(root)
    if run.latest_checkpoint() is None:
        raise BregzooError(f"--resume {root}: the run has no checkpoint yet; start it again without --resume")
    return run


# -- the config a checkpoint was trained with -------------------------------------------------------

def identity(cfg: "RunConfig") -> dict[str, Any]:
    """The config as dotted keys, less the keys a resume may change (``BOOKKEEPING``)."""
    return {k: v for k, v in dotted(cfg.to_dict()).items() if k not in BOOKKEEPING}


def identity_metadata(cfg: "RunConfig") -> dict[str, str]:
    """What a checkpoint stores of its config: the identity and its sha256."""
    text = json.dumps(identity(cfg), sort_keys=True)
    return {"config_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(), "config_identity": text}


def check_resumable(checkpoint: Path, cfg: "RunConfig") -> None:
    """Refuse to resume ``checkpoint`` with a config other than the one it was trained with.

    Only the ``BOOKKEEPING`` keys may differ. A key the checkpoint does not know (a config field added
    since) is allowed: a new field's default keeps the old behaviour. A checkpoint written before
    checkpoints stored their config, or one whose header cannot be read (``load_checkpoint`` then
    says so), is not checked here.
    """
    try:
        meta = io.read_metadata(checkpoint / "train_state.safetensors")
    except BregzooError:
        return
    if "config_sha256" not in meta or meta["config_sha256"] == identity_metadata(cfg)["config_sha256"]:
        return
    try:
        stored = json.loads(meta["config_identity"])
    except (KeyError, ValueError):
        stored = None
    now = identity(cfg)
    if not isinstance(stored, dict):
        changed = ["(its stored config is unreadable)"]
    else:
        changed = [f"{k} {stored[k]!r} -> {now[k]!r}" if k in now else f"{k} (no longer a config key)"
                   for k in sorted(stored) if k not in now or stored[k] != now[k]]
    if changed:
        root = checkpoint.parent.parent
        raise BregzooError(
            f"--resume {root}: its config.json differs from the config checkpoint {checkpoint.name} was trained "
            f"with: {'; '.join(changed[:5])}{f' (and {len(changed) - 5} more)' if len(changed) > 5 else ''}. A resume "
            f"may change only {', '.join(sorted(RESUMABLE))}; undo the edit, or train anew with another --out")


def resumes(run: RunDir) -> list[dict[str, Any]]:
    """The resumes recorded in the run's config.json (oldest first; [] for none or an unreadable file)."""
    try:
        found = json.loads(run.config.read_text(encoding="utf-8")).get("resumes", [])
    except (OSError, ValueError, AttributeError):
        return []
    return found if isinstance(found, list) else []


# Config fields whose default, when they were added, changed what a run does, and the value that keeps a
# run checkpointed before them training as it did. check_resumable lets a field that a checkpoint lacks
# take its default; for these fields that default is not the old behaviour, so a resume gets this value.
LEGACY = {"train.ratio_net": "separate"}  # "auto" would put a head where the checkpoint has a network


def with_legacy_defaults(root: Path, cfg: "RunConfig") -> "RunConfig":
    """``cfg`` for resuming the run in ``root``: the LEGACY fields its latest checkpoint predates, left at
    their default in ``cfg``, get their old value."""
    from bregzoo.config import RunConfig

    ckpt = RunDir(Path(root)).latest_checkpoint()
    if ckpt is None:
        return cfg
    try:
        stored = json.loads(io.read_metadata(ckpt / "train_state.safetensors").get("config_identity", "{}"))
    except (BregzooError, ValueError):
        stored = {}
    now, default = dotted(cfg.to_dict()), dotted(RunConfig().to_dict())
    old = {k: v for k, v in LEGACY.items() if not (isinstance(stored, dict) and k in stored) and now[k] == default[k]}
    return cfg.replace(**old) if old else cfg
