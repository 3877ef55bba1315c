"""Ray job entrypoint for projective evaluation: completions, judge, Eq. 4 scores (--system NAME, repeatable).

    ray job submit --runtime-env runtime_env.yaml -- python jobs/evaluate.py STUDY [--out s3://…]

Resubmitting resumes: finished work is skipped.
"""

import sys

from valuelex.cli import app

if __name__ == "__main__":
    app(["evaluate", *sys.argv[1:]], prog_name="jobs/evaluate.py")
