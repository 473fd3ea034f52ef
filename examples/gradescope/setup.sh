#!/usr/bin/env bash
# Gradescope autograder image setup: Gradescope runs this once when it builds the image.
# Zip this folder together with a copy of the gradcheck repository in ./gradcheck:
#   cp -r /path/to/gradcheck examples/gradescope/gradcheck && (cd examples/gradescope && zip -r ../autograder.zip .)
set -euo pipefail
apt-get update -q && apt-get install -y -q python3 python3-pip python3-venv
python3 -m venv /autograder/venv
/autograder/venv/bin/pip install --quiet "/autograder/source/gradcheck[notebook,plots]"
# Extra packages the course needs (its requirements.txt), when it has any.
if [ -f /autograder/source/course/requirements.txt ]; then
    /autograder/venv/bin/pip install --quiet -r /autograder/source/course/requirements.txt
fi
