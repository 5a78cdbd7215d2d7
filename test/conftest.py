"""Settings every test shares."""

import os

# Invariant 3: nothing may quietly use this machine's own cloud identity. Tests run with none.
for name, value in {
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}.items():
    os.environ.setdefault(name, value)
for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
    os.environ.pop(name, None)
os.environ.setdefault("GALAXY_TEST_LOG_LEVEL", "INFO")
