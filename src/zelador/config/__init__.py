"""The config: read from YAML with file:line errors (`reader`), held as frozen dataclasses (`model`).

Import from the modules: this package file stays empty so the pure engine can import `model`
without pulling in the reader (YAML, the file system, the user database).
"""
