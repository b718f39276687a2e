"""The hot path's two C extensions, each optional: where one cannot be built (no C compiler), its Python twins run.

- ``monitor.ingest._decode``: the batch decoder's repeated-key counts and completion (``monitor/ingest/events.py``);
- ``monitor.state._probe``: linear probing into the label store's index (``monitor/state/labels.py``);
- ``detectors._text_counts``: the text descriptors' character counts of ASCII texts (``detectors/text_descriptors.py``).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(name, [name.replace(".", "/") + ".c"], optional=True)
        for name in ("monitor.ingest._decode", "monitor.state._probe", "detectors._text_counts")
    ]
)
