"""`make bench`: the product's speed figures, each against a baseline measured in the same run.

Cases live in their own modules (`riak` today; extract, build, end-to-end, verification and memory
from issue 5 are added as more cases) and register in `benchmarks.__main__.CASES`. A case returns
`harness.Figure`s; the harness prints them as one table and writes them as JSON. Benchmarks are
never timed assertions in the test suite: a smoke test only proves the harness runs end to end.
"""

from __future__ import annotations
