"""Print how long each notebook took under nbval, from pytest's JUnit XML report."""
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict

totals = defaultdict(float)
for case in ET.parse(sys.argv[1]).getroot().iter("testcase"):
    totals[case.get("classname", "?").removeprefix("notebooks.")] += float(case.get("time", 0))
print("::: notebook times under nbval (s)")
for name, seconds in sorted(totals.items()):
    print(f"  {name:40s} {seconds:7.1f}")
