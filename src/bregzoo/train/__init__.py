"""Distillation: the training loop, its run directory, and the shipped (one- or k-step) student."""

from bregzoo.train.export import Student, load_student
from bregzoo.train.loop import RunResult, train

__all__ = ["RunResult", "Student", "load_student", "train"]
