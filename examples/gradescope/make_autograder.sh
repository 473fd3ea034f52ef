#!/usr/bin/env bash
# Build a Gradescope autograder zip for a course folder:
#   bash examples/gradescope/make_autograder.sh examples/courses/layers autograder.zip
# The zip holds setup.sh, run_autograder, the course (its reference solutions included: the
# zip stays on Gradescope's servers, students never see it) and a copy of gradcheck.
set -euo pipefail
course=${1:?usage: make_autograder.sh COURSE_DIR OUT.zip}
out=${2:?usage: make_autograder.sh COURSE_DIR OUT.zip}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
[ -f "$course/course.py" ] || { echo "$course is not a course folder (no course.py)" >&2; exit 2; }
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp "$here/setup.sh" "$here/run_autograder" "$stage/"
cp -r "$course" "$stage/course"
mkdir "$stage/gradcheck"
# The package, its metadata and grader.py: not the tests, examples or a virtual environment.
cp -r "$repo/gradcheck" "$repo/solutions" "$repo/grader.py" "$repo/pyproject.toml" "$repo/README.md" "$stage/gradcheck/"
find "$stage" -name __pycache__ -prune -exec rm -rf {} +
out_abs=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
rm -f "$out_abs"
(cd "$stage" && python3 -m zipfile -c "$out_abs" setup.sh run_autograder course gradcheck)
echo "wrote $out_abs"
