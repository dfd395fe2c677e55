"""The `liandong` command's parts, wired together by `liandong.cli`: running the shop (`run`), the
merchant's commands (`merchant`), operations (`operate`) and the audit (`audit`).

They are thin: options in, a service function called, its answer drawn with rich.
"""
