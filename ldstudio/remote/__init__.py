"""A client of an `ldstudio serve` server (the ldstudio/v1 protocol), and the backend built on it.

Torch-free and Qt-free: the window and the CLI use it through the Backend protocol, with the
standard library's HTTP alone.
"""
