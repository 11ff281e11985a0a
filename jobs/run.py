"""`spark-submit` entry point: the same commands as `recon`, with Spark settings from spark-submit; the Spark
engine unless the conf or --engine names another.

    spark-submit --master spark://host:7077 jobs/run.py run --conf conf/pipeline.toml --date 2026-11-20
"""

import sys

from recon.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], engine="spark"))
