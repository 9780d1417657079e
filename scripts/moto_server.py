"""moto_server, with what moto lacks and gilliam reads: the CloudWatch percentile statistics,
target group attributes set through CloudFormation, CloudFormation's DescribeAccountLimits.

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

# Real CloudFormation applies a target group's `TargetGroupAttributes`; moto 5.2 drops them,
# so every target group would report ELBv2's default deregistration delay (300 s) whatever
# the template says. gilliam reads the delay back before it scales a release down.
from moto.elbv2 import models as elbv2_models  # noqa: E402

_tg_from_cfn = elbv2_models.FakeTargetGroup.create_from_cloudformation_json.__func__


def _tg_with_attributes(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
    tg = _tg_from_cfn(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
    for a in cloudformation_json.get("Properties", {}).get("TargetGroupAttributes", []) or []:
        if "Key" in a and "Value" in a:
            value = a["Value"]
            tg.attributes[a["Key"]] = int(value) if str(value).isdigit() else value
    return tg


elbv2_models.FakeTargetGroup.create_from_cloudformation_json = classmethod(_tg_with_attributes)

# Real CloudFormation answers DescribeAccountLimits (the preflight reads `StackLimit`); moto 5.2
# has no such action. The values are AWS's documented defaults.
from moto.cloudformation import responses as cfn_responses  # noqa: E402
from moto.core.responses import ActionResult  # noqa: E402


def _describe_account_limits(self):
    limits = [{"Name": "StackLimit", "Value": 2000}, {"Name": "StackOutputsLimit", "Value": 200}, {"Name": "ConcurrentResourcesLimit", "Value": 2500}]
    return ActionResult({"AccountLimits": limits})


cfn_responses.CloudFormationResponse.describe_account_limits = _describe_account_limits

# moto's backends are not safe for concurrent requests, and its server answers each on a thread
# of its own: a release of 1,000 services creates 14 release stacks at once, and CreateStack
# iterates the region's exports while another CreateStack adds to them ("dictionary changed
# size during iteration"), leaving a stack CREATE_PENDING forever with no event. Real
# CloudFormation takes concurrent calls. Here one request at a time is served (the interpreter
# lock ran one at a time already); connections and keep-alive stay as they were.
import threading  # noqa: E402

from moto.moto_server import werkzeug_app  # noqa: E402

_serve = werkzeug_app.DomainDispatcherApplication.__call__
_one_at_a_time = threading.Lock()


def _serialized(self, environ, start_response):
    with _one_at_a_time:
        return _serve(self, environ, start_response)


werkzeug_app.DomainDispatcherApplication.__call__ = _serialized

# DescribeStacks: moto finds each output's export name by computing every export of the stack
# again, once per output, so a release stack of 200 exported outputs cost 40,000 evaluations a
# describe (seconds, at 1,000 services). The same answer, the exports computed once.
from moto.cloudformation import models as cfn_models  # noqa: E402


def _outputs(self):
    exports = self.exports
    outputs = [
        {
            "OutputKey": o.key,
            "OutputValue": o.value,
            "Description": o.description,
            "ExportName": next((e.name for e in exports if e.value == o.value), None),
        }
        for o in self.output_map.values()
        if o
    ]
    return outputs if outputs else None


cfn_models.Stack.outputs = property(_outputs)

from moto.server import main  # noqa: E402

if __name__ == "__main__":
    sys.argv[0] = "moto_server"
    sys.exit(main())
