"""Events of the labs app that its other parts (or higher apps) act on."""
from __future__ import annotations

from django.dispatch import Signal

# A trainee passed a step for the first time (inside the transaction that records it):
# sender=Step, user=…, step=…. The inside feature checkpoints their sandbox on it.
step_passed = Signal()
