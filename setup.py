"""The one C extension, optional: where it cannot be built (no C compiler), the decoder's Python twins run instead."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("monitor.ingest._keycount", ["monitor/ingest/_keycount.c"], optional=True)])
