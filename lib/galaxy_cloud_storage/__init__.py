"""galaxy-cloud-storage: copy objects between cloud buckets and Galaxy histories."""

__version__ = "0.1.0"
