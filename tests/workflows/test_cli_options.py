"""Every command's options are its request's fields: the same flags, defaults, bounds and help, so that the
CLI and the Python entries cannot drift; validation errors name the flag a user typed."""

from __future__ import annotations

import pytest
import typer
from typer.core import TyperArgument, TyperOption
from typer.testing import CliRunner

from wtours.cli import REQUESTS, app, bounds
from wtours.errors import WtoursError
from wtours.workflows.requests import flag_of


def click_command(path: str):
    command = typer.main.get_command(app)
    for name in path.split():
        command = command.commands[name]
    return command


def test_every_command_has_a_request() -> None:
    root = typer.main.get_command(app)
    paths = {name for name, command in root.commands.items() if not hasattr(command, "commands")}
    paths |= {f"eval {name}" for name in root.commands["eval"].commands}
    assert paths == set(REQUESTS)


@pytest.mark.parametrize("path", sorted(REQUESTS))
def test_options_are_the_request_fields(path: str) -> None:
    model = REQUESTS[path]
    params = {param.name: param for param in click_command(path).params if param.name != "help"}
    assert set(params) == set(model.model_fields), "every option is a field of the request, and every field an option"
    for name, info in model.model_fields.items():
        param, declared = params[name], flag_of(model, name)
        default = None if info.is_required() else info.get_default(call_default_factory=True)
        assert param.default == default or (param.default in ((), None) and default in ([], None)), name
        assert param.required == info.is_required(), name
        if declared.argument:
            assert isinstance(param, TyperArgument), name
            continue
        assert isinstance(param, TyperOption) and param.help == info.description, name
        names = [*param.opts, *param.secondary_opts]
        expected = [part for names in declared.names for part in names.split("/")]
        assert sorted(names) == sorted(expected), name
        expected_bounds = bounds(info)
        assert param.min == expected_bounds.get("min"), f"{path} {name}: lower bound"
        assert param.max == expected_bounds.get("max"), f"{path} {name}: upper bound"


def test_a_bound_of_the_request_is_a_bound_of_the_option() -> None:
    result = CliRunner().invoke(app, ["analyze", "--threshold", "0.01", "--detector", "none"])
    assert result.exit_code == 2 and "--threshold" in result.output and "0.1" in result.output


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["analyze", "--executor", "slurm", "--detector", "none"], "--executor 'slurm': use local or ray"),
        (["analyze", "--shot-detector", "fast", "--detector", "none"],
         "--shot-detector 'fast': use content or adaptive"),
        (["analyze", "--figure", "3"], "--figure 3: only the paper's Figure 2"),
        (["eval", "linear", ".", "--protocol", "fast"], "--protocol 'fast': use dino or cached"),
    ],
)
def test_a_refused_value_names_the_flag_that_was_typed(arguments: list[str], message: str) -> None:
    result = CliRunner().invoke(app, arguments)
    assert isinstance(result.exception, WtoursError) and str(result.exception).startswith(message)


def test_python_callers_get_the_same_entries_and_checks() -> None:
    import wtours
    from wtours.workflows.analyze import AnalyzeRequest

    assert wtours.analyze.__module__ == "wtours.workflows.analyze" and wtours.AnalyzeRequest is AnalyzeRequest
    with pytest.raises(WtoursError, match="^--threshold: Input should be greater than or equal to 0.1"):
        AnalyzeRequest.parse(threshold=0.01)
    assert AnalyzeRequest(only=["a,b", "c"]).only == ["a", "b", "c"]
