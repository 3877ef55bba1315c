"""Ray job entrypoint for the report: a run's output root -> index.html + figures (--out DIR).

    ray job submit --runtime-env runtime_env.yaml -- python jobs/report.py s3://…/run --out report/
"""

import sys

from valuelex.cli import app

if __name__ == "__main__":
    app(["report", *sys.argv[1:]], prog_name="jobs/report.py")
