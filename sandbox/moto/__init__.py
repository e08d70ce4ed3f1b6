"""The sandbox's seam: the only package that changes moto or botocore (docs/design.md §6).

- `registry`: `Patch`, the pinned versions and `apply`/`restore`/`patched`, which check every patch first.
- `install`: the emulator's patches, installed together by `sandbox.emulator` (counted, reversible):
  `lambda_runtime`, `stepfunctions`, `speed`, `run_command`, `instance_information` (with `ssm`, the fleet
  protocol they share) and `alarms`.
- `injection`: the moto side of the safety matrix's faults (sandbox/faults.py).
- `botocore_caches`: the warm interpreter's shared botocore caches (sandbox/warm_python.py).
- `counting`: the benchmark's API-call counting (bench/counting.py).

Nothing is imported here: the warm interpreter's zygote imports `registry` without loading moto.
"""
