"""Crash and fault-injection tests for the WAL (TESTING.md sections A, D and F).

``crashfs`` holds the two ``FileIO`` doubles (power loss, I/O errors), ``payloads`` the
self-describing records and the recovered-log checker, ``child_appender`` the process that the
kill tests SIGKILL.
"""
