"""Units charged vs CPU seconds per claim of `verify` (verifyst): how many ns a budget unit
really costs, per example and claim. Usage: python benchmarks/verify_units.py N EXAMPLE...
(certificates from `check --certificate` into /tmp)."""
import json
import subprocess
import sys
import time

from patterndsl import verify

rows = []
orig = verify._Claims.run


def run(self, name, check, *args):
    t = time.process_time()
    orig(self, name, check, *args)
    rows.append((name, self.meter.used, time.process_time() - t))


verify._Claims.run = run
n = int(sys.argv[1])
for name in sys.argv[2:]:
    cert = f"/tmp/vu_{name}_{n}.json"
    subprocess.run([sys.executable, "-m", "patterndsl.cli", "check", f"examples/{name}.spat", "--n", str(n),
                    "--certificate", cert], capture_output=True)
    rows.clear()
    report = verify.verify_report(open(f"examples/{name}.spat").read(), json.load(open(cert)))
    for claim, used, cpu in rows:
        print(f"{name:18} {claim:40} {used:>14,} units {cpu:7.2f} CPU s "
              f"{1e9 * cpu / max(used, 1):8.1f} ns/unit")
    print(f"{name:18} unchecked={len(report.get('unchecked', []))} failures={len(report.get('failures', []))}")
