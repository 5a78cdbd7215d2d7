"""The S3 benchmark: cloud_bench.py for provider aws (moto), kept under its old name.

.venv/bin/python bench/s3_bench.py --scale 0.1     # the same as: bench/cloud_bench.py --provider aws --scale 0.1
"""

import sys

from cloud_bench import main

if __name__ == "__main__":
    sys.exit(main(["--provider", "aws", *sys.argv[1:]]))
