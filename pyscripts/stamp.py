#!/usr/bin/env python3
"""Check or write a stage's done-stamp (see sslsv.stamp).

Usage: stamp.py check|write STAMP [INPUT...] [--opts S]
"""
import sys

from sslsv.stamp import main

sys.exit(main())
