#!/usr/bin/env python3
"""Sums meson's JUnit logs (gtest suites report each case) into one line: 'tests: N passed, N failed'.

Exits non-zero when a log is missing, when anything failed, or when no test ran at all.
"""
import sys
import xml.etree.ElementTree as ET

passed = failed = skipped = 0
ok = True
for path in sys.argv[1:]:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        print(f"test-summary: cannot read {path}: {e}", file=sys.stderr)
        ok = False
        continue
    for case in root.iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
            print(f"FAILED: {case.get('classname')}.{case.get('name')} ({path})")
        elif case.find("skipped") is not None:
            skipped += 1
        else:
            passed += 1

line = f"tests: {passed} passed, {failed} failed"
if skipped:
    line += f", {skipped} skipped"
print(line)
sys.exit(0 if ok and failed == 0 and passed > 0 else 1)
