"""Ray job entrypoint for the whole study: elicit, construct, evaluate (and report).

    ray job submit --runtime-env runtime_env.yaml -- python jobs/run.py STUDY [--out s3://…]

Resubmitting resumes: finished work is skipped.
"""

import sys

from valuelex.cli import app

if __name__ == "__main__":
    app(["run", *sys.argv[1:]], prog_name="jobs/run.py")
