"""The lab: evaluation, analysis, benchmarks, pictures and comparative studies.

It sits above ``maskkit.train`` and the kernel and uses both; nothing below it imports it
(checked by import-linter, see docs/architecture.md).
"""
