"""galaxy-cloud-storage: copy objects between cloud buckets and Galaxy histories.

docs/design.rst describes the layers, the processes and the invariants that comments here refer
to by number ("invariant 4").
"""

__version__ = "0.1.0"
