"""Ray job entrypoint for value construction: stored elicitation answers -> taxonomy.json.

    ray job submit --runtime-env runtime_env.yaml -- python jobs/construct.py STUDY [--out s3://…]

Resubmitting resumes: finished work is skipped.
"""

import sys

from valuelex.cli import app

if __name__ == "__main__":
    app(["construct", *sys.argv[1:]], prog_name="jobs/construct.py")
