#!/usr/bin/env python
"""Django's command-line utility. Use it through ./run manage, which brings up PostgreSQL and Redis."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kb.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
