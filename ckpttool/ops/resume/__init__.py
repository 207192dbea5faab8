"""validate-resume: will this checkpoint resume the way the new settings intend?

``validate_resume(ckpt, ResumeOptions(epochs=400, schedule="cosine", lrf=0.2))`` returns a
``ResumeResult`` with the start epoch, both LR curves around the resume point, and a checklist of
``resume.*`` checks. No torch import: the schedulers are simulated in pure Python.
"""

from ckpttool.ops.resume.result import Check, ResumeOptions, ResumeResult
from ckpttool.ops.resume.validate import validate_resume

__all__ = ["validate_resume", "ResumeOptions", "ResumeResult", "Check"]
