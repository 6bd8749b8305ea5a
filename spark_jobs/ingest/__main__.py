import sys

from spark_jobs.ingest.job import main

sys.exit(main())
