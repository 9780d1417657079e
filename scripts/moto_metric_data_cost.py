"""How long moto takes to answer one GetMetricData call of N queries in the Query protocol
(form-encoded, as the Rust SDK sends it), on a moto started here on 127.0.0.1: why `gilliam
status` of a large formation is slow on moto and not on CloudWatch. Prints seconds per call
for 100 to 800 queries, with no data behind them, so the time is moto's reading of the
request's form fields.

    .venv/bin/python scripts/moto_metric_data_cost.py
"""

import datetime
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def form(n, start, end):
    f = {"Action": "GetMetricData", "Version": "2010-08-01", "StartTime": start.isoformat(), "EndTime": end.isoformat()}
    for i in range(n):
        k = f"MetricDataQueries.member.{i + 1}."
        f[k + "Id"] = f"q{i}"
        f[k + "MetricStat.Period"] = "60"
        f[k + "MetricStat.Stat"] = "Sum"
        f[k + "MetricStat.Metric.Namespace"] = "AWS/ApplicationELB"
        f[k + "MetricStat.Metric.MetricName"] = "RequestCount"
        f[k + "MetricStat.Metric.Dimensions.member.1.Name"] = "LoadBalancer"
        f[k + "MetricStat.Metric.Dimensions.member.1.Value"] = f"app/lb/{i}"
        f[k + "MetricStat.Metric.Dimensions.member.2.Name"] = "TargetGroup"
        f[k + "MetricStat.Metric.Dimensions.member.2.Value"] = f"targetgroup/tg/{i}"
    return urllib.parse.urlencode(f).encode()


def main():
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "moto_server.py"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "moto-api/", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        end = datetime.datetime.now(datetime.timezone.utc).replace(second=0, microsecond=0)
        start = end - datetime.timedelta(minutes=5)
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/monitoring/aws4_request, SignedHeaders=host, Signature=0",
        }
        for n in (100, 200, 400, 800):
            body = form(n, start, end)
            t = time.monotonic()
            urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers)).read()
            print(f"GetMetricData of {n} queries ({body.count(b'&') + 1} form fields): {time.monotonic() - t:.2f} s", flush=True)
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()
