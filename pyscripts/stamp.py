#!/usr/bin/env python3
"""Check or write a stage's done-stamp (see sslsv.stamp).

Usage: stamp.py check|write STAMP [INPUT...] [--opts S] [--archives-of SCP...]
       stamp.py fingerprint INPUT... [--opts S] [--archives-of SCP...]
"""
import sys

from sslsv.stamp import main

sys.exit(main())
