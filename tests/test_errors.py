import inspect

import pytest

from mlprod import errors
from mlprod.errors import MlprodError
from mlprod.serve.http_errors import status_for

ALL_ERRORS = [cls for _, cls in inspect.getmembers(errors, inspect.isclass) if issubclass(cls, MlprodError)]


def test_every_error_is_drawn_in_the_module_docstring() -> None:
    for cls in ALL_ERRORS:
        assert cls.__name__ in errors.__doc__


@pytest.mark.parametrize("cls", [c for c in ALL_ERRORS if c is not MlprodError])
def test_every_specific_error_has_its_own_http_status(cls: type[MlprodError]) -> None:
    status, code = status_for(cls("x"))
    if cls in (errors.ConfigError, errors.WorkspaceError):
        assert (status, code) == (400, "bad_request")  # server-side setup problems never reach a client
    else:
        assert code != "bad_request", f"{cls.__name__} falls back to the generic 400"
        assert 400 <= status < 600


def test_builtin_mixins_let_callers_catch_by_meaning() -> None:
    assert issubclass(errors.NotFoundError, LookupError)
    assert issubclass(errors.InvalidInputError, ValueError)
    assert issubclass(errors.ArtifactNotFoundError, KeyError)
    assert str(errors.ArtifactNotFoundError("artifact abc not found")) == "artifact abc not found"


def test_user_errors_exit_with_code_2() -> None:
    assert all(cls.exit_code == 2 for cls in ALL_ERRORS)
