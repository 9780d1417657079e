"""moto_server, with the CloudWatch percentile statistics that moto lacks.

Real CloudWatch answers GetMetricData and GetMetricStatistics with percentiles (p50, p99,
p99.9); moto 5.2 answers an HTTP 500. gilliam reads the p99 of each release's target response
time, so the tests, CI and the demo run moto through this file: the same server, with `pNN`
computed over the values put (nearest rank). Used as `python scripts/moto_server.py ARGS`
with moto_server's own arguments.
"""

import math
import re
import sys

from moto.cloudwatch import models

_plain = models.Statistics.get_statistics_for_type


def _statistic(self, stat):
    m = re.fullmatch(r"p(100|\d{1,2}(?:\.\d+)?)", stat)
    if m is None:
        return _plain(self, stat)
    values = sorted(self.metric_single_values_list)
    if not values:
        return None
    rank = math.ceil(float(m.group(1)) / 100 * len(values))
    return values[max(0, min(len(values) - 1, rank - 1))]


models.Statistics.get_statistics_for_type = _statistic

from moto.server import main  # noqa: E402

if __name__ == "__main__":
    sys.argv[0] = "moto_server"
    sys.exit(main())
