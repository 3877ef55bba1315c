"""Ray job entrypoint for the elicitation stage.

    ray job submit --runtime-env runtime_env.yaml -- python jobs/elicit.py configs/paper.yaml --out s3://…

Resubmitting resumes: rows already stored are skipped.
"""

import sys

from valuelex.cli import app

if __name__ == "__main__":
    app(["elicit", *sys.argv[1:]], prog_name="jobs/elicit.py")
