"""`./run manage build_models` is inference.build behind the project's command line."""

import pytest
from django.core.management import CommandError, call_command

from inference.catalog import SMOLLM2_135M


def test_build_models_finds_the_cached_build_and_refuses_unknown_names(smollm2_builds, capsys):
    call_command("build_models", SMOLLM2_135M.name, "--precision", "int8")  # already built: skipped
    with pytest.raises(CommandError, match="the build failed"):
        call_command("build_models", "no-such-model")
    assert "no-such-model" in capsys.readouterr().err
