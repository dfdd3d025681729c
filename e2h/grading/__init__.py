r"""Final-answer extraction and equivalence grading for MATH-style answers.

Two public entry points and the normaliser they share:

- :func:`extract_answer` finds the model's final answer in a solution, after any ``<think>...</think>``
  trace: the ``# Answer`` section of the paper's format, else the last ``\boxed{...}`` / ``\fbox{...}``
  (MATH's own style), else (``free_text=True``, the default) the last mathematical expression of the free
  text as math-verify extracts it, in the same bounded helper process. Callers grading a completion cut by
  the token budget pass ``free_text=False``. docs/grading.md states the rules for users.
- :func:`is_equivalent` decides whether a predicted answer equals the reference. A fast path compares
  :func:`normalize_answer` forms (Hendrycks-style normalisation: units, ``\text{}``, degrees, percent,
  ``x =`` prefixes, thousands separators, ``\dfrac``, ``\frac12``, ``.5``...); only when that fails is
  math-verify asked (sets in any order, ``0.5`` vs ``\frac12``, intervals, matrices, mixed numbers...),
  with exact values compared exactly (``1/3^{80}`` is not ``1/3^{81}``) and decimals to 6 places and 3
  significant digits (see ``_verify_worker.py``).

Never hangs. math-verify's own timeouts use ``signal.alarm``, which fails outside the main thread, and
with them off some inputs never return: comparing ``10^{10^{10^{10^{10}}}}`` with ``1`` runs big-integer
arithmetic that holds the GIL, so no thread-based timeout can stop it. Two defences, in this order:

1. *Screening* (:func:`refusal_reason`): answers longer than :data:`MAX_ANSWER_CHARS`, nested deeper than
   :data:`MAX_NESTING_DEPTH`, with power towers, huge literal exponents or factorials of huge numbers are
   never given to sympy; they are compared as normalised strings only.
2. *A helper process*: math-verify runs in a persistent child process (``e2h/grading/_verify_worker.py``)
   spoken to in JSON lines. The caller enforces a deadline (``timeout``, default :data:`VERIFY_TIMEOUT_S`
   seconds per call); on expiry it kills the child, answers "not equivalent" and starts a fresh child on
   the next call. The child is started with ``subprocess.Popen`` (not ``multiprocessing``), so this also
   works inside daemonic DataLoader workers; a forked process (a DataLoader worker) never reuses its
   parent's children; threads share a small pool of children (:data:`MAX_VERIFY_WORKERS`).

The time bound: a call that reaches math-verify returns within ``timeout`` seconds of handing its request
to a ready helper. Starting a helper (first call in a process, or the first after a timeout) is bounded
separately by :data:`WORKER_START_TIMEOUT_S` (it normally takes well under a second). Threads queue for a
helper when all :data:`MAX_VERIFY_WORKERS` are busy; each holder releases within its own bound.
The helper machinery is POSIX (Linux, macOS): it uses ``poll`` on pipes and process sessions.

Modules: `extraction` (the final answer in a solution), `normalization` (the fast path's canonical string),
`screening` (inputs sympy must never see), `workers` (the bounded pool of math-verify helpers) and
`equivalence` (`is_equivalent`, which uses all of them). Pure Python: no torch, no Lightning.
"""

from e2h.grading.equivalence import equivalence_verdict, is_equivalent
from e2h.grading.extraction import extract_answer
from e2h.grading.normalization import normalize_answer
from e2h.grading.screening import refusal_reason
from e2h.grading.workers import VERIFY_TIMEOUT_S

__all__ = ["VERIFY_TIMEOUT_S", "equivalence_verdict", "extract_answer", "is_equivalent", "normalize_answer", "refusal_reason"]
