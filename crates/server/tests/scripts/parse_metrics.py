"""Parses a /.ioscale/metrics exposition (stdin) with the prometheus_client package's parsers.

The strict OpenMetrics parser must accept the text as it is (it rejects a missing `# EOF`, a bad
name, a counter without `_total`, buckets out of order, ...), and the classic Prometheus text
parser must accept it too. Prints one JSON object: {"families": {name: type},
"samples": {"name{label=value,...}": value}} from the OpenMetrics parse.
With --text the input is the Prometheus text format 0.0.4: only the classic parser reads it
(the OpenMetrics one would refuse it), and the samples printed are its.
Exit 3 (with a reason) when prometheus_client is not installed.
"""
import json
import sys

try:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
    from prometheus_client.parser import text_string_to_metric_families as prom_parse
except ImportError as e:  # the test skips with this reason
    print(f"prometheus_client is not installed: {e}", file=sys.stderr)
    sys.exit(3)

text = sys.stdin.read()
families, samples = {}, {}
if "--text" in sys.argv[1:]:
    for fam in prom_parse(text):
        families[fam.name] = fam.type
        for s in fam.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}"] = s.value
    print(json.dumps({"families": families, "samples": samples}))
    sys.exit(0)
for fam in om_parse(text):
    families[fam.name] = fam.type
    for s in fam.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        samples[f"{s.name}{{{labels}}}"] = s.value
classic = sum(len(f.samples) for f in prom_parse(text))
print(json.dumps({"families": families, "samples": samples, "classic_samples": classic}))
